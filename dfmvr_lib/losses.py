"""The losses of DF-MVR (spec section 2), one function each, plus :func:`reconstruction_loss` that combines them.

Conventions (docs/conventions.md): images (N, 3, H, W) in [0, 1]; parse maps (N, H, W) with the 10 part classes;
2D landmarks in pixels, 3D landmarks in mm. ``N = B * S``: the views of a batch in sample-major order (sample 0
views A, B, C, sample 1 ...), as :func:`dfmvr_lib.scene.render_faces` returns them. Per-view losses take a
``view_weight`` (N,) (1 for a view that takes part, 0 for a view missing from the input, e.g. in single-view
training) and average over the views that take part.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from .config import LossConfig
from .scene import FaceCoefficients
from .similarity import apply_similarity, similarity_transform

PART_CLASSES = tuple(range(2, 10))
"""Facial-part classes (brows, eyes, nose, mouth, lips) of the photo-loss weight map; 1 is skin, 0 background."""


def _view_average(per_view: torch.Tensor, view_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_view`` (N,) over the views with weight > 0 (0 when there are none)."""
    if view_weight is None:
        return per_view.mean()
    view_weight = view_weight.to(per_view.dtype)
    return (per_view * view_weight).sum() / view_weight.sum().clamp_min(1.0)


def part_weight_map(parse_maps: torch.Tensor, dilation_px: int,
                    values: tuple[float, float, float]) -> torch.Tensor:
    """Photo-loss weight map M_d of the input parse maps.

    The facial-part mask (classes 2..9) is dilated by ``dilation_px`` pixels (a square structuring element of
    side 2 * dilation_px + 1); dilated parts get ``values[0]``, the remaining face (class 1) ``values[1]``, the
    rest ``values[2]`` (the paper's: ``LossConfig.part_dilation_px_at_224`` and ``LossConfig.weight_map_values``,
    see :func:`photo_weight_map`).

    Args:
        parse_maps: (N, H, W) int64 labels.
    Returns:
        (N, H, W) float32 weights.
    """
    parts = (parse_maps >= PART_CLASSES[0]).float().unsqueeze(1)
    if dilation_px > 0:
        parts = F.max_pool2d(parts, 2 * dilation_px + 1, stride=1, padding=dilation_px)
    parts = parts.squeeze(1) > 0
    weights = torch.full(parse_maps.shape, values[2], dtype=torch.float32, device=parse_maps.device)
    weights = torch.where(parse_maps == 1, torch.tensor(values[1], device=parse_maps.device), weights)
    return torch.where(parts, torch.tensor(values[0], device=parse_maps.device), weights)


def photo_loss(rendered: torch.Tensor, target: torch.Tensor, render_alpha: torch.Tensor, face_region: torch.Tensor,
               weight_map: torch.Tensor, view_weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_p: weighted mean of the unsquared per-pixel RGB distance over P_v = render coverage AND input face region.

    L_p = 1/V sum_v [ sum_{i in P_v} M_i ||I_i - I'_i||_2 ] / [ sum_{i in P_v} M_i ].

    Args:
        rendered: (N, 3, H, W) the render I'.
        target: (N, 3, H, W) the input image I.
        render_alpha: (N, H, W) coverage of the render (> 0.5 = covered).
        face_region: (N, H, W) bool, the input's face (parse label > 0).
        weight_map: (N, H, W) M_d, see :func:`part_weight_map`.
        view_weight: (N,) optional, see the module docstring.
    Returns:
        scalar, in the units of the images ([0, 1] RGB distance, at most sqrt(3)).
    """
    region = ((render_alpha > 0.5) & face_region).to(rendered.dtype)
    distance = torch.sqrt(((rendered - target) ** 2).sum(1) + 1e-10)        # eps keeps the gradient finite at 0
    weights = weight_map * region
    per_view = (weights * distance).sum((1, 2)) / weights.sum((1, 2)).clamp_min(1e-6)
    return _view_average(per_view, view_weight)


def composite_over(rendered: torch.Tensor, render_alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The render pasted over ``background`` (N, 3, H, W) where ``render_alpha`` (N, H, W) covers it."""
    alpha = render_alpha.unsqueeze(1).to(rendered.dtype)
    return alpha * rendered + (1.0 - alpha) * background


def mask_loss(parser: torch.nn.Module, rendered: torch.Tensor, render_alpha: torch.Tensor, target: torch.Tensor,
              target_parse: torch.Tensor, view_weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_m: cross-entropy between the frozen parser's prediction on the render and the input's parse labels.

    The render is pasted over the input image (the parser was trained on whole pictures, not faces on black) and
    clamped to [0, 1]; the parser runs WITHOUT ``no_grad`` or ``detach``, so the loss back-propagates through the
    parser into the render and on to the coefficients (the authors' code detaches here; the spec asks us not to).
    Averaged over the pixels of each view, then over the views.

    Args:
        parser: frozen parse network, ``parser(images (N, 3, H, W) in [0, 1], aux=False) -> logits (N, 10, H, W)``.
        rendered, render_alpha, target: as in :func:`photo_loss`.
        target_parse: (N, H, W) int64 labels of the input views.
    """
    composite = composite_over(rendered, render_alpha, target).clamp(0.0, 1.0)
    logits = parser(composite, aux=False).float()
    per_pixel = F.cross_entropy(logits, target_parse, reduction="none")
    return _view_average(per_pixel.mean((1, 2)), view_weight)


def landmark_weights(heavy: tuple[int, ...], heavy_weight: float, count: int = 68) -> torch.Tensor:
    """(count,) weights w_n of L_2d: ``heavy_weight`` at the 0-based iBUG indices ``heavy``, 1 elsewhere (the
    paper's: ``LossConfig.heavy_landmarks`` and ``LossConfig.heavy_landmark_weight``)."""
    weights = torch.ones(count)
    if heavy:
        weights[list(heavy)] = heavy_weight
    return weights


def landmark_2d_loss(predicted: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor | None = None,
                     weights: torch.Tensor | None = None, image_size: int = 224,
                     view_weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_2d = 1/(N V) sum_v sum_n w_n ||l_n - l'_n||_2, in pixels of a 224-pixel image.

    Distances are rescaled by 224 / ``image_size`` so the weights mean the same at every image size. Landmarks
    that are not visible in the target (``visibility`` False) are left out of the sum and of the count N.

    Args:
        predicted, target: (Nv, 68, 2) pixels (Nv views).
        visibility: (Nv, 68) bool, optional.
        weights: (68,) w_n, default all 1 (see :func:`landmark_weights`).
        view_weight: (Nv,), optional.
    """
    distance = torch.linalg.vector_norm(predicted - target, dim=-1) * (224.0 / image_size)
    w = torch.ones_like(distance) if weights is None else weights.to(distance).expand_as(distance)
    if visibility is not None:
        w = w * visibility.to(distance.dtype)
        count = visibility.to(distance.dtype).sum(-1).clamp_min(1.0)
    else:
        count = torch.full(distance.shape[:1], float(distance.shape[1]), dtype=distance.dtype,
                           device=distance.device)
    per_view = (w * distance).sum(-1) / count
    return _view_average(per_view, view_weight)


def landmark_3d_loss(predicted: torch.Tensor, target: torch.Tensor, alignment_indices: torch.Tensor) -> torch.Tensor:
    """L_3d = 1/N sum_n ||s R q_n + t - q'_n||_2 (mm) after the similarity fitted on the alignment points.

    Args:
        predicted: (B, N, 3) predicted 3D landmarks q (head frame, mm).
        target: (B, N, 3) ground-truth 3D landmarks q' (any frame, mm).
        alignment_indices: (7,) indices into the N landmarks of the alignment points (eye corners, nose tip,
            mouth corners).
    Returns:
        scalar mean distance in mm (mean over landmarks and batch).
    """
    scale, rotation, translation = similarity_transform(predicted[:, alignment_indices], target[:, alignment_indices])
    aligned = apply_similarity(predicted, scale, rotation, translation)
    return torch.linalg.vector_norm(aligned - target, dim=-1).mean()


def regularisation_loss(coefficients: FaceCoefficients, identity: float, expression: float,
                        albedo: float) -> torch.Tensor:
    """L_reg = w_a ||alpha||^2 + w_b ||beta||^2 + w_g ||gamma_t||^2, averaged over the batch (weights w_a, w_b, w_g:
    ``LossConfig.identity``, ``.expression``, ``.albedo``)."""
    return (identity * coefficients.identity.pow(2).sum(-1) + expression * coefficients.expression.pow(2).sum(-1)
            + albedo * coefficients.albedo.pow(2).sum(-1)).mean()


def reflectance_loss(albedo: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """Albedo flatness over the skin (the authors' code, after Deep3D): mean squared deviation of the skin vertices'
    albedo (B, V, 3) from their mean colour; ``skin`` (V,) bool."""
    values = albedo[:, skin]
    return (values - values.mean(1, keepdim=True)).pow(2).sum(-1).mean()


def lighting_loss(lighting: torch.Tensor) -> torch.Tensor:
    """Monochromatic-light prior (the authors' code, after Deep3D): squared deviation of each SH coefficient's three
    colour channels from their mean; ``lighting`` (B, 27) as 3 channels x 9 coefficients."""
    sh = lighting.reshape(-1, 3, 9)
    return (sh - sh.mean(1, keepdim=True)).pow(2).sum((1, 2)).mean()


def shape_consistency_loss(identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
    """Spread of the shape predicted from each view of a triplet (Shang et al.'s shared-shape constraint): squared
    distance of each view's identity (B, S, K_id) and expression (B, S, K_exp) coefficients from the triplet's mean,
    summed over components, averaged over views and triplets."""
    spread = lambda c: (c - c.mean(1, keepdim=True)).pow(2).sum(-1)  # noqa: E731
    return (spread(identity) + spread(expression)).mean()


@dataclass
class LossTerms:
    """The loss terms of one step (scalars) and their weighted ``total``."""

    total: torch.Tensor
    photo: torch.Tensor
    mask: torch.Tensor
    landmark_2d: torch.Tensor
    landmark_3d: torch.Tensor
    regularisation: torch.Tensor
    reflectance: torch.Tensor
    lighting: torch.Tensor
    consistency: torch.Tensor | None = None
    cross_view: torch.Tensor | None = None

    def __post_init__(self):
        zero = self.total.new_zeros(())
        self.consistency = zero if self.consistency is None else self.consistency
        self.cross_view = zero if self.cross_view is None else self.cross_view

    def values(self) -> dict[str, float]:
        """Plain floats for logging."""
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def photo_weight_map(config: LossConfig, parse_maps: torch.Tensor) -> torch.Tensor:
    """The photo-loss weights of ``config.photo_weighting``: ``"parts"`` -> :func:`part_weight_map` (ring width
    scaled from 224 px to the image size), ``"skin"`` -> ones (the face region alone selects the pixels)."""
    if config.photo_weighting == "skin":
        return torch.ones(parse_maps.shape, dtype=torch.float32, device=parse_maps.device)
    if config.photo_weighting != "parts":
        raise ValueError(f"losses.photo_weighting must be 'parts' or 'skin', got {config.photo_weighting!r}")
    size = parse_maps.shape[-1]
    return part_weight_map(parse_maps, round(config.part_dilation_px_at_224 * size / 224), config.weight_map_values)


def reconstruction_loss(config: LossConfig, *, coefficients: FaceCoefficients, rendered: torch.Tensor,
                        render_alpha: torch.Tensor, predicted_landmarks_2d: torch.Tensor,
                        images: torch.Tensor, parse_maps: torch.Tensor, landmarks_2d: torch.Tensor,
                        landmark_visibility: torch.Tensor | None, view_weight: torch.Tensor,
                        parser: torch.nn.Module | None = None, predicted_landmarks_3d: torch.Tensor | None = None,
                        landmarks_3d: torch.Tensor | None = None, alignment_indices: torch.Tensor | None = None,
                        albedo: torch.Tensor | None = None, skin: torch.Tensor | None = None,
                        mask_active: bool = True) -> LossTerms:
    """The weighted total of spec section 2 for one batch.

    Shapes (N = B * S views): ``rendered`` / ``images`` (N, 3, H, W); ``render_alpha`` / ``parse_maps`` (N, H, W);
    ``predicted_landmarks_2d`` / ``landmarks_2d`` (N, 68, 2); ``landmark_visibility`` (N, 68); ``view_weight`` (N,);
    ``predicted_landmarks_3d`` / ``landmarks_3d`` (B, 101, 3); ``albedo`` (B, V, 3) and ``skin`` (V,) for the
    reflectance term. Terms that are switched off (weight 0, ``use_mask`` / ``use_landmark_3d`` False, missing
    inputs, ``mask_active`` False) are zero.
    """
    zero = rendered.new_zeros(())
    size = images.shape[-1]
    weight_map = photo_weight_map(config, parse_maps)
    photo = photo_loss(rendered, images, render_alpha, parse_maps > 0, weight_map, view_weight)
    mask = zero
    if config.use_mask and config.mask > 0 and mask_active and parser is not None:
        mask = mask_loss(parser, rendered, render_alpha, images, parse_maps, view_weight)
    weights = landmark_weights(tuple(config.heavy_landmarks), config.heavy_landmark_weight).to(rendered.device)
    lm2d = landmark_2d_loss(predicted_landmarks_2d, landmarks_2d, landmark_visibility, weights, size, view_weight)
    lm3d = zero
    if config.use_landmark_3d and landmarks_3d is not None and predicted_landmarks_3d is not None:
        lm3d = landmark_3d_loss(predicted_landmarks_3d, landmarks_3d, alignment_indices)
    regular = regularisation_loss(coefficients, config.identity, config.expression, config.albedo)
    reflect = reflectance_loss(albedo, skin) if config.reflectance > 0 and albedo is not None else zero
    light = lighting_loss(coefficients.lighting) if config.lighting > 0 else zero
    total = (config.photo * photo + config.mask * mask
             + config.landmark * (config.landmark_2d * lm2d + config.landmark_3d * lm3d)
             + config.regularisation * regular + config.reflectance * reflect + config.lighting * light)
    return LossTerms(total=total, photo=photo, mask=mask, landmark_2d=lm2d, landmark_3d=lm3d,
                     regularisation=regular, reflectance=reflect, lighting=light)


__all__ = ["LossTerms", "PART_CLASSES", "composite_over", "landmark_2d_loss", "landmark_3d_loss",
           "landmark_weights", "lighting_loss", "mask_loss", "part_weight_map", "photo_loss", "photo_weight_map",
           "reconstruction_loss", "reflectance_loss", "regularisation_loss", "shape_consistency_loss"]
