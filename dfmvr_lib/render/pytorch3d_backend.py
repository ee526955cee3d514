"""Optional rasterisation with pytorch3d's ``MeshRasterizer``, converted to this library's conventions.

pytorch3d is imported inside the functions only (it is an optional dependency); a clear ``ImportError`` is raised
when it is missing.

Conversion (square images of size ``S``, focal length ``f`` pixels, camera distance ``D`` mm):

- pytorch3d's view frame has ``+X`` left, ``+Y`` up, ``+Z`` into the scene, and maps world points as
  ``X_view = X_world @ R + T``. With ``R = diag(-1, 1, -1)`` (a proper rotation) and ``T = (0, 0, D)`` a posed point
  ``(X, Y, Z)`` goes to ``(-X, Y, D - Z)``: view ``Z`` is exactly our camera depth.
- Its NDC has ``(+1, +1)`` at the top-left image corner and pixel centres at ``1 - (2 j + 1) / S`` (columns) and
  ``1 - (2 i + 1) / S`` (rows). Our ``u = S/2 + f X / d`` and ``v = S/2 - f Y / d`` give ``x_ndc = 1 - 2 u / S =
  (2 f / S) (-X) / d`` and ``y_ndc = 1 - 2 v / S = (2 f / S) Y / d``: a ``PerspectiveCameras`` in NDC with focal
  length ``2 f / S`` and principal point ``(0, 0)``. So pytorch3d samples exactly our pixel centres
  ``(j + 0.5, i + 0.5)``.
- ``faces_per_pixel = 1``, ``blur_radius = 0``, perspective-correct barycentrics, no back-face culling, naive
  (exact, ``bin_size = 0``) rasterisation. Triangles with a vertex at depth ``<= NEAR_DEPTH_MM`` are removed
  before rasterising, as in the other backends.
"""
from __future__ import annotations

import torch

from ..camera import PerspectiveCamera
from .rasterize import NEAR_DEPTH_MM


def _import_pytorch3d():
    # pytorch3d is optional (and not installed on most machines): imported only when its backend is used
    try:
        from pytorch3d.renderer import MeshRasterizer, PerspectiveCameras, RasterizationSettings
        from pytorch3d.structures import Meshes
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='pytorch3d' needs the optional package pytorch3d (https://github.com/facebookresearch/pytorch3d),"
            " which is not installed; use backend='auto', 'numba' or 'torch' instead") from error
    return MeshRasterizer, PerspectiveCameras, RasterizationSettings, Meshes


def pytorch3d_available() -> bool:
    """True when pytorch3d can be imported."""
    try:
        _import_pytorch3d()
    except ImportError:
        return False
    return True


def rasterize_pytorch3d(vertices: torch.Tensor, triangles: torch.Tensor, camera: PerspectiveCamera):
    """Rasterise posed meshes with pytorch3d in this library's conventions.

    Args:
        vertices: (N, V, 3) posed vertices in mm.
        triangles: (F, 3) long, shared by all views.
        camera: the pinhole camera (square image of ``camera.image_size`` pixels).
    Returns:
        ``(triangle_ids (N,H,W) long (-1 uncovered), bary (N,H,W,3) perspective-correct, depth (N,H,W) mm)``;
        ``bary`` and ``depth`` are differentiable w.r.t. ``vertices`` (pytorch3d's own backward) and zero where
        uncovered.
    """
    MeshRasterizer, PerspectiveCameras, RasterizationSettings, Meshes = _import_pytorch3d()
    N = vertices.shape[0]
    S = int(camera.image_size)
    device = vertices.device
    triangles = triangles.to(device)
    depth_of_vertices = camera.camera_distance_mm - vertices[..., 2].detach()
    keep = (depth_of_vertices[:, triangles] > NEAR_DEPTH_MM).all(-1)  # (N, F)
    kept_ids = [keep[n].nonzero().squeeze(1) for n in range(N)]
    # pytorch3d rasterises in float32 (its kernels have no float64 version); gradients flow through the cast.
    meshes = Meshes(verts=list(vertices.float().unbind(0)), faces=[triangles[ids] for ids in kept_ids])
    rotation = torch.diag(torch.tensor([-1.0, 1.0, -1.0], device=device)).repeat(N, 1, 1)
    translation = torch.tensor([[0.0, 0.0, camera.camera_distance_mm]], device=device).repeat(N, 1)
    cameras = PerspectiveCameras(focal_length=2.0 * camera.focal_length / S, principal_point=((0.0, 0.0),),
                                 R=rotation, T=translation, in_ndc=True, device=device)
    settings = RasterizationSettings(image_size=S, blur_radius=0.0, faces_per_pixel=1, perspective_correct=True,
                                     cull_backfaces=False, bin_size=0)
    fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
    packed = fragments.pix_to_face[..., 0]  # (N, H, W), index into the packed (kept) faces
    kept_all = torch.cat(kept_ids) if N else torch.zeros(0, dtype=torch.long, device=device)
    covered = packed >= 0
    triangle_ids = torch.where(covered, kept_all[packed.clamp(min=0)], torch.full_like(packed, -1))
    mask = covered.unsqueeze(-1).to(vertices.dtype)
    bary = fragments.bary_coords[..., 0, :].to(vertices.dtype) * mask
    depth = fragments.zbuf[..., 0].to(vertices.dtype) * mask[..., 0]
    return triangle_ids, bary, depth
