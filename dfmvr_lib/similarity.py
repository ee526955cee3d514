"""Similarity transforms of 3D point sets: the least-squares (Umeyama) fit and its application.

Used by the 3D-landmark loss (:func:`dfmvr_lib.losses.landmark_3d_loss`), by the evaluation protocol's landmark
alignment (:mod:`dfmvr_lib.evaluation.registration`), by the ceiling fit (:mod:`dfmvr_lib.evaluation.ceiling`) and by
the validation error (:mod:`dfmvr_lib.training.validation`). Points in mm, batched: (B, P, 3); the transform maps
``source`` onto ``target`` as ``target ~ scale * rotation @ source + translation``.
"""
from __future__ import annotations

import torch


def similarity_transform(source: torch.Tensor, target: torch.Tensor,
                         relative_tolerance: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity (Umeyama) with ``target ~ scale * rotation @ source + translation``.

    Differentiable through the SVD. Degenerate inputs do not produce NaN: when the cross-covariance has repeated
    singular values (coincident or collinear points, symmetric configurations) the rotation is still computed but
    its gradient is dropped, and a source without spread gets scale 1.

    Args:
        source, target: (B, P, 3) corresponding points (P >= 3 for a unique rotation).
    Returns:
        scale (B,), rotation (B, 3, 3) with det +1, translation (B, 3).
    """
    dtype = source.dtype
    x, y = source.double(), target.double()
    mean_x, mean_y = x.mean(1), y.mean(1)
    xc, yc = x - mean_x[:, None], y - mean_y[:, None]
    covariance = yc.transpose(1, 2) @ xc / x.shape[1]                                     # (B, 3, 3)
    with torch.no_grad():
        singular = torch.linalg.svdvals(covariance)
        gaps = torch.stack([singular[:, 0] - singular[:, 1], singular[:, 1] - singular[:, 2]], -1)
        tolerance = relative_tolerance * singular[:, 0].clamp_min(1e-30)
        repeated = (gaps.min(-1).values <= tolerance) | (singular[:, 0] <= 1e-30)
    safe = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64, device=source.device))
    covariance_safe = torch.where(repeated[:, None, None], safe.expand_as(covariance), covariance)

    def rotation_from(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, d, vt = torch.linalg.svd(matrix)
        sign = torch.sign(torch.linalg.det(u) * torch.linalg.det(vt))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        correction = torch.cat([torch.ones_like(d[:, :2]), sign[:, None]], -1)      # reflection -> rotation
        return u @ torch.diag_embed(correction) @ vt, (d * correction).sum(-1)

    rotation_smooth, trace_smooth = rotation_from(covariance_safe)
    with torch.no_grad():
        rotation_frozen, trace_frozen = rotation_from(covariance)
    rotation = torch.where(repeated[:, None, None], rotation_frozen, rotation_smooth)
    trace = torch.where(repeated, trace_frozen, trace_smooth)
    variance = (xc ** 2).sum(-1).mean(-1)
    no_spread = variance <= 1e-20
    scale = torch.where(no_spread, torch.ones_like(variance), trace / torch.where(no_spread, torch.ones_like(variance),
                                                                                   variance))
    translation = mean_y - scale[:, None] * (rotation @ mean_x[..., None]).squeeze(-1)
    return scale.to(dtype), rotation.to(dtype), translation.to(dtype)


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor,
                     translation: torch.Tensor) -> torch.Tensor:
    """scale * rotation @ p + translation for points (B, P, 3)."""
    return scale[:, None, None] * points @ rotation.transpose(1, 2) + translation[:, None]


__all__ = ["apply_similarity", "similarity_transform"]
