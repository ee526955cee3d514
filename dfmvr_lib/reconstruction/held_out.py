"""Held-out-view landmark error: how well a reconstructed shape explains a view it was not fitted to.

Real multi-view photos come without a 3D scan, so the shape cannot be compared with the truth. What can be checked
is whether the shape predicts a view it did not see: reconstruct (or refine) from two views, fit only the rigid
pose of the third view to that view's detected 2D landmarks, and measure the landmarks' residual there. A shape
that is wrong in depth (nose length, face width, chin) cannot be posed to match a view 30 degrees away, whatever
the pose; the mean face, which uses no photo at all, is the reference every reconstruction should beat.

Measure (:func:`held_out_view_errors`): for each of the three views in turn, held out:

- ``mean face``: the model's mean shape (no photo used);
- ``network``: the network's prediction from the views (the cpu network was trained on full triplets only, so it
  sees all three; its coefficients are not fitted to any view);
- ``refined N``: the network's prediction refined for N steps on the two other views only
  (:func:`~dfmvr_lib.reconstruction.fitting.refine_reconstruction` with the held-out view's weight 0).

Then the held-out view's pose (3 angles, 3 translations) alone is fitted to its landmarks by L-BFGS
(:func:`fit_pose_to_landmarks`), and the residual is the mean distance over the 51 inner landmarks
(:data:`HELD_OUT_LANDMARKS`, iBUG 17-67: brows, nose, eyes, mouth). The 17 jaw-line points are left out: they are
silhouette points whose model vertex changes with the view, so they measure the contour correspondence rather
than the shape. Distances are in pixels of a 224-pixel crop (scaled from the network's crop size, like L_2d).

Shapes follow :class:`~dfmvr_lib.scene.FaceCoefficients`; landmarks (B, S, 68, 2) are crop pixels.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import pandas as pd
import torch

from ..camera import PerspectiveCamera, apply_pose
from ..face_model.base import MorphableModel
from ..scene import FaceCoefficients
from ..training.data import TrainingBatch
from ..training.forward import reconstruct
from .fitting import refine_reconstruction
from .photo_inputs import prepare_views

HELD_OUT_LANDMARKS = tuple(range(17, 68))
"""0-based iBUG indices of the held-out measure: the 51 inner landmarks (the jaw line 0-16 is a silhouette)."""

REFERENCE_CROP_PX = 224
"""Held-out residuals are reported in pixels of a crop of this size."""


def fit_pose_to_landmarks(model: MorphableModel, camera: PerspectiveCamera, vertices: torch.Tensor,
                          landmarks: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor,
                          indices: Sequence[int] = HELD_OUT_LANDMARKS, iterations: int = 60
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit one view's rigid pose to its 2D landmarks with the shape fixed.

    Args:
        model, camera: the morphable model (for its 68 landmark vertices) and the camera of the crop.
        vertices: (B, V, 3) head-frame shapes, mm (not changed).
        landmarks: (B, 68, 2) the view's detected landmarks, crop pixels.
        angles, translation: (B, 3) starting pose (radians, mm).
        indices: the landmarks that are fitted and measured.
        iterations: L-BFGS iterations (strong-Wolfe line search; 6 unknowns per face, converges in a few dozen).
    Returns:
        ``(angles (B, 3), translation (B, 3), residual (B,))``: the fitted pose and the mean landmark distance over
        ``indices`` in pixels of the crop.
    """
    index = torch.as_tensor(list(indices), dtype=torch.long, device=vertices.device)
    points = vertices.detach()[:, model.landmark_68[index]]                                   # (B, L, 3)
    target = landmarks.detach()[:, index].to(points)                                          # (B, L, 2)
    pose = torch.cat([angles.detach(), translation.detach() / 10.0], -1).clone().requires_grad_(True)  # cm: scaled

    def residual_px(p: torch.Tensor) -> torch.Tensor:
        projected = camera.project(apply_pose(points, p[:, :3], p[:, 3:] * 10.0))
        return torch.linalg.vector_norm(projected - target, dim=-1)                          # (B, L)

    optimiser = torch.optim.LBFGS([pose], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = residual_px(pose).pow(2).mean(-1).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        distance = residual_px(pose).mean(-1)
    pose = pose.detach()
    return pose[:, :3], pose[:, 3:] * 10.0, distance


def _held_out_targets(targets: TrainingBatch, view: int) -> TrainingBatch:
    """``targets`` with ``view`` taking no part in any loss (its weight 0)."""
    weight = targets.view_weight.clone()
    weight[:, view] = 0.0
    return dataclasses.replace(targets, view_weight=weight)


def held_out_residual(model: MorphableModel, camera: PerspectiveCamera, coefficients: FaceCoefficients,
                      targets: TrainingBatch, view: int) -> torch.Tensor:
    """(B,) mean inner-landmark residual (pixels of a 224-px crop) of ``view`` after fitting its pose alone to its
    detected landmarks ``targets.landmarks_2d[:, view]`` with the shape of ``coefficients`` fixed."""
    with torch.no_grad():
        vertices = model.shape(coefficients.identity, coefficients.expression)
    _, _, distance = fit_pose_to_landmarks(model, camera, vertices, targets.landmarks_2d[:, view],
                                           coefficients.angles[:, view], coefficients.translation[:, view])
    return distance * (REFERENCE_CROP_PX / camera.image_size)


def held_out_view_errors(model: MorphableModel, camera: PerspectiveCamera, network_coefficients: FaceCoefficients,
                         targets: TrainingBatch, losses, parser: torch.nn.Module | None, *,
                         refine_steps: Sequence[int] = (40, 200), settings=None,
                         views: Sequence[int] | None = None, extra: dict | None = None,
                         keep_coefficients: bool = False, starts: Sequence[str] = ("network",)) -> pd.DataFrame:
    """The held-out-view measure (module docstring) of the mean face, the network and its refinements.

    Args:
        model, camera: as in training.
        network_coefficients: the network's prediction for the B triplets of ``targets`` (all views as input).
        targets: the views (:class:`~dfmvr_lib.training.TrainingBatch`; every measured view must be present).
        losses: the loss weights of the refinement (``config.losses``); parser: its frozen parser or None.
        refine_steps: the refinement lengths measured (one refinement per held-out view, snapshots at each).
        settings: :class:`~dfmvr_lib.reconstruction.fitting.RefinementSettings` or None.
        views: the views held out in turn (default all S).
        extra: columns added to every row (e.g. the triplet's name).
        starts: where the refinements start: ``"network"`` (rows ``"refined N"``) and / or ``"mean face"`` (the
            mean shape with the network's poses, albedo and light; rows ``"mean face + refined N"``).
        keep_coefficients: add a ``coefficients`` column holding each row's :class:`~dfmvr_lib.scene.FaceCoefficients`
            (all B samples; the row's ``sample`` indexes it), e.g. to compare the same shapes with a ground truth.
    Returns:
        one row per (sample, held-out view, reconstruction): ``sample``, ``held_out_view``, ``reconstruction``
        (``"mean face"``, ``"network"``, ``"refined N"``), ``steps``, ``held_out_px``.
    """

    B, S = targets.view_weight.shape
    views = range(S) if views is None else views
    neutral = network_coefficients.with_mean_shape()
    rows = []

    def add(view: int, name: str, steps: int, coefficients: FaceCoefficients) -> None:
        for sample, value in enumerate(held_out_residual(model, camera, coefficients, targets, view).tolist()):
            rows.append({**(extra or {}), "sample": sample, "held_out_view": view, "reconstruction": name,
                         "steps": steps, "held_out_px": value,
                         **({"coefficients": coefficients} if keep_coefficients else {})})

    for view in views:
        if not bool((targets.view_weight[:, view] > 0).all()):
            raise ValueError(f"held_out_view_errors: view {view} is missing from some triplet; every held-out view "
                             "must be present (its landmarks are the reference)")
        add(view, "mean face", 0, neutral)
        add(view, "network", 0, network_coefficients)
        for start in starts if refine_steps else ():
            if start not in ("network", "mean face"):
                raise ValueError(f"held_out_view_errors: unknown start {start!r}; use 'network' or 'mean face'")
            fit = refine_reconstruction(model, camera, network_coefficients if start == "network" else neutral,
                                        _held_out_targets(targets, view), losses, parser, steps=max(refine_steps),
                                        settings=settings, keep_steps=tuple(refine_steps))
            prefix = "" if start == "network" else "mean face + "
            for steps in refine_steps:
                add(view, f"{prefix}refined {steps}", steps, fit.snapshots[steps])
    return pd.DataFrame(rows)


def summarise_held_out(table: pd.DataFrame, by: Sequence[str] = ("reconstruction",)) -> pd.DataFrame:
    """Mean held-out residual per reconstruction (and ``by`` columns), in the order mean face, network, refined."""
    summary = table.groupby(list(by), sort=False)["held_out_px"].agg(["mean", "std", "count"]).reset_index()
    return summary.rename(columns={"mean": "held_out_px", "std": "held_out_std_px", "count": "views"})



def held_out_photo_errors(reconstructor, groups, preparer, *, refine_steps: Sequence[int] = (40, 200),
                          settings=None, progress: bool = False, starts: Sequence[str] = ("network",)
                          ) -> pd.DataFrame:
    """:func:`held_out_view_errors` of real triplets: each :class:`~dfmvr_lib.data.photos.PhotoGroup` of ``groups``
    with all three views is prepared with ``preparer`` (:func:`~dfmvr_lib.reconstruction.pipeline.photo_preparer`),
    predicted by the reconstructor's network and refined with its losses and parser (all triplets in one batch).
    Rows carry ``triplet`` (the front photo's folder and stem)."""
    from pathlib import Path


    names, batches = [], []
    for group in groups:
        if any(file is None for file in group.files):
            continue
        batches.append(prepare_views(group.files, preparer).targets)
        front = Path(group.files[1])
        names.append(f"{front.parent.name}/{front.stem}")
    if not batches:
        raise ValueError("held_out_photo_errors: no triplet with all three views")
    targets = TrainingBatch(**{name: (torch.cat([getattr(b, name) for b in batches])
                                      if getattr(batches[0], name) is not None else None)
                               for name in TrainingBatch.__dataclass_fields__})
    with torch.no_grad():
        network = reconstruct(reconstructor.network, reconstructor.model, reconstructor.camera,
                              targets.network_images, targets.network_parse_maps).coefficients
    table = held_out_view_errors(reconstructor.model, reconstructor.camera, network, targets,
                                 reconstructor.config.losses, reconstructor.parser, refine_steps=refine_steps,
                                 settings=settings, starts=starts)
    table.insert(0, "triplet", [names[i] for i in table["sample"]])
    return table


__all__ = ["HELD_OUT_LANDMARKS", "REFERENCE_CROP_PX", "fit_pose_to_landmarks", "held_out_photo_errors",
           "held_out_residual", "held_out_view_errors", "summarise_held_out"]
