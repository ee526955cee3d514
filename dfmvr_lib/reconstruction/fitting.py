"""Multi-view test-time fitting: refine the network's coefficients on the input views themselves.

The network's prediction is the starting point; Adam then optimises the coefficient tensors (identity, expression,
albedo, SH lighting, and each view's Euler angles and translation), not the network, for a fixed number of steps
against the training losses of :func:`dfmvr_lib.training.forward.batch_loss`: the weighted photo loss, the mask
loss through the frozen parser (with gradient into the render), the weighted 2D landmark loss and the coefficient
regularisation (plus reflectance / lighting priors when the loss config weights them). The 3D landmark loss needs
ground truth, so it is always off here.

Shapes follow :class:`dfmvr_lib.scene.FaceCoefficients` (B faces, S views): identity (B, K_id), expression
(B, K_exp), albedo (B, K_alb), lighting (B, 27), angles (B, S, 3) radians, translation (B, S, 3) mm. The targets
are a :class:`dfmvr_lib.training.TrainingBatch` (images (B, S, 3, H, W) in [0, 1], parse maps (B, S, H, W), 2D
landmarks (B, S, 68, 2) pixels, ``view_weight`` (B, S): 0 for a view missing from the input, which then takes no
part in any loss and keeps its pose).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import pandas as pd
import torch

from ..camera import PerspectiveCamera
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
    """

    shape_learning_rate: float = 0.05
    albedo_learning_rate: float = 0.02
    lighting_learning_rate: float = 0.01
    angle_learning_rate: float = 0.003
    translation_learning_rate: float = 0.5


@dataclass
class RefinementResult:
    """What :func:`refine_reconstruction` returns.

    coefficients: the refined :class:`~dfmvr_lib.scene.FaceCoefficients` (detached, float32) after the last step.
    initial_coefficients: the starting point (detached copy).
    losses: one row per evaluation, ``step`` 0..N (row ``s`` = the loss of the coefficients after ``s`` updates),
        the terms of :data:`FITTING_LOSS_COLUMNS` and ``seconds`` since the start.
    render: the :class:`~dfmvr_lib.scene.FaceRender` of the refined coefficients (no gradient).
    """

    coefficients: FaceCoefficients
    initial_coefficients: FaceCoefficients
    losses: pd.DataFrame
    render: FaceRender

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
                          progress: bool = False, description: str = "refining") -> RefinementResult:
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
    Returns:
        :class:`RefinementResult` with the refined coefficients and the loss of every step.
    """
    from tqdm.auto import tqdm

    if steps < 0:
        raise ValueError(f"refine_reconstruction: steps must be >= 0, got {steps}")
    settings = settings or RefinementSettings()
    initial = detached_coefficients(coefficients)
    current = detached_coefficients(coefficients)
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
    rows = []
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
        bar.update(1)
        bar.set_postfix(loss=f"{rows[-1]['total']:.4g}")
    bar.close()
    refined = detached_coefficients(current)
    with torch.no_grad():
        terms, render = fitting_loss(losses, model, camera, refined, targets, parser)
    rows.append(_loss_row(steps, terms, time.perf_counter() - began))
    return RefinementResult(coefficients=refined, initial_coefficients=initial,
                            losses=pd.DataFrame(rows, columns=["step", *FITTING_LOSS_COLUMNS, "seconds"]),
                            render=render)


__all__ = ["COEFFICIENT_NAMES", "DEFAULT_REFINE_STEPS", "FITTING_LOSS_COLUMNS", "RefinementResult",
           "RefinementSettings", "detached_coefficients", "fitting_loss", "fitting_loss_config",
           "refine_reconstruction"]
