"""The ceiling of a benchmark: the best a perfect regressor of the model's coefficients could reach.

:func:`best_fit_shapes` fits identity and expression coefficients to each ground-truth mesh (model topology, head
frame, mm) by linear least squares over the front face (``model.evaluation_region``), alternated with the
similarity that aligns the ground truth onto the fit (the ground truth is first aligned onto the mean face, then a
few fit / align rounds; the ground truth may sit in another similarity frame). No prior and no regularisation:
this is the closest the model's span comes to the ground truth.
Whatever error is left is the part of the ground truth the model cannot represent (more identity components, the
displacement field of the synthetic benchmark), so no network that predicts these coefficients can do better.

The fitted vertices go through the same measures as any prediction (the vertex error of
:func:`dfmvr_lib.training.validation.aligned_vertex_error_mm`, the scan protocol of
:func:`dfmvr_lib.evaluation.evaluate_reconstruction`); tables label the row "ceiling (oracle: fit to the ground
truth)", since it uses the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..similarity import apply_similarity, similarity_transform


@dataclass
class BestFit:
    """Least-squares fits of M meshes: identity (M, K_id), expression (M, K_exp) coefficients, the fitted vertices
    (M, V, 3) mm in the model's head frame, and the RMS residual (M,) mm over the region after the fit."""

    identity: torch.Tensor
    expression: torch.Tensor
    vertices: torch.Tensor
    rms_residual_mm: torch.Tensor


def best_fit_shapes(model, targets: torch.Tensor, region: torch.Tensor | None = None, iterations: int = 3,
                    chunk: int = 16) -> BestFit:
    """Least-squares identity + expression fit of ``model`` to ground-truth meshes.

    Args:
        model: a :class:`~dfmvr_lib.face_model.base.MorphableModel`.
        targets: (M, V, 3) ground-truth vertices in mm with the model's topology (any similarity frame).
        region: (V,) bool vertices the fit uses (default ``model.evaluation_region``).
        iterations: fit / align rounds after the initial alignment onto the mean face.
        chunk: meshes solved together.
    Returns:
        :class:`BestFit`; with targets inside the model's span (up to a similarity) the residual is ~0 and the
        coefficients are recovered.
    """
    if targets.dim() != 3 or targets.shape[1:] != model.mean_shape.shape:
        raise ValueError(f"best_fit_shapes: targets must be (M, {model.num_vertices}, 3), got {tuple(targets.shape)}")
    if iterations < 1:
        raise ValueError(f"best_fit_shapes: iterations must be >= 1, got {iterations}")
    region = model.evaluation_region if region is None else region
    mean = model.mean_shape.detach().double()
    basis = torch.cat([model.identity_basis, model.expression_basis], dim=2).detach().double()       # (V, 3, K)
    design = basis[region].reshape(-1, basis.shape[-1])                                              # (3R, K)
    pseudo_inverse = torch.linalg.pinv(design, rtol=1e-9)                                            # (K, 3R)
    k_id = model.num_identity
    identities, expressions, fitted, residuals = [], [], [], []
    for start in range(0, targets.shape[0], chunk):
        target = targets[start:start + chunk].detach().double().to(mean.device)
        scale, rotation, translation = similarity_transform(target[:, region],
                                                            mean[region].expand_as(target[:, region]))
        aligned = apply_similarity(target, scale, rotation, translation)          # into the model's frame first
        for _ in range(iterations):
            # Gauss-Newton on coefficients and a small similarity update of the ground truth together:
            # x + ds x + w x x + dt ~ mean + B c, linear in (c, ds, w, dt); then the exact similarity onto the fit.
            points = aligned[:, region]                                                          # (m, R, 3)
            shape = _joint_step(design, mean[region], points)
            scale, rotation, translation = similarity_transform(target[:, region], shape)
            aligned = apply_similarity(target, scale, rotation, translation)
        offsets = (aligned - mean)[:, region].reshape(aligned.shape[0], -1)                         # (m, 3R)
        coefficients = offsets @ pseudo_inverse.T                                                    # (m, K)
        shape = mean + torch.einsum("vck,mk->mvc", basis, coefficients)
        residual = (aligned - shape)[:, region].pow(2).sum(-1).mean(-1).sqrt()
        identities.append(coefficients[:, :k_id])
        expressions.append(coefficients[:, k_id:])
        fitted.append(shape)
        residuals.append(residual)
    dtype = model.mean_shape.dtype
    return BestFit(torch.cat(identities).to(dtype), torch.cat(expressions).to(dtype), torch.cat(fitted).to(dtype),
                   torch.cat(residuals).to(dtype))


def _joint_step(design: torch.Tensor, mean: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """One linearised joint solve: design (3R, K), mean (R, 3), points (m, R, 3) -> fitted region shapes (m, R, 3)."""
    m = points.shape[0]
    units = torch.eye(3, dtype=points.dtype, device=points.device)
    rotations = torch.stack([torch.linalg.cross(units[k].expand_as(points), points, dim=-1) for k in range(3)], -1)
    translations = units.expand(*points.shape[:2], 3, 3)
    similarity = torch.cat([points[..., None], rotations, translations], dim=-1)                  # (m, R, 3, 7)
    columns = torch.cat([design.expand(m, *design.shape), -similarity.reshape(m, -1, 7)], dim=-1)  # (m, 3R, K+7)
    rhs = (points - mean).reshape(m, -1, 1)
    solution = torch.linalg.lstsq(columns, rhs, rcond=1e-9, driver="gelsd").solution                # (m, K+7, 1)
    return mean + (design @ solution[:, :design.shape[1]]).reshape(points.shape)


__all__ = ["BestFit", "best_fit_shapes"]
