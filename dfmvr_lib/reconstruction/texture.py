"""Vertex colours from the photos themselves (``dfmvr reconstruct --colours photo``).

Every vertex takes the colour of the photos that see it, blended by how squarely each view sees it:

1. each present view's posed vertices (the fitted pose) are projected into that view's crop (the camera of the
   network's image size) and mapped back into the ORIGINAL photo through the crop's affine
   (:attr:`dfmvr_lib.data.photos.PreparedPhoto.affine`), so the colours come at the photo's full resolution;
2. a vertex is visible in a view when it projects inside the crop onto the render's own surface (its camera depth
   within ``depth_tolerance_mm`` of the rendered depth at that pixel: not hidden behind the nose or the cheek) and
   its normal faces the camera;
3. the weight of a view is ``cos(angle between the normal and the direction to the camera) ** 2``; the colour is
   the weighted mean of the bilinear photo samples. Vertices no view sees keep the ``fallback`` colours (the
   shaded model colour).

Pixel conventions are those of docs/conventions.md (origin at the top-left corner, pixel centres at +0.5), shared
by the camera, the crop's affine and :func:`dfmvr_lib.data.photo_crop.warp_affine`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import PerspectiveCamera, euler_to_rotation
from ..data.photo_crop import invert_affine
from ..face_model.base import MorphableModel
from ..scene import FaceCoefficients, FaceRender


def view_visibility_weights(model: MorphableModel, camera: PerspectiveCamera, render: FaceRender,
                            coefficients: FaceCoefficients, sample: int = 0, depth_tolerance_mm: float = 5.0
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view, where each vertex lands in the crop and how much that view should count for its colour.

    Args:
        model, camera: the morphable model and the camera of the crops.
        render: the :class:`~dfmvr_lib.scene.FaceRender` of ``coefficients`` (its depth maps give the occlusion).
        coefficients: the fitted coefficients (their angles give the posed normals).
        sample: which face of the batch.
        depth_tolerance_mm: how far behind the rendered surface a vertex may lie and still count as visible.
    Returns:
        ``(pixels (S, V, 2) crop pixels, weights (S, V) >= 0)``; weight 0 where the view does not see the vertex.
    """
    S = render.posed_vertices.shape[1]
    H = W = camera.image_size
    posed = render.posed_vertices[sample].detach()                                           # (S, V, 3)
    pixels = camera.project(posed)
    vertex_depth = camera.depth(posed)
    depth = render.render.depth[sample * S:(sample + 1) * S].detach()                        # (S, H, W)
    column = pixels[..., 0].floor().long()
    row = pixels[..., 1].floor().long()
    inside = (column >= 0) & (column < W) & (row >= 0) & (row < H)
    surface = torch.gather(depth.reshape(S, -1), 1, (row.clamp(0, H - 1) * W + column.clamp(0, W - 1)))
    visible = inside & (surface > 0) & (vertex_depth <= surface + depth_tolerance_mm)
    normals = model.normals(render.vertices[sample:sample + 1].detach())[0]                  # (V, 3) head frame
    rotation = euler_to_rotation(coefficients.angles[sample].detach())                       # (S, 3, 3)
    posed_normals = torch.einsum("sij,vj->svi", rotation, normals)
    centre = torch.tensor([0.0, 0.0, camera.camera_distance_mm], dtype=posed.dtype, device=posed.device)
    to_camera = F.normalize(centre - posed, dim=-1)
    cosine = (posed_normals * to_camera).sum(-1)
    weights = torch.where(visible, cosine.clamp_min(0.0) ** 2, torch.zeros_like(cosine))
    return pixels, weights


def sample_photo(photo: np.ndarray, points: np.ndarray) -> torch.Tensor:
    """Bilinear colours (N, 3) in [0, 1] of ``photo`` (H, W, 3) uint8 at ``points`` (N, 2) photo pixels
    (pixel-centre convention; black outside)."""
    image = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    height, width = photo.shape[:2]
    grid = torch.as_tensor(points, dtype=torch.float32).clone()
    grid[:, 0] = grid[:, 0] / width * 2.0 - 1.0
    grid[:, 1] = grid[:, 1] / height * 2.0 - 1.0
    sampled = F.grid_sample(image, grid.view(1, 1, -1, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return sampled[0, :, 0].T


def photo_vertex_colours(model: MorphableModel, camera: PerspectiveCamera, render: FaceRender,
                         coefficients: FaceCoefficients, photos: Sequence[np.ndarray | None],
                         affines: Sequence[np.ndarray | None], fallback: torch.Tensor, sample: int = 0,
                         depth_tolerance_mm: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Colours (V, 3) in [0, 1] projected from the photos onto the mesh (see the module docstring).

    Args:
        model, camera, render, coefficients, sample, depth_tolerance_mm: as in :func:`view_visibility_weights`.
        photos: per view (S,) the original photo (H, W, 3) uint8, or None for a view not given.
        affines: per view the (2, 3) affine photo pixels -> crop pixels of that photo's crop, or None.
        fallback: (V, 3) colours of the vertices no photo sees.
    Returns:
        ``(colours (V, 3), coverage (V,))``: coverage is the summed view weight (0 = fallback colour).
    """
    pixels, weights = view_visibility_weights(model, camera, render, coefficients, sample, depth_tolerance_mm)
    if len(photos) != pixels.shape[0] or len(affines) != pixels.shape[0]:
        raise ValueError(f"photo_vertex_colours: one photo and affine per view ({pixels.shape[0]}), got "
                         f"{len(photos)} photos and {len(affines)} affines")
    total = torch.zeros_like(fallback, dtype=torch.float32)
    coverage = torch.zeros(fallback.shape[0])
    for view, (photo, affine) in enumerate(zip(photos, affines)):
        if photo is None or affine is None:
            continue
        points = pixels[view].double().numpy() @ invert_affine(np.asarray(affine))[:, :2].T \
            + invert_affine(np.asarray(affine))[:, 2]
        colours = sample_photo(photo, points)
        total += weights[view, :, None] * colours
        coverage += weights[view]
    seen = coverage > 1e-6
    blended = torch.where(seen[:, None], total / coverage.clamp_min(1e-6)[:, None], fallback.float())
    return blended.clamp(0.0, 1.0), coverage


__all__ = ["photo_vertex_colours", "sample_photo", "view_visibility_weights"]
