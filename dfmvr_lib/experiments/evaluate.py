"""Reconstruct a test split with a trained network, evaluate it with the paper's protocol, summarise one row.

The evaluation is :func:`dfmvr_lib.evaluation.evaluate_reconstruction` (front-face crop, 7-landmark similarity,
ICP, point-to-plane distances from the ground truth to the prediction). Multi-view methods give one
reconstruction per test triplet; single-image baselines give one per view, summarised as the paper does (the best
of the three views, an oracle choice) and as the mean over the views, both labelled.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..camera import PerspectiveCamera
from ..config import WorkbookConfig
from ..data.mesh_io import read_ply
from ..data.sample import VIEW_NAMES
from ..data.synthetic import load_manifest
from ..evaluation import errors_table, evaluate_reconstruction
from ..face_model import PART_NAMES
from ..face_model.base import MorphableModel
from ..precision import autocast
from ..runs import run_columns
from ..training.data import TripletTensors, make_batch, synthetic_triplets
from ..training.input_masks import parser_parse_maps
from .paper_numbers import paper_rmse


@dataclass
class TestSet:
    """A test split with ground truth: inputs (:class:`~dfmvr_lib.training.data.TripletTensors`), ground-truth
    meshes (vertices (V, 3) mm and triangles (F, 3) per sample), their 7 alignment landmarks (M, 7, 3) mm, the
    sample and subject ids, and per-sample view yaws (M, 3) degrees when known."""

    data: object
    vertices: list[torch.Tensor]
    triangles: list[torch.Tensor]
    landmarks_7: torch.Tensor
    sample_ids: list[str]
    subject_ids: list[str]
    yaw_degrees: np.ndarray | None = None
    root: Path | None = None
    split: str = "test"

    def __len__(self) -> int:
        return len(self.vertices)

    def network_data(self, input_masks: str, parser_run_dir) -> object:
        """The inputs the network gets (:class:`~dfmvr_lib.training.data.TripletTensors`): with ``input_masks``
        ``"parser"`` the parser's masks of the input views (computed for the whole split once and cached,
        :mod:`dfmvr_lib.training.input_masks`), with ``"ground_truth"`` the exact parse maps."""

        if input_masks == "ground_truth":
            return self.data
        if input_masks != "parser":
            raise ValueError(f"unknown input_masks {input_masks!r}")
        if self.root is None or parser_run_dir is None:
            raise ValueError("TestSet.network_data: parser masks need the test set's root and a parser run")
        full = synthetic_triplets(self.root, self.split, progress=False)
        labels = parser_parse_maps(full, self.root, self.split, parser_run_dir, progress=False)
        return dataclasses.replace(self.data, parse_maps=labels[:len(self)])


def load_synthetic_test_set(root: str | os.PathLike, model: MorphableModel, split: str = "test",
                            limit: int | None = None, progress: bool = False) -> TestSet:
    """The ``split`` of a synthetic benchmark with its ground-truth meshes (written for ``DataConfig.mesh_splits``).

    The ground-truth 7 landmarks are the mesh's vertices at the model's ``alignment_7`` ids (the benchmark's meshes
    have the model's topology)."""

    rows = load_manifest(root)
    rows = rows[rows["split"] == split].reset_index(drop=True)
    data = synthetic_triplets(root, split, progress)
    count = len(rows) if limit is None else min(limit, len(rows))
    vertices, triangles = [], []
    for relative in rows["mesh"].iloc[:count]:
        if not isinstance(relative, str) or not relative:
            raise FileNotFoundError(f"{root}: the {split} split has no ground-truth meshes (DataConfig.mesh_splits)")
        v, f = read_ply(Path(root) / relative)
        vertices.append(torch.from_numpy(v))
        triangles.append(torch.from_numpy(f))
    if count < len(rows):
        data = TripletTensors(*(None if t is None else t[:count] for t in (
            data.images, data.parse_maps, data.landmarks_2d, data.landmark_visibility, data.view_present,
            data.landmarks_3d)))
    ids = model.alignment_7.cpu()
    landmarks_7 = torch.stack([v[ids] for v in vertices])
    yaw_columns = [f"yaw_{view}_degrees" for view in VIEW_NAMES]
    yaws = rows[yaw_columns].to_numpy()[:count] if all(c in rows for c in yaw_columns) else None
    return TestSet(data, vertices, triangles, landmarks_7, list(rows["sample_id"].astype(str))[:count],
                   list(rows["subject_id"].astype(str))[:count], yaws, Path(root), split)


@torch.no_grad()
def predict_vertices(network: torch.nn.Module, model: MorphableModel, camera: PerspectiveCamera, data,
                     input_views: Sequence[bool] = (True, True, True), batch_size: int = 8,
                     precision: str = "fp32") -> torch.Tensor:
    """Reconstructed head-frame vertices of every test triplet.

    Args:
        network: trained network (eval mode is set here).
        data: :class:`~dfmvr_lib.training.data.TripletTensors` of the test split.
        input_views: which views the network gets (the others are black with label-0 masks): e.g.
            ``(False, True, False)`` for the front view alone (single-view testing).
    Returns:
        (M, R, V, 3) mm: R = 1 for multi-view networks, R = S (one per view) for one-face-per-view networks.
    """
    network.eval()
    keep = torch.tensor(list(input_views), dtype=torch.bool)
    out = []
    for start in range(0, len(data), batch_size):
        indices = torch.arange(start, min(start + batch_size, len(data)))
        batch = make_batch(data, indices, device=model.mean_shape.device)
        images = batch.network_images * keep[None, :, None, None, None].to(batch.network_images)
        parse = batch.network_parse_maps * keep[None, :, None, None].to(batch.network_parse_maps)
        with autocast(precision, images.device.type):
            coefficients = network(images, parse)
        vertices, _ = model(coefficients.identity.float(), coefficients.expression.float())
        out.append(vertices.reshape(len(indices), -1, *vertices.shape[1:]))
    return torch.cat(out)


def evaluate_with_regions(vertices: torch.Tensor, model: MorphableModel, test_set: TestSet) -> list:
    """Protocol results (:class:`~dfmvr_lib.evaluation.ReconstructionError`) of one reconstruction per sample,
    vertices (M, V, 3) mm, with per-region errors by the part class of each ground-truth vertex (the benchmark's
    meshes have the model's topology, so the model's part labels name their regions)."""

    regions = [PART_NAMES[k] for k in model.part_labels.cpu().tolist()]
    triangles = model.triangles.cpu().numpy()
    alignment = model.alignment_7.cpu()
    return [evaluate_reconstruction(vertices[m].cpu().numpy(), triangles, vertices[m].cpu()[alignment].numpy(),
                                    test_set.vertices[m].numpy(), test_set.triangles[m].numpy(),
                                    test_set.landmarks_7[m].numpy(), gt_region_labels=regions)
            for m in range(len(test_set))]


def evaluate_vertices(vertices: torch.Tensor, model: MorphableModel, test_set: TestSet,
                      reconstruction_labels: Sequence[str] | None = None, icp: bool = True,
                      progress: bool = False) -> pd.DataFrame:
    """Scan-to-mesh errors of predicted vertices (M, R, V, 3) against the test set's ground truth.

    Returns a tidy DataFrame: sample, subject, reconstruction (``"fused"`` for R = 1, else the view name), rmse_mm,
    mean_mm, std_mm, median_mm, n_points and the protocol's diagnostics.
    """


    M, R = vertices.shape[:2]
    if M != len(test_set):
        raise ValueError(f"evaluate_vertices: {M} predictions for {len(test_set)} test samples")
    labels = list(reconstruction_labels) if reconstruction_labels else (["fused"] if R == 1 else list(VIEW_NAMES[:R]))
    triangles = model.triangles.cpu().numpy()
    alignment = model.alignment_7.cpu()
    frames = []
    for r, label in enumerate(labels):
        results = []
        for m in tqdm(range(M), desc=f"evaluating {label}", disable=not progress, leave=False):
            predicted = vertices[m, r].cpu()
            results.append(evaluate_reconstruction(predicted.numpy(), triangles, predicted[alignment].numpy(),
                                                   test_set.vertices[m].numpy(), test_set.triangles[m].numpy(),
                                                   test_set.landmarks_7[m].numpy(), icp=icp))
        table = errors_table(results, ids=test_set.sample_ids)
        table.insert(1, "subject", test_set.subject_ids)
        table.insert(2, "reconstruction", label)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def per_sample_errors(errors: pd.DataFrame, choice: str) -> pd.DataFrame:
    """One error per test sample: ``choice`` ``"fused"`` (multi-view methods), ``"best_view"`` (the view with the
    lowest rmse, the paper's oracle for the baselines), ``"mean_over_views"`` (the mean of the views' errors), or a
    view name (``"A"``, ``"B"``, ``"C"``)."""
    metrics = ["rmse_mm", "mean_mm"]
    if choice in ("fused",) + tuple(VIEW_NAMES):
        part = errors[errors["reconstruction"] == choice]
        return part[["sample", "subject"] + metrics].reset_index(drop=True)
    grouped = errors.groupby(["sample", "subject"], sort=False)
    if choice == "best_view":
        best = errors.loc[grouped["rmse_mm"].idxmin()]
        return best[["sample", "subject"] + metrics].reset_index(drop=True)
    if choice == "mean_over_views":
        return grouped[metrics].mean().reset_index()
    raise ValueError(f"unknown choice {choice!r}")


def summary_row(per_sample: Sequence[pd.DataFrame], *, table: str, method: str, setting: str, test_choice: str,
                config: WorkbookConfig, seeds: Sequence[int], paper_row: str | None = None,
                run_dirs: Sequence[str | os.PathLike] = ()) -> dict:
    """One row of an experiment table from the per-sample errors of each seed's run.

    Mean / std are over test samples pooled across seeds (std of the per-sample errors, as the paper reports).
    ``paper_rmse_mm`` / ``paper_std_mm`` are the paper's own numbers for the row (its datasets, not ours). The row
    names the runs it came from (``run_dirs``, one per seed; none for the mean face and the ceiling):
    :func:`dfmvr_lib.runs.run_columns` (``run_dir``, ``parser_run_dir``, ``trained_at_commit``)."""

    pooled = pd.concat(per_sample, ignore_index=True)
    per_seed = [float(frame["rmse_mm"].mean()) for frame in per_sample]
    paper_mean, paper_std = paper_rmse(table, paper_row or method)
    return {
        "table": table, "method": method, "setting": setting, "test_input": test_choice,
        "n_test": int(len(per_sample[0])), "seeds": " ".join(str(s) for s in seeds),
        "rmse_mm_mean": float(pooled["rmse_mm"].mean()), "rmse_mm_std": float(pooled["rmse_mm"].std()),
        "mean_mm_mean": float(pooled["mean_mm"].mean()), "mean_mm_std": float(pooled["mean_mm"].std()),
        "rmse_mm_seed_spread": float(np.std(per_seed)) if len(per_seed) > 1 else 0.0,
        "profile": config.profile, "paper_rmse_mm": paper_mean, "paper_std_mm": paper_std,
        **run_columns(run_dirs),
    }


__all__ = ["TestSet", "evaluate_vertices", "evaluate_with_regions", "load_synthetic_test_set", "per_sample_errors",
           "predict_vertices", "summary_row"]
