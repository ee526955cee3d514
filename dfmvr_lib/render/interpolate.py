"""Differentiable perspective-correct interpolation at covered pixel centres (visibility fixed).

Given the triangle id of every pixel (from :mod:`dfmvr_lib.render.rasterize`) and the screen vertices
``(u, v, d)`` (pixels, pixels, mm), a covered pixel centre ``p = (j + 0.5, i + 0.5)`` of triangle ``(v0, v1, v2)``
gets, with ``a_k = u_k - p_u`` and ``c_k = v_k - p_v``,

    E_0 = a_1 c_2 - c_1 a_2,   E_1 = a_2 c_0 - c_2 a_0,   E_2 = a_0 c_1 - c_0 a_1     (screen edge functions)
    k_m = E_m / d_m,   S = k_0 + k_1 + k_2
    b_m = k_m / S                                  (perspective-correct barycentrics)
    z   = (E_0 + E_1 + E_2) / S                    (camera depth, mm; 1/z is linear in screen space)
    colour = sum_m b_m C_m

The screen-space barycentrics are ``E_m / A`` with ``A = sum E_m``; dividing by depth and renormalising makes
``b_m`` the barycentric weights of the 3D point seen through the pixel, so interpolating any linear function of
3D position is exact. Outputs (image, depth, barycentrics) are differentiable w.r.t. the screen vertices and the
vertex attributes *inside* triangles; visibility (which triangle covers which pixel) has no gradient, like
pytorch3d with ``blur_radius = 0``.

The backward pass is analytic (see :func:`_backward_kernel`) and checked against finite differences in
tests/test_renderer.py. Two implementations with identical semantics: :class:`NumbaInterpolation` (CPU; numba
forward and analytic numba backward that scatter-adds into per-vertex gradients) and :func:`interpolate_torch`
(plain torch ops, autograd, any device).
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from .rasterize import band_task, default_bands


# ----------------------------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True)
def _pixel_terms(screen, triangles, n, f, px, py):
    """Shared set-up of the forward and backward kernels for triangle ``f`` of view ``n`` at pixel centre (px, py).

    Returns the corner ids (ia, ib, ic), the corners' offsets from the pixel centre a_m = u_m - px, c_m = v_m - py,
    their depths d_m, the screen-space edge functions E_m (twice the signed sub-triangle areas), k_m = E_m / d_m
    and S = k_0 + k_1 + k_2; the perspective-correct barycentrics are b_m = k_m / S and the depth is sum(E_m) / S.
    """
    ia = triangles[f, 0]
    ib = triangles[f, 1]
    ic = triangles[f, 2]
    a0 = np.float64(screen[n, ia, 0]) - px
    a1 = np.float64(screen[n, ib, 0]) - px
    a2 = np.float64(screen[n, ic, 0]) - px
    c0 = np.float64(screen[n, ia, 1]) - py
    c1 = np.float64(screen[n, ib, 1]) - py
    c2 = np.float64(screen[n, ic, 1]) - py
    d0 = np.float64(screen[n, ia, 2])
    d1 = np.float64(screen[n, ib, 2])
    d2 = np.float64(screen[n, ic, 2])
    e0 = a1 * c2 - c1 * a2
    e1 = a2 * c0 - c2 * a0
    e2 = a0 * c1 - c0 * a1
    k0 = e0 / d0
    k1 = e1 / d1
    k2 = e2 / d2
    return ia, ib, ic, a0, a1, a2, c0, c1, c2, d0, d1, d2, e0, e1, e2, k0, k1, k2, k0 + k1 + k2


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_kernel(screen, colours, triangles, triangle_ids, labels, has_labels, background, background_mode,
                    image, depth, bary, part_labels, alpha):
    """screen (N,V,3), colours (N,V,C), triangle_ids (N,H,W). Writes *every* pixel of image (N,C,H,W),
    depth (N,H,W), bary (N,H,W,3), part_labels (N,H,W), alpha (N,1,H,W) (outputs may be uninitialised).

    Uncovered pixels get depth 0, bary 0, label 0, alpha 0 and the background: background_mode 0 = zeros,
    1 = one colour ``background[0, :, 0, 0]``, 2 = per-pixel ``background[n, :, i, j]``."""
    n_views, height, width = triangle_ids.shape
    n_channels = colours.shape[2]
    for row in numba.prange(n_views * height):
        n = row // height
        i = row % height
        py = i + 0.5
        for j in range(width):
            f = triangle_ids[n, i, j]
            if f < 0:
                depth[n, i, j] = 0.0
                bary[n, i, j, 0] = 0.0
                bary[n, i, j, 1] = 0.0
                bary[n, i, j, 2] = 0.0
                part_labels[n, i, j] = 0
                alpha[n, 0, i, j] = 0.0
                for ch in range(n_channels):
                    if background_mode == 0:
                        image[n, ch, i, j] = 0.0
                    elif background_mode == 1:
                        image[n, ch, i, j] = background[0, ch, 0, 0]
                    else:
                        image[n, ch, i, j] = background[n, ch, i, j]
                continue
            ia, ib, ic, a0, a1, a2, c0, c1, c2, d0, d1, d2, e0, e1, e2, k0, k1, k2, s = _pixel_terms(
                screen, triangles, n, f, j + 0.5, py)
            b0 = k0 / s
            b1 = k1 / s
            b2 = k2 / s
            depth[n, i, j] = (e0 + e1 + e2) / s
            bary[n, i, j, 0] = b0
            bary[n, i, j, 1] = b1
            bary[n, i, j, 2] = b2
            alpha[n, 0, i, j] = 1.0
            for ch in range(n_channels):
                image[n, ch, i, j] = b0 * colours[n, ia, ch] + b1 * colours[n, ib, ch] + b2 * colours[n, ic, ch]
            label = 0
            if has_labels:
                best = ia
                if b1 > b0 and b1 >= b2:
                    best = ib
                elif b2 > b0 and b2 > b1:
                    best = ic
                label = labels[best]
            part_labels[n, i, j] = label


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_kernel(screen, colours, triangles, triangle_ids, n_bands,
                     grad_image, has_grad_image, grad_depth, has_grad_depth, grad_bary, has_grad_bary,
                     need_screen, need_colours, grad_screen, grad_colours):
    """Analytic vector-Jacobian product of :func:`_forward_kernel`.

    grad_screen (n_bands, N, V, 3) and grad_colours (n_bands, N, V, C) are zeroed accumulators (working dtype), one
    slice per row band so that parallel tasks (view, band) never write the same memory; the caller sums over bands.
    Per covered pixel, with G_m = dL/db_m (from the bary output and from the image: sum_c dL/dI_c C_m,c) and
    g_z = dL/dz: dL/dk_m = (G_m - sum_l G_l b_l - g_z z) / S, dL/dE_m = dL/dk_m / d_m + g_z / S,
    dL/dd_m = -dL/dk_m k_m / d_m, then the bilinear E_m(a, c) give dL/du and dL/dv; dL/dC_m,c = b_m dL/dI_c.
    """
    n_views, height, width = triangle_ids.shape
    n_channels = colours.shape[2]
    for task in numba.prange(n_views * n_bands):
        n, row0, row1 = band_task(task, n_bands, height)
        band = task % n_bands                                # the band's own gradient accumulator
        for i in range(row0, row1):
            py = i + 0.5
            for j in range(width):
                f = triangle_ids[n, i, j]
                if f < 0:
                    continue
                ia, ib, ic, a0, a1, a2, c0, c1, c2, d0, d1, d2, e0, e1, e2, k0, k1, k2, s = _pixel_terms(
                    screen, triangles, n, f, j + 0.5, py)
                inv_s = 1.0 / s
                b0 = k0 * inv_s
                b1 = k1 * inv_s
                b2 = k2 * inv_s
                # G_m: gradient of the loss w.r.t. the barycentric b_m (through the outputs bary and image).
                g0 = 0.0
                g1 = 0.0
                g2 = 0.0
                if has_grad_bary:
                    g0 += grad_bary[n, i, j, 0]
                    g1 += grad_bary[n, i, j, 1]
                    g2 += grad_bary[n, i, j, 2]
                if has_grad_image:
                    for ch in range(n_channels):
                        gi = np.float64(grad_image[n, ch, i, j])
                        if gi == 0.0:
                            continue
                        g0 += gi * colours[n, ia, ch]
                        g1 += gi * colours[n, ib, ch]
                        g2 += gi * colours[n, ic, ch]
                        if need_colours:
                            grad_colours[band, n, ia, ch] += gi * b0
                            grad_colours[band, n, ib, ch] += gi * b1
                            grad_colours[band, n, ic, ch] += gi * b2
                if not need_screen:
                    continue
                gz = 0.0
                if has_grad_depth:
                    gz = np.float64(grad_depth[n, i, j])
                z = (e0 + e1 + e2) * inv_s
                # b_m = k_m / S  ->  dL/dk_m = (G_m - sum_l G_l b_l) / S ;  z = A / S  ->  dz/dk_m = -z / S.
                gbar = g0 * b0 + g1 * b1 + g2 * b2
                gk0 = (g0 - gbar - gz * z) * inv_s
                gk1 = (g1 - gbar - gz * z) * inv_s
                gk2 = (g2 - gbar - gz * z) * inv_s
                ga = gz * inv_s  # dz/dA with A = E_0 + E_1 + E_2
                # k_m = E_m / d_m
                ge0 = gk0 / d0 + ga
                ge1 = gk1 / d1 + ga
                ge2 = gk2 / d2 + ga
                gd0 = -gk0 * k0 / d0
                gd1 = -gk1 * k1 / d1
                gd2 = -gk2 * k2 / d2
                # E_0 = a1 c2 - c1 a2 ; E_1 = a2 c0 - c2 a0 ; E_2 = a0 c1 - c0 a1   (a = u - px, c = v - py)
                gu0 = ge1 * (-c2) + ge2 * c1
                gv0 = ge1 * a2 + ge2 * (-a1)
                gu1 = ge0 * c2 + ge2 * (-c0)
                gv1 = ge0 * (-a2) + ge2 * a0
                gu2 = ge0 * (-c1) + ge1 * c0
                gv2 = ge0 * a1 + ge1 * (-a0)
                grad_screen[band, n, ia, 0] += gu0
                grad_screen[band, n, ia, 1] += gv0
                grad_screen[band, n, ia, 2] += gd0
                grad_screen[band, n, ib, 0] += gu1
                grad_screen[band, n, ib, 1] += gv1
                grad_screen[band, n, ib, 2] += gd1
                grad_screen[band, n, ic, 0] += gu2
                grad_screen[band, n, ic, 1] += gv2
                grad_screen[band, n, ic, 2] += gd2


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class NumbaInterpolation(torch.autograd.Function):
    """Autograd function ``(screen, colours, triangles, triangle_ids, labels, background)
    -> (image, depth, bary, part_labels, alpha)``.

    Forward and backward are numba kernels over pixels (the backward only visits covered ones). Shapes: screen
    (N, V, 3) ``(u, v, d)``; colours (N, V, C); triangles (F, 3) long; triangle_ids (N, H, W) long (-1 = uncovered);
    labels (V,) long or ``None``; background ``None`` (zeros), a (C,) colour or an (N, C, H, W) image, composited at
    uncovered pixels (no gradient flows to it). Returns image (N, C, H, W), depth (N, H, W) mm, bary (N, H, W, 3)
    (zeros where uncovered), part_labels (N, H, W) long (zeros where uncovered or without ``labels``) and alpha
    (N, 1, H, W). Differentiable w.r.t. ``screen`` and ``colours``; visibility is held fixed.
    """

    @staticmethod
    def forward(ctx, screen, colours, triangles, triangle_ids, labels, background):
        dtype = torch.promote_types(screen.dtype, colours.dtype)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"NumbaInterpolation supports float32 and float64, got {dtype}")
        # One dtype for everything keeps the number of compiled kernel specialisations at two.
        screen_, colours_ = screen.to(dtype), colours.to(dtype)
        triangles, triangle_ids = triangles.to(torch.int64), triangle_ids.to(torch.int64)
        N, H, W = triangle_ids.shape
        C = colours.shape[2]
        # torch.empty: the kernel writes every pixel (and pays the first-touch page faults in parallel).
        image = torch.empty((N, C, H, W), dtype=dtype)
        depth = torch.empty((N, H, W), dtype=dtype)
        bary = torch.empty((N, H, W, 3), dtype=dtype)
        alpha = torch.empty((N, 1, H, W), dtype=dtype)
        part_labels = torch.empty((N, H, W), dtype=torch.int64)
        has_labels = labels is not None
        labels_np = _numpy(labels.to(torch.int64)) if has_labels else np.zeros(1, dtype=np.int64)
        if background is None:
            mode, background_np = 0, np.zeros((1, 1, 1, 1), dtype=image.numpy().dtype)
        elif background.ndim == 4:
            mode, background_np = 2, _numpy(background.to(dtype))
        else:
            mode, background_np = 1, _numpy(background.to(dtype).reshape(1, C, 1, 1))
        _forward_kernel(_numpy(screen_), _numpy(colours_), _numpy(triangles), _numpy(triangle_ids), labels_np,
                        has_labels, background_np, mode, image.numpy(), depth.numpy(), bary.numpy(),
                        part_labels.numpy(), alpha.numpy())
        ctx.input_dtypes = (screen.dtype, colours.dtype)
        ctx.save_for_backward(screen_, colours_, triangles, triangle_ids)
        ctx.mark_non_differentiable(part_labels, alpha)
        ctx.set_materialize_grads(False)
        return image, depth, bary, part_labels, alpha

    @staticmethod
    def backward(ctx, grad_image, grad_depth, grad_bary, _grad_labels, _grad_alpha):
        screen, colours, triangles, triangle_ids = ctx.saved_tensors
        need_screen, need_colours = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        nothing = (None,) * 6
        if not (need_screen or need_colours):
            return nothing
        if grad_image is None and (grad_depth is None or not need_screen) and (grad_bary is None or not need_screen):
            return nothing
        N, V, _ = screen.shape
        C = colours.shape[2]
        bands = default_bands(N, triangle_ids.shape[1])
        dtype = screen.dtype
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        # Accumulate in the working precision (float32 is ample: a vertex receives a few dozen pixel terms).
        grad_screen = np.zeros((bands, N, V, 3) if need_screen else (1, 1, 1, 1), dtype=np_dtype)
        grad_colours = np.zeros((bands, N, V, C) if need_colours else (1, 1, 1, 1), dtype=np_dtype)

        def grad_array(grad, ndim):
            if grad is None:
                return np.zeros((1,) * ndim, dtype=np_dtype)
            return _numpy(grad.to(dtype))

        _backward_kernel(
            _numpy(screen), _numpy(colours), _numpy(triangles), _numpy(triangle_ids), bands,
            grad_array(grad_image, 4), grad_image is not None, grad_array(grad_depth, 3), grad_depth is not None,
            grad_array(grad_bary, 4), grad_bary is not None,
            need_screen, need_colours and grad_image is not None, grad_screen, grad_colours)
        out_screen = out_colours = None
        screen_dtype, colour_dtype = ctx.input_dtypes
        if need_screen:
            out_screen = torch.from_numpy(grad_screen.sum(0) if bands > 1 else grad_screen[0]).to(screen_dtype)
        if need_colours:
            out_colours = torch.from_numpy(grad_colours.sum(0) if bands > 1 else grad_colours[0]).to(colour_dtype)
        return out_screen, out_colours, None, None, None, None


def interpolate_numba(screen: torch.Tensor, colours: torch.Tensor, triangles: torch.Tensor,
                      triangle_ids: torch.Tensor, labels: torch.Tensor | None = None,
                      background: torch.Tensor | None = None):
    """Numba (CPU) perspective-correct interpolation; see :class:`NumbaInterpolation` for shapes.

    Returns ``(image (N,C,H,W), depth (N,H,W), bary (N,H,W,3), part_labels (N,H,W) long, alpha (N,1,H,W))``.
    """
    for name, tensor in (("screen", screen), ("colours", colours), ("triangle_ids", triangle_ids)):
        if tensor.device.type != "cpu":
            raise ValueError(f"interpolate_numba needs CPU tensors, {name} is on {tensor.device}")
    if background is not None and background.requires_grad:
        raise ValueError("interpolate_numba composites the background without gradient; composite a background "
                         "that needs gradients outside (see render_views)")
    return NumbaInterpolation.apply(screen, colours, triangles, triangle_ids, labels, background)


def interpolate_torch(screen: torch.Tensor, colours: torch.Tensor, triangles: torch.Tensor,
                      triangle_ids: torch.Tensor, labels: torch.Tensor | None = None,
                      background: torch.Tensor | None = None):
    """Pure-torch perspective-correct interpolation (autograd, any device); same semantics as
    :func:`interpolate_numba`.

    Args:
        screen: (N, V, 3) screen vertices ``(u, v, d)``.
        colours: (N, V, C) vertex attributes.
        triangles: (F, 3) long.
        triangle_ids: (N, H, W) long, -1 where uncovered.
        labels: (V,) long vertex labels or None.
        background: None (zeros), a (C,) colour or an (N, C, H, W) image for uncovered pixels (differentiable).
    Returns:
        ``(image (N,C,H,W), depth (N,H,W), bary (N,H,W,3), part_labels (N,H,W) long, alpha (N,1,H,W))``; depth,
        bary and labels are zero where uncovered.
    """
    N, H, W = triangle_ids.shape
    C = colours.shape[2]
    dtype = torch.promote_types(screen.dtype, colours.dtype)
    device = screen.device
    n_idx, i_idx, j_idx = (triangle_ids >= 0).nonzero(as_tuple=True)
    faces = triangle_ids[n_idx, i_idx, j_idx]
    corners = triangles.to(device)[faces]  # (P, 3)
    view = n_idx.unsqueeze(1)
    pts = screen[view, corners].to(dtype)  # (P, 3, 3)
    a = pts[..., 0] - (j_idx.to(dtype) + 0.5).unsqueeze(1)
    c = pts[..., 1] - (i_idx.to(dtype) + 0.5).unsqueeze(1)
    e = torch.stack([a[:, 1] * c[:, 2] - c[:, 1] * a[:, 2],
                     a[:, 2] * c[:, 0] - c[:, 2] * a[:, 0],
                     a[:, 0] * c[:, 1] - c[:, 0] * a[:, 1]], 1)
    k = e / pts[..., 2]
    s = k.sum(1, keepdim=True)
    b = k / s
    z = e.sum(1) / s.squeeze(1)
    values = (b.unsqueeze(2) * colours[view, corners].to(dtype)).sum(1)  # (P, C)
    index = (n_idx, i_idx, j_idx)
    image = torch.zeros((N, H, W, C), dtype=dtype, device=device).index_put(index, values)
    depth = torch.zeros((N, H, W), dtype=dtype, device=device).index_put(index, z)
    bary = torch.zeros((N, H, W, 3), dtype=dtype, device=device).index_put(index, b)
    part_labels = torch.zeros((N, H, W), dtype=torch.int64, device=device)
    if labels is not None:
        corner_labels = labels.to(device)[corners]
        best = b.detach().argmax(1, keepdim=True)
        part_labels[index] = corner_labels.gather(1, best).squeeze(1)
    image = image.permute(0, 3, 1, 2)
    alpha = (triangle_ids >= 0).unsqueeze(1).to(dtype)
    if background is not None:
        background = background.to(device=device, dtype=dtype)
        if background.ndim != 4:
            background = background.reshape(1, C, 1, 1)
        image = image + (1.0 - alpha) * background
    return image.contiguous(), depth, bary, part_labels, alpha
