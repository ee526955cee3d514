"""The one sample structure every dataset returns (synthetic benchmark, Pixel-Face, Bosphorus, Multi-PIE, ...).

Views are ordered A (left), B (front), C (right) (docs/conventions.md). Coordinates: pixels for 2D landmarks
(origin top-left corner, pixel centres at +0.5), millimetres for 3D data.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import torch

VIEW_NAMES = ("A", "B", "C")


@dataclass
class MultiViewSample:
    """Three views of one face and whatever ground truth the dataset has.

    Shapes (S = 3 views, H = W = image size):
        images: (S, 3, H, W) float in [0, 1]; a missing view is black and ``view_present`` is False.
        parse_maps: (S, H, W) int64, the 10 part classes (0 where unknown / background).
        landmarks_2d: (S, 68, 2) float pixels, iBUG order.
        landmark_visibility: (S, 68) bool.
        view_present: (S,) bool.
        landmarks_3d: (101, 3) float mm (the 3D-landmark scheme of the spec), or None.
        mesh_vertices: (V, 3) float mm, ground-truth scan / mesh, or None.
        mesh_triangles: (F, 3) int64, or None.
        subject_id, sample_id: strings (splits are by subject).
        extras: dataset-specific values (poses, coefficients, file paths), not batched.
    """

    images: torch.Tensor
    parse_maps: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_visibility: torch.Tensor
    view_present: torch.Tensor
    subject_id: str
    sample_id: str
    landmarks_3d: torch.Tensor | None = None
    mesh_vertices: torch.Tensor | None = None
    mesh_triangles: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def validate(self, source: str = "sample") -> None:
        """Raise ``ValueError`` naming ``source`` and the field when shapes or dtypes are wrong."""
        S = self.images.shape[0]
        H, W = self.images.shape[-2:]
        checks = [
            ("images", self.images.ndim == 4 and self.images.shape[1] == 3,
             f"(S, 3, H, W), got {tuple(self.images.shape)}"),
            ("parse_maps", tuple(self.parse_maps.shape) == (S, H, W) and self.parse_maps.dtype == torch.int64,
             f"(S={S}, H={H}, W={W}) int64, got {tuple(self.parse_maps.shape)} {self.parse_maps.dtype}"),
            ("landmarks_2d", tuple(self.landmarks_2d.shape) == (S, 68, 2),
             f"(S={S}, 68, 2), got {tuple(self.landmarks_2d.shape)}"),
            ("landmark_visibility",
             tuple(self.landmark_visibility.shape) == (S, 68) and self.landmark_visibility.dtype == torch.bool,
             f"(S={S}, 68) bool, got {tuple(self.landmark_visibility.shape)} {self.landmark_visibility.dtype}"),
            ("view_present", tuple(self.view_present.shape) == (S,) and self.view_present.dtype == torch.bool,
             f"(S={S},) bool, got {tuple(self.view_present.shape)}"),
            ("landmarks_3d", self.landmarks_3d is None or tuple(self.landmarks_3d.shape) == (101, 3),
             f"(101, 3) or None, got {None if self.landmarks_3d is None else tuple(self.landmarks_3d.shape)}"),
            ("mesh_vertices",
             self.mesh_vertices is None or (self.mesh_vertices.ndim == 2 and self.mesh_vertices.shape[1] == 3),
             "(V, 3) or None"),
            ("mesh_triangles",
             self.mesh_triangles is None or (self.mesh_triangles.ndim == 2 and self.mesh_triangles.shape[1] == 3),
             "(F, 3) or None"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{source}: field {name!r} must be {expected}")


@dataclass
class MultiViewBatch:
    """A batch of :class:`MultiViewSample`: tensors stacked on a new first axis B; optional 3D data stacked when
    every sample has it (else None); meshes stay lists (their sizes differ); ids and extras are lists."""

    images: torch.Tensor
    parse_maps: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_visibility: torch.Tensor
    view_present: torch.Tensor
    subject_ids: list[str]
    sample_ids: list[str]
    landmarks_3d: torch.Tensor | None
    mesh_vertices: list[torch.Tensor | None]
    mesh_triangles: list[torch.Tensor | None]
    extras: list[dict]

    def to(self, device) -> "MultiViewBatch":
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return MultiViewBatch(**moved)


def collate_samples(samples: Sequence[MultiViewSample]) -> MultiViewBatch:
    """``torch.utils.data.DataLoader(..., collate_fn=collate_samples)``."""
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    stack = lambda name: torch.stack([getattr(s, name) for s in samples])  # noqa: E731
    has_3d = all(s.landmarks_3d is not None for s in samples)
    return MultiViewBatch(
        images=stack("images"), parse_maps=stack("parse_maps"), landmarks_2d=stack("landmarks_2d"),
        landmark_visibility=stack("landmark_visibility"), view_present=stack("view_present"),
        subject_ids=[s.subject_id for s in samples], sample_ids=[s.sample_id for s in samples],
        landmarks_3d=stack("landmarks_3d") if has_3d else None,
        mesh_vertices=[s.mesh_vertices for s in samples], mesh_triangles=[s.mesh_triangles for s in samples],
        extras=[s.extras for s in samples],
    )
