"""Hard z-buffer rasterisation: which triangle covers each pixel centre (no gradients).

Conventions (docs/conventions.md): pixel origin at the top-left corner, ``u`` right, ``v`` down, pixel
``(row i, column j)`` sampled at its centre ``(j + 0.5, i + 0.5)``. Vertices enter as *screen vertices*
``(u, v, d)``: pixel coordinates and camera depth ``d = camera_distance_mm - Z`` in mm (see
:func:`screen_vertices`).

Rules shared by every backend:

- a pixel centre is covered by a triangle when it lies inside or on the border of the projected triangle (all
  three screen-space edge functions have the sign of the triangle's area, zero allowed);
- the covering triangle with the smallest perspective-correct depth wins (one triangle per pixel, no blur); depths
  are computed in float64 and compared after rounding to float32, and equal float32 depths keep the triangle with
  the smaller index (both backends use the same operations in the same order, so they agree bit for bit except in
  rare rounding differences of torch's vectorised kernels);
- triangles with a vertex at depth ``<= NEAR_DEPTH_MM`` (behind the camera, or partly behind) are skipped, and so
  are degenerate triangles (projected area ``<= MIN_AREA_PX2``);
- there is **no back-face culling**: both windings are rasterised and the z-buffer decides (on a closed or
  front-facing mesh the front surface is nearer, so this gives the same picture as culling would).

Backends: :func:`rasterize_numba` (CPU, ``numba`` ``parallel=True`` kernel over views and row bands) and
:func:`rasterize_torch` (any device, vectorised over the candidate pixels of every triangle's bounding box with a
packed ``(depth, triangle id)`` key reduced by ``scatter_reduce(amin)``).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from ..camera import PerspectiveCamera

NEAR_DEPTH_MM = 1e-3
"""Triangles with any vertex at camera depth <= this (mm) are not rasterised."""
MIN_AREA_PX2 = 1e-10
"""Triangles whose projected area (pixels squared) is at most this are degenerate and not rasterised."""


def screen_vertices(vertices: torch.Tensor, camera: PerspectiveCamera) -> torch.Tensor:
    """Project posed vertices to screen vertices ``(u, v, d)``, differentiably.

    Args:
        vertices: (N, V, 3) posed vertices in mm (camera at ``(0, 0, camera_distance_mm)`` looking down ``-z``).
        camera: the pinhole camera.
    Returns:
        (N, V, 3): ``u`` (column, pixels, right), ``v`` (row, pixels, down), ``d = camera_distance_mm - Z`` (mm).
        ``u, v`` equal :meth:`PerspectiveCamera.project`. For vertices at ``d <= NEAR_DEPTH_MM`` ``u, v`` are
        finite placeholders (those vertices' triangles are never rasterised), so no inf/NaN enters the gradients.
    """
    depth = camera.camera_distance_mm - vertices[..., 2]
    safe = torch.where(depth > NEAR_DEPTH_MM, depth, torch.ones_like(depth))
    c = camera.principal_point
    u = c + camera.focal_length * vertices[..., 0] / safe
    v = c - camera.focal_length * vertices[..., 1] / safe
    return torch.stack([u, v, depth], -1)


# ----------------------------------------------------------------------------------------------------------------
# numba backend
# ----------------------------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True)
def band_task(task, n_bands, height):
    """The work item ``task`` of a kernel that splits each of the views into ``n_bands`` bands of rows:
    (view, first row, one past the last row); tasks run view-major, band by band."""
    band = task % n_bands
    return task // n_bands, (band * height) // n_bands, ((band + 1) * height) // n_bands


@numba.njit(parallel=True, cache=True, nogil=True)
def _rasterize_kernel(screen, triangles, height, width, n_bands, near, min_area, triangle_ids):
    """screen (N,V,3) float, triangles (F,3) int; fills every pixel of triangle_ids (N,H,W) int64 (-1 uncovered).

    Task = (view, band of rows); tasks never share pixels. The z-buffer is a float32 per-task scratch array
    (float32 so that the comparison matches the torch backend's packed float32 depth keys exactly)."""
    n_views = screen.shape[0]
    n_tris = triangles.shape[0]
    for task in numba.prange(n_views * n_bands):
        n, row0, row1 = band_task(task, n_bands, height)
        if row1 <= row0:
            continue
        zbuffer = np.full((row1 - row0, width), np.inf, dtype=np.float32)
        for i in range(row0, row1):
            for j in range(width):
                triangle_ids[n, i, j] = -1
        for f in range(n_tris):
            a = triangles[f, 0]
            b = triangles[f, 1]
            c = triangles[f, 2]
            d0 = np.float64(screen[n, a, 2])
            d1 = np.float64(screen[n, b, 2])
            d2 = np.float64(screen[n, c, 2])
            if not (d0 > near and d1 > near and d2 > near):
                continue
            u0 = np.float64(screen[n, a, 0])
            v0 = np.float64(screen[n, a, 1])
            u1 = np.float64(screen[n, b, 0])
            v1 = np.float64(screen[n, b, 1])
            u2 = np.float64(screen[n, c, 0])
            v2 = np.float64(screen[n, c, 1])
            umin = min(u0, min(u1, u2))
            umax = max(u0, max(u1, u2))
            vmin = min(v0, min(v1, v2))
            vmax = max(v0, max(v1, v2))
            # Rejects NaN as well (comparisons with NaN are false).
            if not (umax >= 0.5 and umin <= width - 0.5 and vmax >= row0 + 0.5 and vmin <= row1 - 0.5):
                continue
            # Pixel centres j + 0.5 inside [umin, umax].
            jmin = int(math.ceil(max(umin - 0.5, 0.0)))
            jmax = int(math.floor(min(umax - 0.5, width - 1.0)))
            imin = int(math.ceil(max(vmin - 0.5, np.float64(row0))))
            imax = int(math.floor(min(vmax - 0.5, row1 - 1.0)))
            if jmin > jmax or imin > imax:
                continue
            area = (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)
            if abs(area) <= min_area:
                continue
            positive = area > 0.0
            inv_d0 = 1.0 / d0
            inv_d1 = 1.0 / d1
            inv_d2 = 1.0 / d2
            for i in range(imin, imax + 1):
                py = i + 0.5
                c0 = v0 - py
                c1 = v1 - py
                c2 = v2 - py
                for j in range(jmin, jmax + 1):
                    px = j + 0.5
                    a0 = u0 - px
                    a1 = u1 - px
                    a2 = u2 - px
                    e0 = a1 * c2 - c1 * a2
                    e1 = a2 * c0 - c2 * a0
                    e2 = a0 * c1 - c0 * a1
                    if positive:
                        if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                            continue
                    else:
                        if e0 > 0.0 or e1 > 0.0 or e2 > 0.0:
                            continue
                    # Perspective-correct depth: 1/z interpolates linearly in screen space.
                    z = np.float32(area / (e0 * inv_d0 + e1 * inv_d1 + e2 * inv_d2))
                    if z < zbuffer[i - row0, j]:
                        zbuffer[i - row0, j] = z
                        triangle_ids[n, i, j] = f


def default_bands(num_views: int, height: int) -> int:
    """Row bands per view so that the numba kernels have at least ~2 tasks per thread."""
    threads = numba.get_num_threads()
    bands = max(1, -(-2 * threads // max(num_views, 1))) if num_views < 2 * threads else 1
    return int(min(bands, max(height, 1)))


def rasterize_numba(screen: torch.Tensor, triangles: torch.Tensor, image_size: int) -> torch.Tensor:
    """Triangle id per pixel with the numba CPU kernel.

    Args:
        screen: (N, V, 3) screen vertices ``(u, v, d)`` (see :func:`screen_vertices`), CPU float tensor.
        triangles: (F, 3) long vertex ids, shared by all views.
        image_size: H = W in pixels.
    Returns:
        (N, H, W) long triangle ids, -1 where no triangle covers the pixel centre.
    """
    if screen.device.type != "cpu" or triangles.device.type != "cpu":
        raise ValueError("the numba rasteriser needs CPU tensors; use backend='torch' on other devices")
    screen_np = screen.detach().contiguous().numpy()
    tri_np = triangles.detach().to(torch.int64).contiguous().numpy()
    N, H, W = screen.shape[0], int(image_size), int(image_size)
    if N == 0 or tri_np.shape[0] == 0:
        return torch.full((N, H, W), -1, dtype=torch.int64)
    triangle_ids = torch.empty((N, H, W), dtype=torch.int64)
    _rasterize_kernel(screen_np, tri_np, H, W, default_bands(N, H), NEAR_DEPTH_MM, MIN_AREA_PX2,
                      triangle_ids.numpy())
    return triangle_ids


# ----------------------------------------------------------------------------------------------------------------
# pure-torch backend
# ----------------------------------------------------------------------------------------------------------------
def rasterize_torch(screen: torch.Tensor, triangles: torch.Tensor, image_size: int,
                    max_candidates: int = 1 << 24) -> torch.Tensor:
    """Triangle id per pixel, vectorised in torch (works on any device).

    Every triangle lists the pixel centres of its clipped bounding box; the inside test and perspective-correct
    depth are evaluated for all candidates at once, and the nearest is chosen per pixel with a packed int64 key
    ``(float32 depth bits << 32) | triangle id`` reduced with ``scatter_reduce(amin)`` (depth > 0, so the bit
    pattern orders like the value; ties keep the smaller triangle id). Candidates are processed in chunks of at most
    ``max_candidates`` to bound memory.

    Args:
        screen: (N, V, 3) screen vertices ``(u, v, d)``.
        triangles: (F, 3) long.
        image_size: H = W in pixels.
    Returns:
        (N, H, W) long triangle ids, -1 where uncovered.
    """
    device = screen.device
    N, H, W = screen.shape[0], int(image_size), int(image_size)
    F = triangles.shape[0]
    sentinel = torch.iinfo(torch.int64).max
    keys = torch.full((N * H * W,), sentinel, dtype=torch.int64, device=device)
    if N == 0 or F == 0:
        return torch.full((N, H, W), -1, dtype=torch.int64, device=device)
    with torch.no_grad():
        tables = _candidate_tables(screen.detach(), triangles.to(device), H, W)
        if tables is None:
            return torch.full((N, H, W), -1, dtype=torch.int64, device=device)
        reals, ints, flat_counts = tables
        cumulative = torch.cumsum(flat_counts, 0)
        total = int(cumulative[-1])
        start = 0
        while start < total:
            # Triangles [t0, t1) whose candidates start inside [start, start + max_candidates).
            t0 = int(torch.searchsorted(cumulative, torch.tensor(start, device=device), right=True))
            stop = start + max_candidates
            t1 = int(torch.searchsorted(cumulative, torch.tensor(stop, device=device), right=True))
            t1 = max(t1, t0 + 1)
            _reduce_candidates(keys, reals, ints, flat_counts, t0, t1, H, W)
            start = int(cumulative[t1 - 1])
    triangle_ids = torch.where(keys == sentinel, torch.full_like(keys, -1), keys & 0xFFFFFFFF)
    return triangle_ids.reshape(N, H, W)


def _candidate_tables(screen: torch.Tensor, triangles: torch.Tensor, height: int, width: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The triangles of every view that have candidate pixels, as compact tables for :func:`rasterize_torch`.

    Args:
        screen: (N, V, 3) screen vertices ``(u, v, d)`` (no gradient needed).
        triangles: (F, 3) long, on ``screen``'s device.
        height, width: image size in pixels.
    Returns:
        None when no triangle has a candidate pixel, else ``(reals, ints, counts)`` with one row per such
        (view, triangle) pair, in ``view * F + triangle`` order: ``reals`` (T, 10) float64 = the corners' ``u`` (3),
        ``v`` (3), ``1 / d`` (3) and the signed doubled area; ``ints`` (T, 5) long = first column and row of the
        clipped bounding box, its width in pixels, the view, the triangle id; ``counts`` (T,) long = candidate
        pixels (bounding-box area). Skipped (no row): near or degenerate triangles, boxes off the image.
    """
    N, F = screen.shape[0], triangles.shape[0]
    H, W = height, width
    corners = screen[:, triangles].to(torch.float64)  # (N, F, 3 corners, 3)
    u, v, d = corners[..., 0], corners[..., 1], corners[..., 2]
    area = (u[..., 1] - u[..., 0]) * (v[..., 2] - v[..., 0]) - (v[..., 1] - v[..., 0]) * (u[..., 2] - u[..., 0])
    valid = (d > NEAR_DEPTH_MM).all(-1) & (area.abs() > MIN_AREA_PX2)
    umin, umax = u.amin(-1), u.amax(-1)
    vmin, vmax = v.amin(-1), v.amax(-1)
    valid &= (umax >= 0.5) & (umin <= W - 0.5) & (vmax >= 0.5) & (vmin <= H - 0.5)
    jmin = torch.ceil((umin - 0.5).clamp(min=0.0)).nan_to_num(0.0).long()
    jmax = torch.floor((umax - 0.5).clamp(max=W - 1.0)).nan_to_num(-1.0).long()
    imin = torch.ceil((vmin - 0.5).clamp(min=0.0)).nan_to_num(0.0).long()
    imax = torch.floor((vmax - 0.5).clamp(max=H - 1.0)).nan_to_num(-1.0).long()
    widths = (jmax - jmin + 1).clamp(min=0)
    counts = torch.where(valid, widths * (imax - imin + 1).clamp(min=0), torch.zeros_like(widths)).reshape(-1)
    flat = counts.nonzero().squeeze(1)  # ids into N * F of triangles with candidate pixels
    if flat.numel() == 0:
        return None
    # Compact per-triangle tables, so that each chunk needs one float and one integer gather.
    reals = torch.cat([u, v, 1.0 / d, area.unsqueeze(-1)], -1).reshape(N * F, 10)[flat]
    ints = torch.stack([jmin.reshape(-1)[flat], imin.reshape(-1)[flat], widths.reshape(-1)[flat],
                        flat // F, flat % F], 1)
    return reals, ints, counts[flat]


def _reduce_candidates(keys: torch.Tensor, reals: torch.Tensor, ints: torch.Tensor, counts: torch.Tensor,
                       t0: int, t1: int, height: int, width: int) -> None:
    """Test the candidate pixels of table rows ``[t0, t1)`` (:func:`_candidate_tables`) and fold the covered ones
    into ``keys`` ((N * H * W,) int64 packed ``(float32 depth bits << 32) | triangle id``, in place, ``amin``)."""
    H, W = height, width
    device = keys.device
    sel_counts = counts[t0:t1]
    owner = torch.repeat_interleave(torch.arange(t0, t1, device=device), sel_counts)
    first = torch.cumsum(sel_counts, 0) - sel_counts
    local = torch.arange(owner.numel(), device=device) - first[owner - t0]
    tri_reals = reals[owner]
    tri_ints = ints[owner]
    w = tri_ints[:, 2]
    j = tri_ints[:, 0] + local % w
    i = tri_ints[:, 1] + local // w
    n_idx, f_idx = tri_ints[:, 3], tri_ints[:, 4]
    a = tri_reals[:, 0:3] - (j.to(torch.float64) + 0.5).unsqueeze(1)
    c = tri_reals[:, 3:6] - (i.to(torch.float64) + 0.5).unsqueeze(1)
    e = torch.stack([a[:, 1] * c[:, 2] - c[:, 1] * a[:, 2],
                     a[:, 2] * c[:, 0] - c[:, 2] * a[:, 0],
                     a[:, 0] * c[:, 1] - c[:, 0] * a[:, 1]], 1)
    tri_area = tri_reals[:, 9]
    inside = torch.where((tri_area > 0).unsqueeze(1), e >= 0, e <= 0).all(1)
    k = e * tri_reals[:, 6:9]
    z = tri_area / (k[:, 0] + k[:, 1] + k[:, 2])  # same operations and order as the numba kernel
    z_bits = z.to(torch.float32).view(torch.int32).to(torch.int64)
    key = (z_bits << 32) | f_idx
    pixel = (n_idx * H + i) * W + j
    keys.scatter_reduce_(0, pixel[inside], key[inside], reduce="amin", include_self=True)
