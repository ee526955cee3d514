"""Multi-view test-time fitting: refine the network's coefficients on the input views themselves.

The network's prediction (or the mean face) is the starting point; Adam then optimises the coefficient tensors
(identity, expression, albedo, SH lighting, and each view's Euler angles and translation), not the network, for a
fixed number of steps against the training losses of :func:`dfmvr_lib.training.forward.batch_loss` with the
weights of :meth:`RefinementSettings.fitting_losses`: the weighted photo loss, the 2D landmark loss (all landmarks
of one weight, the jaw line left out) and the coefficient regularisation at a tenth of the training's weight (plus
reflectance / lighting priors when weighted). The 3D landmark loss needs ground truth, so it is always off here.

The defaults were chosen with the held-out-view landmark error (:mod:`dfmvr_lib.reconstruction.held_out`;
``benchmarks/bench_refine.py``) on the real development triplets (``shared/fixtures/real_multiview``) and with the
true vertex error on 8 synthetic *validation* triplets (parser masks, detector-noise landmarks), cpu run
``c526f55d0925``, never on the test split:

- The mask loss through the frozen parser is OFF (``RefinementSettings.mask_weight = 0``): on synthetic validation
  it raised the vertex error after 200 steps (2.31 -> 2.37 mm with it) and on the real triplets it was the term that
  pulled the shape away (held-out error 3.85 -> 4.12 px with it; the parser was trained on synthetic renders and
  labels the render pasted over a real photo unreliably).
- Every landmark has the same weight (``heavy_landmark_weight = 1``, training: 20 for the nose and inner mouth) and
  L_2d weighs 8x the training's (``landmark_scale = 8``): mean real held-out error after 40 / 200 steps 3.94 /
  3.85 px (training weights) -> 3.41 / 3.31 px, synthetic vertex error 2.51 / 2.31 -> 2.22 / 2.08 mm; equal weights
  at the training's total (x4) gave 3.62 / 3.48 px and 2.24 / 2.10 mm; 20x on the inner mouth made the fit chase the
  detector's least reliable points (one real triplet rose from 3.55 to 3.67 px between 40 and 200 steps).
- The coefficient prior is a tenth of the training's (``prior_scale = 0.1``), chosen on cpu run ``99ce89962092``
  (4 real triplets; 8 synthetic validation triplets, network start, 40 / 200 steps): mean real held-out error
  3.36 / 3.27 px with the training's prior -> 3.36 / 2.81 px (x0.3: 3.31 / 3.00, x0.03: 3.38 / 2.75), synthetic
  vertex error 2.78 / 2.27 -> 2.53 / 2.00 mm (x0.3: 2.05, x0.03: 2.09 mm after 200 steps: the minimum is at x0.1);
  x3 was worse on both (3.48 px, 2.72 mm) and the one real triplet with an open mouth then rose from 4.20 to 4.41 px
  between 40 and 200 steps. The training's weight shrinks a test-time fit far towards the mean face: after 200 steps
  on the full real triplets ||alpha|| was 2.3-3.5 (prior x1) against 9.2-11.7 (x0.1), where a face drawn from the
  model's prior has ||alpha|| about sqrt(80) = 8.9 (80 identity components in units of their sd).
- The jaw line (iBUG 0-16) is out of L_2d in every view (``jaw_in_side_views`` and ``jaw_in_front_views`` False):
  with it in the frontal view the real held-out error after 200 steps was 3.04 px against 2.81 px (4.62 against
  3.96 px on the open-mouth triplet), while the synthetic vertex error gained only 0.04 mm (1.96 against 2.00 mm;
  synthetic jaw landmarks are projections of fixed vertices with noise, not a detector's silhouette points).
  The side views are judged by their real turn (:func:`~dfmvr_lib.camera.canonical_angles`): the cpu network's angle
  head puts real photos' poses in another Euler branch (a frontal view as pitch, yaw, roll near 180 deg).
- The photo term stays at the training's weight: off (``photo_scale = 0``) the real held-out error after 200 steps
  fell a little (2.72 against 2.82 px) but the synthetic vertex error rose from 2.00 to 2.96 mm: the held-out measure
  looks at landmarks only and cannot reward what the photo term adds, the synthetic 3D error shows it carries shape.
  The expression prior stays the identity's (x3 of it: 2.94 px, 1.98 mm). ``benchmarks/bench_refine.py`` (ablation
  part, ``results/benchmarks/refine.md``) reruns these variants.
- The albedo stays within +-3 sd per coefficient (``albedo_bound``): it does not change the shape's error (held-out
  3.57 / 3.68 px against 3.56 / 3.67 px unbounded on the first real triplet) and keeps lips and eyes in the model's
  colour range (:mod:`dfmvr_lib.face_model.albedo_range`), which the network's albedo head leaves (lips green, eyes
  yellow).

Shapes follow :class:`dfmvr_lib.scene.FaceCoefficients` (B faces, S views): identity (B, K_id), expression
(B, K_exp), albedo (B, K_alb), lighting (B, 27), angles (B, S, 3) radians, translation (B, S, 3) mm. The targets
are a :class:`dfmvr_lib.training.TrainingBatch` (images (B, S, 3, H, W) in [0, 1], parse maps (B, S, H, W), 2D
landmarks (B, S, 68, 2) pixels, ``view_weight`` (B, S): 0 for a view missing from the input, which then takes no
part in any loss and keeps its pose).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch

from ..camera import PerspectiveCamera, canonical_angles
from ..config import LossConfig
from ..face_model.base import MorphableModel
from ..losses import LossTerms
from ..scene import FaceCoefficients, FaceRender, render_faces
from ..training.data import TrainingBatch
from ..training.forward import Reconstruction, batch_loss
from .defaults import DEFAULT_REFINE_STEPS


COEFFICIENT_NAMES = ("identity", "expression", "albedo", "lighting", "angles", "translation")
FITTING_LOSS_COLUMNS = ("total", "photo", "mask", "landmark_2d", "regularisation", "reflectance", "lighting")


@dataclass(frozen=True)
class RefinementSettings:
    """Adam step sizes of the refinement, one per group of coefficients, in their own units per step.

    ``shape_learning_rate``: identity and expression, ``albedo_learning_rate``: albedo (coefficients in units of the
    model's standard deviations); ``lighting_learning_rate``: SH coefficients; ``angle_learning_rate``: radians;
    ``translation_learning_rate``: mm.

    What the fitting looks at: ``jaw_in_side_views`` False (the default) leaves the 17 jaw-line landmarks (iBUG 0-16)
    out of L_2d in the side views, whose starting yaw exceeds ``side_view_yaw_degrees``: on a turned face the
    detector puts them on the visible silhouette, which is not the fixed model vertex they are compared with
    (the far side of the jaw is hidden, the near side is the cheek's outline), so they pull the shape sideways.
    ``jaw_in_front_views`` False (the default) leaves them out of the other views too (the detector's jaw line is the
    face's outline there as well). ``prior_scale`` multiplies the coefficient prior (``losses.regularisation``) during
    fitting (default 0.1), ``expression_prior_scale`` the expression's share of it (``losses.expression``),
    ``albedo_prior_scale`` the albedo's (``losses.albedo``); ``photo_scale`` multiplies the photo loss;
    ``lighting_prior`` (None: the loss config's ``lighting`` weight) weights the monochromatic-light prior
    (:func:`dfmvr_lib.losses.lighting_loss`); ``mask_weight`` weights the mask loss through the frozen parser (default
    0: off, see the module docstring; None: the loss config's ``mask``, as in training).

    ``heavy_landmark_weight`` (None: the loss config's, 20 in training) weights the nose and inner-mouth landmarks in
    L_2d, ``landmark_scale`` multiplies ``losses.landmark_2d``. The defaults, 1 and 8, give every landmark the same
    weight, about 1.5x the training's total landmark weight (51 x 8 = 408 units without the jaw line, against 57 + 11
    x 20 = 277); measured in the module docstring. ``albedo_bound`` (None: unbounded) keeps every albedo coefficient
    within +-bound standard deviations, projected at the start and after every step (so also with 0 steps): the
    network's albedo head predicts lip and sclera components beyond 4 sd (green lips, yellow eyes;
    :mod:`dfmvr_lib.face_model.albedo_range` measures it).
    """

    shape_learning_rate: float = 0.05
    albedo_learning_rate: float = 0.02
    lighting_learning_rate: float = 0.01
    angle_learning_rate: float = 0.003
    translation_learning_rate: float = 0.5
    jaw_in_side_views: bool = False
    jaw_in_front_views: bool = False
    side_view_yaw_degrees: float = 15.0
    prior_scale: float = 0.1
    expression_prior_scale: float = 1.0
    albedo_prior_scale: float = 1.0
    photo_scale: float = 1.0
    lighting_prior: float | None = None
    mask_weight: float | None = 0.0
    heavy_landmark_weight: float | None = 1.0
    landmark_scale: float = 8.0
    albedo_bound: float | None = 3.0

    def fitting_losses(self, losses: LossConfig) -> LossConfig:
        """The loss weights the fitting uses: ``losses`` with the priors of these settings."""
        return dataclasses.replace(
            losses, regularisation=losses.regularisation * self.prior_scale,
            albedo=losses.albedo * self.albedo_prior_scale,
            expression=losses.expression * self.expression_prior_scale,
            photo=losses.photo * self.photo_scale,
            lighting=losses.lighting if self.lighting_prior is None else self.lighting_prior,
            mask=losses.mask if self.mask_weight is None else self.mask_weight,
            landmark_2d=losses.landmark_2d * self.landmark_scale,
            heavy_landmark_weight=(losses.heavy_landmark_weight if self.heavy_landmark_weight is None
                                   else self.heavy_landmark_weight))


@dataclass
class RefinementResult:
    """What :func:`refine_reconstruction` returns.

    coefficients: the refined :class:`~dfmvr_lib.scene.FaceCoefficients` (detached, float32) after the last step.
    initial_coefficients: the starting point (detached copy).
    losses: one row per evaluation, ``step`` 0..N (row ``s`` = the loss of the coefficients after ``s`` updates),
        the terms of :data:`FITTING_LOSS_COLUMNS` and ``seconds`` since the start.
    render: the :class:`~dfmvr_lib.scene.FaceRender` of the refined coefficients (no gradient).
    snapshots: the coefficients after each step count asked for in ``keep_steps`` (step -> coefficients).
    """

    coefficients: FaceCoefficients
    initial_coefficients: FaceCoefficients
    losses: pd.DataFrame
    render: FaceRender
    snapshots: dict = dataclasses.field(default_factory=dict)

    @property
    def initial_loss(self) -> float:
        return float(self.losses["total"].iloc[0])

    @property
    def final_loss(self) -> float:
        return float(self.losses["total"].iloc[-1])


def fitting_loss_config(losses: LossConfig) -> LossConfig:
    """The training loss config with the 3D landmark term switched off (it needs ground-truth 3D landmarks) and
    the mask loss active from the first step."""
    return dataclasses.replace(losses, use_landmark_3d=False, mask_start_fraction=0.0)


JAW_LANDMARKS = tuple(range(17))
"""0-based iBUG indices of the jaw line (silhouette points)."""


def side_views(coefficients: FaceCoefficients, yaw_degrees: float = 15.0) -> torch.Tensor:
    """(B, S) bool: views whose yaw magnitude exceeds ``yaw_degrees`` (judged on :func:`canonical_angles`, so a pose
    in another Euler branch, e.g. pitch, yaw, roll near 180 deg for a frontal view, counts by its real turn)."""
    return canonical_angles(coefficients.angles)[..., 1].abs() > math.radians(yaw_degrees)


def fitting_targets(targets: TrainingBatch, start: FaceCoefficients, settings: "RefinementSettings") -> TrainingBatch:
    """``targets`` with the jaw-line landmarks marked not visible in the side views (judged by the starting pose
    ``start``) unless ``settings.jaw_in_side_views``, and in the other views unless ``settings.jaw_in_front_views``:
    L_2d then leaves them out (see :class:`RefinementSettings`)."""
    if settings.jaw_in_side_views and settings.jaw_in_front_views:
        return targets
    visibility = targets.landmark_visibility.clone()
    side = side_views(start, settings.side_view_yaw_degrees).to(visibility.device)           # (B, S)
    keep = (side & settings.jaw_in_side_views) | (~side & settings.jaw_in_front_views)
    jaw = visibility[..., list(JAW_LANDMARKS)]
    visibility[..., list(JAW_LANDMARKS)] = jaw & keep[..., None]
    return dataclasses.replace(targets, landmark_visibility=visibility)


def detached_coefficients(coefficients: FaceCoefficients) -> FaceCoefficients:
    """A float32 copy of ``coefficients`` that shares no autograd history."""
    return FaceCoefficients(*(getattr(coefficients, name).detach().float().clone() for name in COEFFICIENT_NAMES))


def fitting_loss(losses: LossConfig, model: MorphableModel, camera: PerspectiveCamera,
                 coefficients: FaceCoefficients, targets: TrainingBatch,
                 parser: torch.nn.Module | None) -> tuple[LossTerms, FaceRender]:
    """Render ``coefficients`` in every view and score them against ``targets`` with the training losses.

    Args:
        losses: the loss weights (see :func:`fitting_loss_config`; 3D landmarks are never used here).
        model, camera: the morphable model and camera of the images.
        coefficients: B faces in S views (shapes in the module docstring).
        targets: the views, their parse maps (loss targets of the photo weighting and the mask loss), 2D landmarks
            and ``view_weight`` (B, S).
        parser: the frozen face parser of the mask loss (None: no mask loss).
    Returns:
        ``(loss terms, render)``; ``terms.total`` is differentiable with respect to every coefficient tensor.
    """
    config = fitting_loss_config(losses)
    render = render_faces(model, coefficients, camera)
    without_3d = dataclasses.replace(targets, landmarks_3d=None)
    terms = batch_loss(config, Reconstruction(coefficients, render), without_3d, model, parser, mask_active=True,
                       camera=camera)
    return terms, render


def _loss_row(step: int, terms: LossTerms, seconds: float) -> dict:
    values = terms.values()
    return {"step": step, **{name: values[name] for name in FITTING_LOSS_COLUMNS}, "seconds": seconds}


def refine_reconstruction(model: MorphableModel, camera: PerspectiveCamera, coefficients: FaceCoefficients,
                          targets: TrainingBatch, losses: LossConfig, parser: torch.nn.Module | None, *,
                          steps: int = DEFAULT_REFINE_STEPS, settings: RefinementSettings | None = None,
                          progress: bool = False, description: str = "refining",
                          keep_steps: tuple[int, ...] = ()) -> RefinementResult:
    """Fit the coefficients to the views for ``steps`` Adam steps, starting from ``coefficients``.

    Args:
        model, camera: the morphable model and camera the coefficients and images belong to.
        coefficients: the starting point, e.g. the network's prediction (not modified).
        targets: the views to fit (see the module docstring); views with ``view_weight`` 0 are ignored.
        losses: the training loss weights (``config.losses``); the 3D landmark term is switched off.
        parser: the frozen face parser of the training run (its parameters are not optimised), or None to fit
            without the mask loss.
        steps: number of Adam updates (0 returns the starting point and its loss).
        settings: step sizes, default :class:`RefinementSettings`.
        progress: show a tqdm bar with the total loss.
        keep_steps: step counts (0..steps) after which a copy of the coefficients is kept in ``snapshots``.
    Returns:
        :class:`RefinementResult` with the refined coefficients and the loss of every step.
    """
    from tqdm.auto import tqdm

    if steps < 0:
        raise ValueError(f"refine_reconstruction: steps must be >= 0, got {steps}")
    if any(not 0 <= k <= steps for k in keep_steps):
        raise ValueError(f"refine_reconstruction: keep_steps {tuple(keep_steps)} must lie in 0..{steps}")
    settings = settings or RefinementSettings()
    targets = fitting_targets(targets, coefficients, settings)
    losses = settings.fitting_losses(losses)
    initial = detached_coefficients(coefficients)
    current = detached_coefficients(coefficients)
    current.angles = canonical_angles(current.angles)          # the same rotations, yaw read as the real turn
    for name in COEFFICIENT_NAMES:
        getattr(current, name).requires_grad_(True)
    groups = [
        {"params": [current.identity, current.expression], "lr": settings.shape_learning_rate},
        {"params": [current.albedo], "lr": settings.albedo_learning_rate},
        {"params": [current.lighting], "lr": settings.lighting_learning_rate},
        {"params": [current.angles], "lr": settings.angle_learning_rate},
        {"params": [current.translation], "lr": settings.translation_learning_rate},
    ]
    optimiser = torch.optim.Adam(groups)
    if settings.albedo_bound is not None:
        with torch.no_grad():
            current.albedo.clamp_(-settings.albedo_bound, settings.albedo_bound)
    rows = []
    snapshots = {0: detached_coefficients(current)} if 0 in keep_steps else {}
    began = time.perf_counter()
    bar = tqdm(total=steps, desc=description, disable=not progress or steps == 0, leave=False)
    for step in range(steps):
        terms, _ = fitting_loss(losses, model, camera, current, targets, parser)
        if not torch.isfinite(terms.total):
            bar.close()
            raise FloatingPointError(f"{description}: non-finite loss at step {step}: {terms.values()}")
        rows.append(_loss_row(step, terms, time.perf_counter() - began))
        optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        optimiser.step()
        if settings.albedo_bound is not None:
            with torch.no_grad():
                current.albedo.clamp_(-settings.albedo_bound, settings.albedo_bound)
        if step + 1 in keep_steps:
            snapshots[step + 1] = detached_coefficients(current)
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['total']:.4g}")
    bar.close()
    refined = detached_coefficients(current)
    with torch.no_grad():
        terms, render = fitting_loss(losses, model, camera, refined, targets, parser)
    rows.append(_loss_row(steps, terms, time.perf_counter() - began))
    return RefinementResult(coefficients=refined, initial_coefficients=initial,
                            losses=pd.DataFrame(rows, columns=["step", *FITTING_LOSS_COLUMNS, "seconds"]),
                            render=render, snapshots=snapshots)


__all__ = ["COEFFICIENT_NAMES", "DEFAULT_REFINE_STEPS", "FITTING_LOSS_COLUMNS", "JAW_LANDMARKS", "RefinementResult",
           "RefinementSettings", "detached_coefficients", "fitting_loss", "fitting_loss_config", "fitting_targets",
           "refine_reconstruction", "side_views"]
