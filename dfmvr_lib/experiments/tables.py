"""One call per table row: a method's runs for each seed (trained or reused through
:mod:`dfmvr_lib.experiments.training_runs`), the test split reconstructed and evaluated, the rows summarised; the
paired comparison of two methods on the same test samples; the mean-face and ceiling reference rows."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch
from scipy import stats

from ..camera import PerspectiveCamera
from ..config import ExperimentConfig
from ..evaluation.ceiling import best_fit_shapes
from ..face_model.factory import load_face_model
from ..precision import resolve_precision
from .evaluate import TestSet, evaluate_vertices, per_sample_errors, predict_vertices, summary_row
from .methods import is_single_image, method_config
from .training_runs import mask_parser, train_method, train_methods

ALL_VIEWS = (True, True, True)
FRONT_ONLY = (False, True, False)


def evaluate_method(profile: str, method: str, dataset_root: str | os.PathLike, parser_run_dir,
                    seeds: Sequence[int], runs_root: str | os.PathLike, test_set: TestSet,
                    input_views: Sequence[bool] = ALL_VIEWS, overrides: dict[str, Any] | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """Per-sample scan-to-mesh errors of ``method`` on ``test_set`` for every seed (column ``seed``), with
    ``input_views`` given to the network (one-face-per-view baselines always reconstruct each view alone)."""
    frames, run_dirs = [], []
    for seed in seeds:
        run = train_method(profile, method, dataset_root, parser_run_dir, seed, runs_root, overrides, progress)
        model = load_face_model(run.config.face_model)
        camera = PerspectiveCamera.from_config(run.config)
        views = ALL_VIEWS if is_single_image(method) else input_views
        data = test_set.network_data(run.config.training.input_masks, mask_parser(run.config, parser_run_dir))
        vertices = predict_vertices(run.network, model, camera, data, views,
                                    batch_size=run.config.training.batch_size,
                                    precision=resolve_precision(run.config.training.precision))
        errors = evaluate_vertices(vertices, model, test_set, progress=progress)
        errors.insert(0, "seed", seed)
        frames.append(errors)
        run_dirs.append(str(run.run_dir))
    result = pd.concat(frames, ignore_index=True)
    result.attrs["run_dirs"] = run_dirs
    return result


def test_choices(method: str) -> tuple[str, ...]:
    """How a method's test errors are read: ``("fused",)`` for multi-view methods, the paper's best-of-three-views
    oracle and the mean over views for the single-image baselines."""
    return ("best_view", "mean_over_views") if is_single_image(method) else ("fused",)


def table_rows(errors: pd.DataFrame, *, table: str, method: str, setting: str, profile: str,
               paper_row: str | None = None, overrides: dict[str, Any] | None = None,
               choices: dict[str, str] | None = None) -> list[dict]:
    """Summary rows (one per test choice) of :func:`evaluate_method`'s output, with the paper's number beside.

    ``choices`` maps a :func:`per_sample_errors` choice to the row's ``test_input`` label (default: every choice
    of :func:`test_choices`, labelled by its name), e.g. ``{"B": "front view B alone"}`` for a baseline's front
    view; only best-view and fused rows carry the paper's number. Each row names the runs of ``errors``
    (``errors.attrs["run_dirs"]``, set by :func:`evaluate_method`; :func:`dfmvr_lib.runs.run_columns`)."""
    seeds = sorted(errors["seed"].unique().tolist())
    config = method_config(profile, method, seeds[0], overrides)
    choices = choices or {choice: choice for choice in test_choices(method)}
    rows = []
    for choice, label in choices.items():
        per_seed = [per_sample_errors(errors[errors["seed"] == seed], choice) for seed in seeds]
        paper = paper_row if choice in ("fused", "best_view") else "none"   # the paper reports the best view only
        rows.append(summary_row(per_seed, table=table, method=method, setting=setting, test_choice=label,
                                config=config, seeds=seeds, paper_row=paper,
                                run_dirs=errors.attrs.get("run_dirs", ())))
    return rows


def paired_comparison(errors: pd.DataFrame, reference: pd.DataFrame, choice: str = "fused",
                      reference_choice: str = "fused") -> dict[str, float]:
    """Paired comparison on the same test samples (errors averaged over seeds per sample): mean rmse difference
    (this minus reference, mm), the Wilcoxon signed-rank p-value and the paired t-test p-value."""
    def per_sample(frame, pick):
        parts = [per_sample_errors(frame[frame["seed"] == seed], pick) for seed in frame["seed"].unique()]
        return pd.concat(parts).groupby("sample")["rmse_mm"].mean()

    a, b = per_sample(errors, choice), per_sample(reference, reference_choice)
    a, b = a.align(b, join="inner")
    difference = a - b
    if len(difference) < 2 or float(difference.abs().sum()) == 0.0:
        return {"mean_difference_mm": float(difference.mean()) if len(difference) else 0.0,
                "wilcoxon_p": 1.0, "t_test_p": 1.0, "paired_samples": int(len(difference))}
    return {"mean_difference_mm": float(difference.mean()),
            "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue),
            "t_test_p": float(stats.ttest_rel(a, b).pvalue), "paired_samples": int(len(difference))}


@dataclass
class RowSpec:
    """One method in a table: ``method`` (a :data:`~dfmvr_lib.experiments.methods.METHODS` name), the paper's row
    it corresponds to (default the method name), the input views given at test time, and extra config
    ``overrides`` (e.g. a swept loss weight; they change the run key)."""

    method: str
    paper_row: str | None = None
    input_views: tuple[bool, bool, bool] = ALL_VIEWS
    overrides: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        views = "".join(v for v, keep in zip("ABC", self.input_views) if keep)
        extra = ",".join(f"{k}={v}" for k, v in sorted((self.overrides or {}).items()))
        return f"{self.method}[{views}]" + (f"{{{extra}}}" if extra else "")


def run_table(table: str, setting: str, specs: Sequence[RowSpec], *, profile: str, dataset_root, parser_run_dir,
              seeds: Sequence[int], runs_root, test_set: TestSet, parallel_trainings: int = 1,
              reference_rows: bool = True, progress: bool = True,
              executor: str | ExperimentConfig | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Train / reuse and evaluate every row of a table; returns ``(summary rows, {spec.key: per-sample errors})``.

    The missing training runs of the whole table are trained first, ``parallel_trainings`` at a time, by the
    profile's executor (``experiments.executor``, e.g. ``DFMVR_EXECUTOR=slurm`` in the environment) or the
    ``executor`` given (:func:`train_methods`); the results are then read from the keyed run directories. Rows
    whose input views are not all three say which views the network saw in ``test_input`` (e.g.
    ``"fused, views B"``). Every row of a trained method carries the paired comparison with
    the mean face on the same test triplets (``vs_mean_face_mm``: mean rmse difference, negative = better;
    ``p_vs_mean_face``: Wilcoxon signed-rank p-value; errors averaged over seeds per triplet) and the run
    directories it was evaluated from (``run_dirs``). Rows of methods trained with inputs the paper's method does
    not have say so in the method column (``"... (oracle: ...)"``, :func:`oracle_inputs`). ``reference_rows`` adds
    the rows ``mean_face`` (the model's mean shape, what every network predicts before training) and ``ceiling``
    (the least-squares fit of the model to each ground-truth mesh, an oracle: no regressor of these coefficients
    can do better), both through the same protocol."""
    jobs = list(dict.fromkeys((spec.method, seed, tuple(sorted((spec.overrides or {}).items())))
                              for spec in specs for seed in seeds))
    train_methods([(method, seed, dict(overrides) or None) for method, seed, overrides in jobs], profile=profile,
                  dataset_root=dataset_root, parser_run_dir=parser_run_dir, runs_root=runs_root,
                  workers=parallel_trainings, progress=progress, executor=executor)
    mean_face = evaluate_mean_face(profile, test_set, progress)
    rows, errors = [], {}
    for spec in specs:
        result = evaluate_method(profile, spec.method, dataset_root, parser_run_dir, seeds, runs_root, test_set,
                                 spec.input_views, spec.overrides, progress)
        errors[spec.key] = result
        config = method_config(profile, spec.method, seeds[0], spec.overrides)
        oracle = oracle_inputs(config)
        for choice, row in zip(test_choices(spec.method), table_rows(result, table=table, method=spec.method,
                                                                 setting=setting, profile=profile,
                                                                 paper_row=spec.paper_row,
                                                                 overrides=spec.overrides)):
            if tuple(spec.input_views) != ALL_VIEWS and row["test_input"] == "fused":
                row["test_input"] = "fused, views " + "".join(v for v, k in zip("ABC", spec.input_views) if k)
            if spec.overrides:
                row["overrides"] = ", ".join(f"{k}={v}" for k, v in sorted(spec.overrides.items()))
            if oracle:
                row["method"] = f"{row['method']} (oracle: {oracle})"
            paired = paired_comparison(result, mean_face, choice=choice)
            row["vs_mean_face_mm"] = paired["mean_difference_mm"]
            row["p_vs_mean_face"] = paired["wilcoxon_p"]
            row["run_dirs"] = " ".join(sorted(result.attrs.get("run_dirs", [])))
            rows.append(row)
    errors["mean_face"] = mean_face
    if reference_rows:
        ceiling = evaluate_ceiling(profile, test_set, progress)
        errors["ceiling"] = ceiling
        for name, result in (("mean_face", mean_face), ("ceiling", ceiling)):
            rows.append(summary_row([per_sample_errors(result, "fused")], table=table, method=name,
                                    setting=setting, test_choice="fused", config=method_config(profile, "dfmvr"),
                                    seeds=[], paper_row="none"))
    return pd.DataFrame(rows), errors


def oracle_inputs(config) -> str:
    """What a configuration gets that the paper's method would not have, as a label ("" when nothing): the
    renderer's exact parse maps as input masks, exact 2D landmark projections instead of a detector's."""
    extras = []
    if config.training.input_masks == "ground_truth":
        extras.append("ground-truth masks")
    if config.training.landmark_noise_nme == 0:
        extras.append("exact 2D landmarks")
    return ", ".join(extras)


def evaluate_mean_face(profile: str, test_set: TestSet, progress: bool = True) -> pd.DataFrame:
    """Per-sample errors of the face model's mean shape on ``test_set`` (the reference every method must beat;
    column ``seed`` is -1)."""
    model = load_face_model(method_config(profile, "dfmvr").face_model)
    vertices = model.mean_shape.detach().expand(len(test_set), 1, -1, -1)
    errors = evaluate_vertices(vertices, model, test_set, progress=progress)
    errors.insert(0, "seed", -1)
    return errors


def evaluate_ceiling(profile: str, test_set: TestSet, progress: bool = True) -> pd.DataFrame:
    """Per-sample errors of the best least-squares fit of the model's identity and expression to each
    ground-truth mesh (:func:`dfmvr_lib.evaluation.ceiling.best_fit_shapes`; an oracle reference, column ``seed``
    -1)."""
    model = load_face_model(method_config(profile, "dfmvr").face_model)
    fit = best_fit_shapes(model, torch.stack(test_set.vertices).to(model.mean_shape))
    errors = evaluate_vertices(fit.vertices[:, None], model, test_set, progress=progress)
    errors.insert(0, "seed", -1)
    return errors


__all__ = ["ALL_VIEWS", "FRONT_ONLY", "RowSpec", "evaluate_ceiling", "evaluate_mean_face", "evaluate_method",
           "oracle_inputs", "paired_comparison", "run_table", "table_rows", "test_choices", "train_method",
           "train_methods"]
