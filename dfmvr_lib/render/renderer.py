"""Differentiable hard-visibility mesh renderer for posed multi-view faces.

``render_views`` = project to screen (torch, differentiable) -> rasterise triangle ids (no gradient) ->
perspective-correct interpolation of colours, depth and barycentrics (differentiable, visibility fixed) ->
part labels and background compositing.

Conventions (docs/conventions.md): posed vertices in mm, camera at ``(0, 0, camera_distance_mm)`` looking down
``-z``; pixel origin top-left, ``v`` down, samples at pixel centres ``(j + 0.5, i + 0.5)``; depth
``d = camera_distance_mm - Z``. Hard z-buffer: one triangle per pixel, nearest depth wins, no blur, no silhouette
gradients; no back-face culling (the z-buffer decides); triangles with a vertex at depth ``<= NEAR_DEPTH_MM`` are
skipped. See :mod:`dfmvr_lib.render.rasterize` for the exact coverage rules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..camera import PerspectiveCamera
from .interpolate import interpolate_numba, interpolate_torch
from .pytorch3d_backend import rasterize_pytorch3d
from .rasterize import rasterize_numba, rasterize_torch, screen_vertices

BACKENDS = ("auto", "numba", "torch", "pytorch3d")


@dataclass
class RenderOutput:
    """What :func:`render_views` returns (N views, H = W = ``camera.image_size``).

    Attributes:
        image: (N, C, H, W) float (C = 3 for RGB colours), interpolated vertex colours where covered, the background
            elsewhere. Differentiable w.r.t. vertices and colours.
        alpha: (N, 1, H, W) float, 1 where a triangle covers the pixel centre, else 0 (no gradient).
        part_labels: (N, H, W) long, label of the covering triangle's corner with the largest barycentric weight,
            0 where uncovered; ``None`` when no ``vertex_labels`` were given.
        depth: (N, H, W) float camera depth ``camera_distance_mm - Z`` in mm, 0 where uncovered. Differentiable.
        triangle_ids: (N, H, W) long covering triangle, -1 where uncovered.
        barycentrics: (N, H, W, 3) float perspective-correct barycentric weights of the covering triangle's corners
            (in ``triangles`` order), 0 where uncovered. Differentiable w.r.t. vertices.
    """

    image: torch.Tensor
    alpha: torch.Tensor
    part_labels: torch.Tensor | None
    depth: torch.Tensor
    triangle_ids: torch.Tensor
    barycentrics: torch.Tensor


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` -> ``"numba"`` for CPU tensors, ``"torch"`` otherwise; other names are checked and returned."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "numba" if torch.device(device).type == "cpu" else "torch"
    if backend == "numba" and torch.device(device).type != "cpu":
        raise ValueError(f"backend='numba' runs on CPU tensors only, got {device}; use 'torch' or 'auto'")
    return backend


def _background(background, N: int, C: int, H: int, W: int, dtype, device) -> torch.Tensor | None:
    """None, a (C,) colour tensor, or an (N, C, H, W) image tensor."""
    if background is None:
        return None
    if isinstance(background, torch.Tensor) and background.ndim == 4:
        if tuple(background.shape) != (N, C, H, W):
            raise ValueError(f"background tensor must be (N, C, H, W) = {(N, C, H, W)}, "
                             f"got {tuple(background.shape)}")
        return background.to(device=device, dtype=dtype)
    colour = torch.as_tensor(background, dtype=dtype, device=device).reshape(-1)
    if colour.numel() != C:
        raise ValueError(f"background colour must have {C} values, got {colour.numel()}")
    return colour


def render_views(vertices: torch.Tensor, triangles: torch.Tensor, vertex_colours: torch.Tensor,
                 camera: PerspectiveCamera, vertex_labels: torch.Tensor | None = None,
                 background: torch.Tensor | Sequence[float] | None = None, backend: str = "auto") -> RenderOutput:
    """Render N posed views of one mesh topology with hard visibility and perspective-correct interpolation.

    Args:
        vertices: (N, V, 3) posed vertices in mm (head already rotated/translated; camera at
            ``(0, 0, camera_distance_mm)`` looking down ``-z``).
        triangles: (F, 3) long vertex ids shared by all views (either winding; no back-face culling).
        vertex_colours: (N, V, C) float per-vertex colours, already lit (usually C = 3 RGB); (1, V, C) is
            broadcast to all views.
        camera: :class:`~dfmvr_lib.camera.PerspectiveCamera`; the image is ``camera.image_size`` squared.
        vertex_labels: (V,) long part labels in 0..9 (optional).
        background: ``None`` (black), a colour with C values (e.g. an RGB triple), or an (N, C, H, W) tensor,
            composited where ``alpha == 0``.
        backend: ``"auto"`` (numba on CPU tensors, pure torch elsewhere), ``"numba"``, ``"torch"`` or
            ``"pytorch3d"`` (optional dependency; same conventions).
    Returns:
        :class:`RenderOutput`. ``image``, ``depth`` and ``barycentrics`` carry gradients w.r.t. ``vertices`` and
        (``image``) ``vertex_colours`` inside triangles; ``alpha``, ``part_labels`` and ``triangle_ids`` do not.
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (N, V, 3), got {tuple(vertices.shape)}")
    N, V, _ = vertices.shape
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"triangles must be (F, 3), got {tuple(triangles.shape)}")
    if triangles.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"triangles must be an integer tensor, got {triangles.dtype}")
    if vertex_colours.ndim != 3 or vertex_colours.shape[1] != V or vertex_colours.shape[0] not in (1, N):
        raise ValueError(f"vertex_colours must be (N={N} or 1, V={V}, C), got {tuple(vertex_colours.shape)}")
    if vertex_labels is not None and vertex_labels.shape != (V,):
        raise ValueError(f"vertex_labels must be (V={V},), got {tuple(vertex_labels.shape)}")
    device = vertices.device
    backend = resolve_backend(backend, device)
    triangles = triangles.to(device=device, dtype=torch.int64)
    if vertex_colours.shape[0] != N:
        vertex_colours = vertex_colours.expand(N, -1, -1)
    vertex_colours = vertex_colours.to(device)
    if vertex_labels is not None:
        vertex_labels = vertex_labels.to(device=device, dtype=torch.int64)
    size = int(camera.image_size)
    C = vertex_colours.shape[2]
    dtype = torch.promote_types(vertices.dtype, vertex_colours.dtype)
    bg = _background(background, N, C, size, size, dtype, device)

    if backend == "pytorch3d":
        triangle_ids, bary, depth = rasterize_pytorch3d(vertices, triangles, camera)
        image, part_labels = _shade_from_barycentrics(vertex_colours, triangles, triangle_ids, bary, vertex_labels)
        alpha = (triangle_ids >= 0).unsqueeze(1).to(image.dtype)
        if bg is not None:
            image = image + (1.0 - alpha) * (bg if bg.ndim == 4 else bg.reshape(1, C, 1, 1))
    else:
        screen = screen_vertices(vertices, camera)
        if backend == "numba":
            triangle_ids = rasterize_numba(screen.detach(), triangles, size)
            # The kernel composites a background without gradient; one that needs gradients is composited here.
            bg_needs_grad = bg is not None and bg.requires_grad
            image, depth, bary, part_labels, alpha = interpolate_numba(
                screen, vertex_colours, triangles, triangle_ids, vertex_labels, None if bg_needs_grad else bg)
            if bg_needs_grad:
                image = image + (1.0 - alpha) * (bg if bg.ndim == 4 else bg.reshape(1, C, 1, 1))
        else:
            triangle_ids = rasterize_torch(screen.detach(), triangles, size)
            image, depth, bary, part_labels, alpha = interpolate_torch(screen, vertex_colours, triangles,
                                                                       triangle_ids, vertex_labels, bg)

    return RenderOutput(image=image, alpha=alpha, part_labels=part_labels if vertex_labels is not None else None,
                        depth=depth, triangle_ids=triangle_ids, barycentrics=bary)


def _shade_from_barycentrics(colours, triangles, triangle_ids, bary, labels):
    """Image (N,C,H,W) and part labels (N,H,W) from given barycentrics (N,H,W,3) (differentiable torch gather)."""
    N, H, W = triangle_ids.shape
    covered = triangle_ids >= 0
    corners = triangles[triangle_ids.clamp(min=0)]  # (N, H, W, 3)
    view = torch.arange(N, device=colours.device).reshape(N, 1, 1, 1)
    gathered = colours[view, corners]  # (N, H, W, 3, C)
    image = (bary.unsqueeze(-1).to(gathered.dtype) * gathered).sum(3) * covered.unsqueeze(-1)
    part_labels = torch.zeros((N, H, W), dtype=torch.int64, device=colours.device)
    if labels is not None:
        best = bary.detach().argmax(-1, keepdim=True)
        part_labels = torch.where(covered, labels[corners].gather(-1, best).squeeze(-1), part_labels)
    return image.permute(0, 3, 1, 2).contiguous(), part_labels
