"""How far a trained network gets from the mean face towards the ceiling, on a test split (notebook 03).

Two measures per test triplet: the mean vertex error after a similarity alignment (the model's topology,
:func:`dfmvr_lib.training.aligned_vertex_error_mm`) and the paper's scan protocol rmse
(:func:`dfmvr_lib.experiments.evaluate_vertices`). Three reconstructions: the network (with the inputs its
configuration asks for: the parser's masks by default), the mean face (every network's start) and the ceiling
(the least-squares fit of the model to the ground truth, an oracle). ``gap_closed`` = (mean face - network) /
(mean face - ceiling): 0 at the mean face, 1 at the ceiling.
"""
from __future__ import annotations

import pandas as pd
import torch
from scipy import stats

from ..camera import PerspectiveCamera
from ..evaluation.ceiling import best_fit_shapes
from ..face_model.factory import load_face_model
from ..precision import resolve_precision
from ..runs import run_columns
from ..training import aligned_vertex_error_mm
from .evaluate import TestSet, evaluate_vertices, predict_vertices


def gap_closed(method_mm: float, mean_face_mm: float, ceiling_mm: float) -> float:
    """Fraction of the mean-face -> ceiling gap that ``method_mm`` closes (negative when worse than the mean
    face)."""
    gap = mean_face_mm - ceiling_mm
    if gap <= 0:
        raise ValueError(f"gap_closed: the ceiling ({ceiling_mm} mm) is not below the mean face ({mean_face_mm} mm)")
    return (mean_face_mm - method_mm) / gap


def run_report(run, test_set: TestSet, parser_run_dir, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-triplet errors and a summary of a :class:`~dfmvr_lib.training.TrainingRun` on ``test_set``.

    Returns ``(per_sample, summary)``: ``per_sample`` has ``sample, subject`` and for each of ``network``,
    ``mean_face``, ``ceiling`` the columns ``<name>_vertex_mm`` and ``<name>_rmse_mm``; ``summary`` has one row
    per measure (``vertex error``, ``scan rmse``) with ``network_mm``, ``mean_face_mm``, ``ceiling_mm``,
    ``gap_closed``, ``vs_mean_face_mm`` (mean paired difference), ``p_vs_mean_face`` (Wilcoxon),
    ``network_better_fraction``, ``n_test``, the run it came from (:func:`dfmvr_lib.runs.run_columns`:
    ``run_dir``, ``parser_run_dir``, ``trained_at_commit``) and its training steps and minutes."""

    config = run.config
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    data = test_set.network_data(config.training.input_masks, parser_run_dir)
    network = predict_vertices(run.network, model, camera, data, batch_size=config.training.batch_size,
                               precision=resolve_precision(config.training.precision))[:, 0]
    truth = torch.stack(test_set.vertices).to(model.mean_shape)
    reconstructions = {"network": network, "mean_face": model.mean_shape.detach().expand_as(truth),
                       "ceiling": best_fit_shapes(model, truth).vertices}
    per_sample = pd.DataFrame({"sample": test_set.sample_ids, "subject": test_set.subject_ids})
    region = model.evaluation_region
    for name, vertices in reconstructions.items():
        per_sample[f"{name}_vertex_mm"] = aligned_vertex_error_mm(vertices, truth, region).numpy()
        scan = evaluate_vertices(vertices[:, None], model, test_set, progress=progress)
        per_sample[f"{name}_rmse_mm"] = scan["rmse_mm"].to_numpy()
    rows = []
    for measure, column in (("vertex error", "vertex_mm"), ("scan rmse", "rmse_mm")):
        net, mean, ceiling = (per_sample[f"{name}_{column}"] for name in ("network", "mean_face", "ceiling"))
        rows.append({"measure": measure, "network_mm": float(net.mean()), "mean_face_mm": float(mean.mean()),
                     "ceiling_mm": float(ceiling.mean()),
                     "gap_closed": gap_closed(float(net.mean()), float(mean.mean()), float(ceiling.mean())),
                     "vs_mean_face_mm": float((net - mean).mean()),
                     "p_vs_mean_face": float(stats.wilcoxon(net, mean).pvalue),
                     "network_better_fraction": float((net < mean).mean()), "n_test": len(per_sample),
                     **run_columns([run.run_dir]), "steps": config.training.steps,
                     "training_minutes": float(run.metrics["seconds"].iloc[-1] / 60) if len(run.metrics) else 0.0})
    return per_sample, pd.DataFrame(rows)


__all__ = ["gap_closed", "run_report"]
