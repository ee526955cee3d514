"""From coefficients to pictures: morphable model -> SH shading (head frame) -> per-view pose -> render.

This is the forward model that the synthetic benchmark, the losses and the figures share. Conventions:
docs/conventions.md (mm, radians, head frame, pixel coordinates).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .camera import PerspectiveCamera, apply_pose
from .face_model.base import MorphableModel
from .lighting import directional_lighting, shade
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

    def with_mean_shape(self) -> "FaceCoefficients":
        """The same poses, albedo and light with the model's mean shape (identity and expression zero)."""
        return FaceCoefficients(torch.zeros_like(self.identity), torch.zeros_like(self.expression), self.albedo,
                                self.lighting, self.angles, self.translation)

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


def random_coefficients(model: MorphableModel, batch_size: int, yaws: torch.Tensor, generator: torch.Generator,
                        identity_scale: float = 1.0, expression_scale: float = 0.7, albedo_scale: float = 1.0,
                        light_strength: tuple[float, float] = (0.2, 0.6),
                        pose_jitter_radians: float = 0.0, translation_jitter_mm: float = 0.0) -> FaceCoefficients:
    """Random faces: coefficients ~ N(0, scale^2), a distant light from the front hemisphere plus ambient.

    Args:
        model: sets the number of components and the device.
        batch_size: B faces.
        yaws: (S,) radians, one per view (e.g. :func:`dfmvr_lib.camera.view_yaws`).
        generator: a seeded ``torch.Generator`` (CPU) so results are reproducible.
        light_strength: range of the directional term (0 = flat ambient light).
        pose_jitter_radians, translation_jitter_mm: std of per-view pitch/yaw/roll and x/y/z jitter.
    """
    yaws = torch.as_tensor(yaws, dtype=torch.float32)
    S = yaws.shape[0]

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    direction = torch.nn.functional.normalize(normal(batch_size, 3) * torch.tensor([0.6, 0.4, 0.3])
                                              + torch.tensor([0.0, 0.3, 1.0]), dim=-1)
    low, high = light_strength
    strength = low + (high - low) * torch.rand(batch_size, generator=generator)
    tint = 1.0 + 0.06 * normal(batch_size, 3)
    lighting = directional_lighting(direction, ambient=0.05 * normal(batch_size), strength=strength, colour=tint)
    angles = pose_jitter_radians * normal(batch_size, S, 3)
    angles[:, :, 1] += yaws
    device = model.mean_shape.device
    return FaceCoefficients(
        identity=(identity_scale * normal(batch_size, model.num_identity)).to(device),
        expression=(expression_scale * normal(batch_size, model.num_expression)).to(device),
        albedo=(albedo_scale * normal(batch_size, model.num_albedo)).to(device),
        lighting=lighting.to(device), angles=angles.to(device),
        translation=(translation_jitter_mm * normal(batch_size, S, 3)).to(device),
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

    def landmark_visibility(self, tolerance_mm: float = 3.0) -> torch.Tensor:
        """(B, S, 68) bool: landmarks not hidden by another part of the face, see :func:`landmark_visibility`."""
        B, S = self.posed_vertices.shape[:2]
        visible = landmark_visibility(self.render.depth, self.landmarks_2d.reshape(B * S, 68, 2),
                                      self.landmark_depth.reshape(B * S, 68), tolerance_mm)
        return visible.reshape(B, S, 68)

    def views(self, name: str) -> torch.Tensor:
        """A render field reshaped to (B, S, ...), e.g. ``views("image")`` -> (B, S, 3, H, W)."""
        value = getattr(self.render, name)
        B, S = self.posed_vertices.shape[:2]
        return value.reshape(B, S, *value.shape[1:])


def landmark_visibility(depth: torch.Tensor, points: torch.Tensor, point_depth: torch.Tensor,
                        tolerance_mm: float = 3.0) -> torch.Tensor:
    """Which projected points are visible in a rendered depth map.

    A point is hidden when every pixel of the 3x3 neighbourhood around its pixel shows a surface nearer than the
    point by more than ``tolerance_mm``. The neighbourhood keeps points on a silhouette (jaw contour) visible even
    where their own pixel centre falls just off the surface.

    Args:
        depth: (N, H, W) rendered depth in mm, 0 where nothing is covered (treated as infinitely far).
        points: (N, L, 2) pixel coordinates.
        point_depth: (N, L) the points' own depth in mm.
    Returns:
        (N, L) bool; points outside the image count as not visible.
    """
    N, H, W = depth.shape
    far = torch.where(depth > 0, depth, torch.full_like(depth, float("inf")))
    farthest = torch.nn.functional.max_pool2d(far.unsqueeze(1), 3, stride=1, padding=1).squeeze(1)
    column = points[..., 0].floor().long()
    row = points[..., 1].floor().long()
    inside = (column >= 0) & (column < W) & (row >= 0) & (row < H)
    index = (row.clamp(0, H - 1) * W + column.clamp(0, W - 1))
    surface = farthest.reshape(N, H * W).gather(1, index)
    return inside & (surface >= point_depth.detach() - tolerance_mm)


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
