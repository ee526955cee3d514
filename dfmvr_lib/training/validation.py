"""Validation during and after training: mean vertex error to the ground truth, against the mean-face baseline.

This is the quick, correspondence-based measure for data whose ground truth has the model's topology (the synthetic
benchmark): prediction and ground truth are aligned by the least-squares similarity over the front-face vertices
(:attr:`MorphableModel.evaluation_region`), then the mean Euclidean vertex distance is taken over the same
vertices. The paper's scan-to-mesh protocol (crop, 7-landmark alignment, ICP, point-to-plane) is separate.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..camera import PerspectiveCamera
from ..face_model.base import MorphableModel
from ..similarity import apply_similarity, similarity_transform
from .data import TripletTensors, make_batch
from .forward import reconstruct


def aligned_vertex_error_mm(predicted: torch.Tensor, target: torch.Tensor,
                            region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean vertex distance (mm) after the best similarity alignment of ``predicted`` onto ``target``.

    Args:
        predicted, target: (B, V, 3) vertices in mm with the same topology.
        region: (V,) bool vertices used for the alignment and the mean (default all).
    Returns:
        (B,) mean distances in mm.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"aligned_vertex_error_mm: shapes differ {tuple(predicted.shape)} vs {tuple(target.shape)}")
    if region is not None:
        predicted, target = predicted[:, region], target[:, region]
    scale, rotation, translation = similarity_transform(predicted, target)
    aligned = apply_similarity(predicted, scale, rotation, translation)
    return torch.linalg.vector_norm(aligned - target, dim=-1).mean(-1)


@torch.no_grad()
def vertex_error_table(network: torch.nn.Module, model: MorphableModel, camera: PerspectiveCamera,
                       data: TripletTensors, meshes: list[torch.Tensor], *, batch_size: int = 8,
                       precision: str = "fp32", limit: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Per-sample mean vertex error (mm) of the network and of the mean face on a split with ground-truth meshes.

    Args:
        network: the reconstruction network (put in eval mode here, restored afterwards).
        model, camera: as in training.
        data: the split's triplets (inputs).
        meshes: ground-truth vertices (V, 3) per sample (model topology), same order as ``data``.
        limit: only the first ``limit`` samples.
    Returns:
        DataFrame with ``sample`` (index), ``network_mm``, ``mean_face_mm``; for one-face-per-view networks
        ``network_mm`` is the mean over the views' reconstructions and ``network_best_view_mm`` the best one.
    """
    from tqdm.auto import tqdm

    count = len(data) if limit is None else min(limit, len(data))
    was_training = network.training
    network.eval()
    region = model.evaluation_region
    rows = []
    try:
        for start in tqdm(range(0, count, batch_size), desc="validation", disable=not progress, leave=False):
            indices = torch.arange(start, min(start + batch_size, count))
            batch = make_batch(data, indices, device=model.mean_shape.device)
            prediction = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps,
                                     precision=precision)
            target = torch.stack([meshes[int(i)] for i in indices]).to(prediction.vertices)
            vertices = prediction.vertices
            views = batch.network_images.shape[1] if prediction.per_view_faces else 1   # (B * views, V, 3)
            repeated = target.repeat_interleave(views, dim=0)
            network_error = aligned_vertex_error_mm(vertices, repeated, region).reshape(-1, views)
            mean_face = model.mean_shape.unsqueeze(0).expand_as(target)
            baseline = aligned_vertex_error_mm(mean_face, target, region)
            for i, errors, b in zip(indices.tolist(), network_error.tolist(), baseline.tolist()):
                row = {"sample": i, "network_mm": sum(errors) / views, "mean_face_mm": b}
                if views > 1:
                    row["network_best_view_mm"] = min(errors)
                rows.append(row)
    finally:
        network.train(was_training)
    return pd.DataFrame(rows)


def summarise_vertex_errors(table: pd.DataFrame) -> dict[str, float]:
    """Mean and std of both columns of :func:`vertex_error_table`, and the share of samples the network wins."""
    return {"network_mm": float(table["network_mm"].mean()), "network_std_mm": float(table["network_mm"].std()),
            "mean_face_mm": float(table["mean_face_mm"].mean()),
            "mean_face_std_mm": float(table["mean_face_mm"].std()),
            "network_better_fraction": float(np.mean(table["network_mm"] < table["mean_face_mm"])),
            "samples": int(len(table)),
            **({"network_best_view_mm": float(table["network_best_view_mm"].mean())}
               if "network_best_view_mm" in table else {})}


def paired_vertex_error_test(table: pd.DataFrame) -> dict[str, float]:
    """Paired comparison of the network with the mean face on the same samples (a :func:`vertex_error_table`):
    mean difference network - mean face (mm, negative = the network is better), the Wilcoxon signed-rank p-value
    and the paired t-test p-value."""
    from scipy import stats

    difference = table["network_mm"] - table["mean_face_mm"]
    if len(difference) < 2 or float(difference.abs().sum()) == 0.0:
        return {"difference_mm": float(difference.mean()) if len(difference) else 0.0, "wilcoxon_p": 1.0,
                "t_test_p": 1.0}
    return {"difference_mm": float(difference.mean()),
            "wilcoxon_p": float(stats.wilcoxon(table["network_mm"], table["mean_face_mm"]).pvalue),
            "t_test_p": float(stats.ttest_rel(table["network_mm"], table["mean_face_mm"]).pvalue)}


__all__ = ["aligned_vertex_error_mm", "paired_vertex_error_test", "summarise_vertex_errors", "vertex_error_table"]
