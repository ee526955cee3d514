"""Is an albedo a plausible face colour? Region colours of an albedo against the range the model's own prior spans.

A region's colour is the mean albedo (linear RGB in [0, 1]) of its vertices, the regions are groups of the model's
part labels (docs/conventions.md): skin (skin and nose), lips (upper and lower lip), eyes, brows. A colour is plausible
when it lies within the ``coverage`` quantile of the Mahalanobis distances of that region's colour over albedos
drawn from the model's prior (coefficients ~ N(0, I), the units of :meth:`MorphableModel.albedo`). Works for any
model with part labels (procedural, BFM09): no colour constant is assumed.
"""
from __future__ import annotations

import functools

import pandas as pd
import torch

from .parts import LEFT_BROW, LEFT_EYE, LOWER_LIP, NOSE, RIGHT_BROW, RIGHT_EYE, SKIN, UPPER_LIP

ALBEDO_REGIONS = {"skin": (SKIN, NOSE), "lips": (UPPER_LIP, LOWER_LIP), "eyes": (LEFT_EYE, RIGHT_EYE),
                  "brows": (LEFT_BROW, RIGHT_BROW)}
"""Region name -> the part labels (:mod:`dfmvr_lib.face_model.parts`) it groups."""


def region_colours(model, albedo: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean colour of each region of :data:`ALBEDO_REGIONS` present in the model.

    Args:
        model: a :class:`~dfmvr_lib.face_model.base.MorphableModel`.
        albedo: (B, K_alb) albedo coefficients.
    Returns:
        region -> (B, 3) linear RGB.
    """
    if albedo.ndim != 2 or albedo.shape[1] != model.num_albedo:
        raise ValueError(f"albedo must be (B, {model.num_albedo}) coefficients, got shape {tuple(albedo.shape)}")
    colours = model.albedo(albedo.to(model.mean_albedo.dtype))            # (B, V, 3)
    labels = model.part_labels
    result = {}
    for name, parts in ALBEDO_REGIONS.items():
        mask = torch.isin(labels, torch.tensor(parts, device=labels.device))
        if bool(mask.any()):
            result[name] = colours[:, mask].mean(1)
    return result


@functools.lru_cache(maxsize=4)
def albedo_prior_range(model, samples: int = 2048, coverage: float = 0.99, seed: int = 0) -> dict[str, dict]:
    """The plausible colours of each region under the model's prior.

    Each region's colour over ``samples`` prior draws is summarised by its mean and covariance (3 x 3, linear RGB);
    a colour is plausible when its Mahalanobis distance from that mean is within the ``coverage`` quantile of the
    draws' distances. A distance, not per-channel intervals: lips as red as the palest draw and as green as the most
    olive one are each in range per channel, but not together.

    Returns:
        region -> ``{"mean": (3,), "precision": (3, 3) inverse covariance, "limit": float distance}``; cached per
        model object and arguments (a reconstruction checks its albedo more than once), so treat it as read-only.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(samples, model.num_albedo, generator=generator)
    ranges = {}
    with torch.no_grad():
        chunks = [region_colours(model, chunk) for chunk in draws.split(128)]     # (128, V, 3) at a time
        for region in chunks[0]:
            colour = torch.cat([chunk[region] for chunk in chunks])
            colour = colour.double()
            mean = colour.mean(0)
            covariance = torch.cov(colour.T) + 1e-10 * torch.eye(3, dtype=colour.dtype)
            precision = torch.linalg.inv(covariance)
            distance = _mahalanobis(colour, mean, precision)
            ranges[region] = {"mean": mean, "precision": precision,
                              "limit": float(torch.quantile(distance, coverage))}
    return ranges


def colour_distance(prior_range: dict, region: str, colour: torch.Tensor) -> torch.Tensor:
    """(N,) Mahalanobis distances of region colours (N, 3) from the prior's mean colour of ``region``."""
    bounds = prior_range[region]
    return _mahalanobis(colour.double(), bounds["mean"], bounds["precision"])


def _mahalanobis(colour: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """(N,) distances of ``colour`` (N, 3)."""
    difference = colour - mean
    return torch.einsum("ni,ij,nj->n", difference, precision, difference).clamp_min(0).sqrt()


def albedo_in_range(model, albedo: torch.Tensor, prior_range: dict | None = None) -> pd.DataFrame:
    """Each region's colour of the first face of ``albedo`` ((K_alb,) or (1, K_alb) coefficients) against
    ``prior_range`` (default :func:`albedo_prior_range`).

    Returns:
        one row per region: ``r``, ``g``, ``b`` (linear RGB), ``distance`` (Mahalanobis, in prior standard
        deviations), ``limit`` (the prior's coverage quantile), ``inside`` (distance <= limit).
    """
    albedo = albedo.detach().reshape(1, -1)
    prior_range = albedo_prior_range(model) if prior_range is None else prior_range
    with torch.no_grad():
        colours = region_colours(model, albedo)
    rows = []
    for region, colour in colours.items():
        distance, limit = float(colour_distance(prior_range, region, colour)[0]), prior_range[region]["limit"]
        rows.append({"region": region, **{c: float(colour[0, i]) for i, c in enumerate("rgb")},
                     "distance": distance, "limit": limit, "inside": distance <= limit})
    return pd.DataFrame(rows)


__all__ = ["ALBEDO_REGIONS", "albedo_in_range", "albedo_prior_range", "colour_distance", "region_colours"]
