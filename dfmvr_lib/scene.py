"""From coefficients to pictures: morphable model -> SH shading (head frame) -> per-view pose -> render.

This is the forward model that the synthetic benchmark, the losses and the figures share. Conventions:
docs/conventions.md (mm, radians, head frame, pixel coordinates).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .camera import PerspectiveCamera, apply_pose
from .face_model.base import MorphableModel
from .lighting import shade
from .render import RenderOutput, render_views


@dataclass
class FaceCoefficients:
    """Coefficients of B faces seen in S views each.

    Shapes: identity (B, K_id), expression (B, K_exp), albedo (B, K_alb), lighting (B, 27) (SH, shared by the
    views), angles (B, S, 3) radians (pitch, yaw, roll), translation (B, S, 3) mm.
    """

    identity: torch.Tensor
    expression: torch.Tensor
    albedo: torch.Tensor
    lighting: torch.Tensor
    angles: torch.Tensor
    translation: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.identity.shape[0]

    @property
    def num_views(self) -> int:
        return self.angles.shape[1]

    @classmethod
    def neutral(cls, model: MorphableModel, batch_size: int = 1, yaws: torch.Tensor | None = None,
                identity_components: int | None = None, expression_components: int | None = None,
                albedo_components: int | None = None) -> "FaceCoefficients":
        """Mean face, zero lighting offset, frontal pose (or the given per-view ``yaws`` (S,) radians)."""
        yaws = torch.zeros(1) if yaws is None else torch.as_tensor(yaws, dtype=torch.float32)
        angles = torch.zeros(batch_size, yaws.shape[0], 3)
        angles[:, :, 1] = yaws
        device = model.mean_shape.device
        return cls(
            identity=torch.zeros(batch_size, identity_components or model.num_identity, device=device),
            expression=torch.zeros(batch_size, expression_components or model.num_expression, device=device),
            albedo=torch.zeros(batch_size, albedo_components or model.num_albedo, device=device),
            lighting=torch.zeros(batch_size, 27, device=device),
            angles=angles.to(device), translation=torch.zeros(batch_size, yaws.shape[0], 3, device=device),
        )


@dataclass
class FaceRender:
    """A rendered batch. ``render`` holds (B*S, ...) tensors in sample-major order (sample 0 views A, B, C, ...).

    vertices (B, V, 3) head frame mm; posed_vertices (B, S, V, 3) mm; colours (B, V, 3) lit vertex colours;
    landmarks_2d (B, S, 68, 2) pixels; landmark_depth (B, S, 68) mm.
    """

    render: RenderOutput
    vertices: torch.Tensor
    posed_vertices: torch.Tensor
    colours: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_depth: torch.Tensor

    def views(self, name: str) -> torch.Tensor:
        """A render field reshaped to (B, S, ...), e.g. ``views("image")`` -> (B, S, 3, H, W)."""
        value = getattr(self.render, name)
        B, S = self.posed_vertices.shape[:2]
        return value.reshape(B, S, *value.shape[1:])


def render_faces(model: MorphableModel, coefficients: FaceCoefficients, camera: PerspectiveCamera,
                 background: torch.Tensor | tuple | None = None, backend: str = "auto") -> FaceRender:
    """Render B faces in S views each, with shading evaluated once in the head frame (shared by all views).

    Args:
        model: the morphable model.
        coefficients: see :class:`FaceCoefficients`.
        camera: the pinhole camera.
        background: None (black), an RGB triple, or (B*S, 3, H, W).
        backend: renderer backend, see :func:`dfmvr_lib.render.render_views`.
    """
    vertices, albedo = model(coefficients.identity, coefficients.expression, coefficients.albedo)
    colours = shade(albedo, model.normals(vertices), coefficients.lighting)
    B, S = coefficients.angles.shape[:2]
    V = vertices.shape[1]
    repeated = vertices.unsqueeze(1).expand(B, S, V, 3).reshape(B * S, V, 3)
    posed = apply_pose(repeated, coefficients.angles.reshape(B * S, 3), coefficients.translation.reshape(B * S, 3))
    view_colours = colours.unsqueeze(1).expand(B, S, V, 3).reshape(B * S, V, 3)
    output = render_views(posed, model.triangles, view_colours, camera, vertex_labels=model.part_labels,
                          background=background, backend=backend)
    landmarks = posed[:, model.landmark_68]
    return FaceRender(
        render=output, vertices=vertices, posed_vertices=posed.reshape(B, S, V, 3), colours=colours,
        landmarks_2d=camera.project(landmarks).reshape(B, S, 68, 2),
        landmark_depth=camera.depth(landmarks).reshape(B, S, 68),
    )
