"""Figures of reconstruction training: loss curves, predictions next to the inputs, errors against the mean face."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..losses import composite_over
from ..plots import to_numpy_image

CURVE_TERMS = ("total", "photo", "mask", "landmark_2d", "landmark_3d", "regularisation")
CURVE_UNITS = {"total": "weighted sum", "photo": "RGB distance", "mask": "cross-entropy",
               "landmark_2d": "px at 224 (weighted)", "landmark_3d": "mm", "regularisation": "sum of squares"}


def training_curves_figure(metrics: pd.DataFrame, validation: pd.DataFrame | None = None,
                           title: str = "reconstruction training"):
    """One panel per loss term (per step, light, with a running mean) and, when given, the validation vertex error
    of the network against the mean face."""
    terms = [t for t in CURVE_TERMS if t in metrics and metrics[t].abs().sum() > 0]
    panels = len(terms) + (1 if validation is not None and len(validation) else 0)
    columns = 4
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.5 * rows), squeeze=False)
    window = max(1, len(metrics) // 40)
    for ax, term in zip(axes.flat, terms):
        ax.plot(metrics["step"], metrics[term], color="tab:blue", alpha=0.25, lw=0.7)
        ax.plot(metrics["step"], metrics[term].rolling(window, min_periods=1).mean(), color="tab:blue")
        ax.set_title(f"{term} ({CURVE_UNITS[term]})", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    if panels > len(terms):
        ax = axes.flat[len(terms)]
        ax.plot(validation["step"], validation["network_mm"], "o-", color="tab:green", label="network")
        ax.plot(validation["step"], validation["mean_face_mm"], "--", color="grey", label="mean face")
        ax.set_title("validation: mean vertex error (mm)", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    seconds = float(metrics["seconds"].iloc[-1]) if len(metrics) else 0.0
    fig.suptitle(f"{title}: {len(metrics)} steps, {seconds / 60:.1f} min", fontsize=10)
    fig.tight_layout()
    return fig


def prediction_figure(images: torch.Tensor, rendered: torch.Tensor, alpha: torch.Tensor,
                      predicted_landmarks: torch.Tensor | None = None, target_landmarks: torch.Tensor | None = None,
                      view_names=("A (left)", "B (front)", "C (right)"), title: str | None = None):
    """Views of one sample in columns; rows: the input, the render pasted over it, the render alone (with the
    predicted landmarks in red and the targets in green when given).

    Args:
        images, rendered: (S, 3, H, W) in [0, 1]; alpha: (S, H, W) render coverage;
        predicted_landmarks, target_landmarks: (S, 68, 2) pixels.
    """
    views = images.shape[0]
    pasted = composite_over(rendered, alpha, images)
    fig, axes = plt.subplots(3, views, figsize=(2.2 * views, 6.8), squeeze=False)
    for v in range(views):
        for row, (picture, label) in enumerate(((images[v], "input"), (pasted[v], "render over input"),
                                                (rendered[v] * alpha[v], "render"))):
            ax = axes[row, v]
            ax.imshow(to_numpy_image(picture))
            ax.set_xticks([])
            ax.set_yticks([])
            if v == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(view_names[v] if v < len(view_names) else str(v), fontsize=8)
        if predicted_landmarks is not None:
            ax = axes[2, v]
            if target_landmarks is not None:
                target = target_landmarks[v].detach().cpu().numpy()
                ax.scatter(target[:, 0], target[:, 1], s=3, c="lime", linewidths=0)
            points = predicted_landmarks[v].detach().cpu().numpy()
            ax.scatter(points[:, 0], points[:, 1], s=3, c="red", linewidths=0)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def vertex_error_figure(table: pd.DataFrame, title: str = "validation split"):
    """Per-sample mean vertex error of the network against that of the mean face (points below the diagonal are
    samples where the network is better)."""
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.scatter(table["mean_face_mm"], table["network_mm"], s=12, alpha=0.7)
    high = float(np.nanmax(table[["mean_face_mm", "network_mm"]].to_numpy())) * 1.05
    ax.plot([0, high], [0, high], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, high)
    ax.set_ylim(0, high)
    ax.set_xlabel("mean face: mean vertex error (mm)")
    ax.set_ylabel("network: mean vertex error (mm)")
    ax.set_title(f"{title}: network {table['network_mm'].mean():.2f} mm vs mean face "
                 f"{table['mean_face_mm'].mean():.2f} mm", fontsize=8)
    fig.tight_layout()
    return fig


def learning_figure(curves: pd.DataFrame, highlight: str = "spatial pool 8", validation_triplets: int = 80):
    """The learning-efficiency study (``benchmarks/bench_learning.py``, ``results/benchmarks/learning.csv``): for
    each variant the validation vertex error (left, with the mean face and the ceiling of the ``highlight``
    variant's validation set as lines) and the fraction of the mean-face -> ceiling gap it closes (right) against
    its training minutes (``highlight``: the variant that is the cpu profile now; ``validation_triplets``: how many
    validation triplets the study used, for the title; a study without the ``highlight`` variant draws the mean face
    and ceiling of its first variant). Columns: variant, minutes, network_mm, gap_closed,
    mean_face_mm, ceiling_mm."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colours, dashes = plt.get_cmap("tab10").colors, ("-", "--", "-.")       # 30 distinct (colour, dash) pairs
    for index, (name, part) in enumerate(curves.groupby("variant", sort=False)):
        style = dict(lw=2.4, color="black") if name == highlight else \
            dict(lw=1.2, color=colours[index % 10], ls=dashes[(index // 10) % 3])
        axes[0].plot(part["minutes"], part["network_mm"], marker=".", label=name, **style)
        axes[1].plot(part["minutes"], part["gap_closed"], marker=".", label=name, **style)
    reference = curves[curves["variant"] == highlight]
    if not len(reference):                      # a study without that variant: the lines of its first variant
        reference = curves[curves["variant"] == curves["variant"].iloc[0]]
    if len(reference):
        axes[0].axhline(reference["mean_face_mm"].iloc[0], color="grey", ls="--", lw=1, label="mean face")
        axes[0].axhline(reference["ceiling_mm"].iloc[0], color="grey", ls=":", lw=1, label="ceiling (oracle fit)")
    axes[1].axhline(0.0, color="grey", ls="--", lw=1, label="mean face")
    axes[1].axhline(1.0, color="grey", ls=":", lw=1, label="ceiling")
    axes[0].set_ylabel("validation vertex error (mm)")
    axes[1].set_ylabel("gap closed (mean face -> ceiling)")
    for ax in axes:
        ax.set_xlabel("training minutes (1 thread, two runs side by side on 2 cores, fp32)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", ncol=2)
    bold = f"; bold: {highlight}, the profile" if (curves["variant"] == highlight).any() else ""
    fig.suptitle(f"Learning efficiency of the cpu profile (pixelface-like validation, {validation_triplets} triplets"
                 f"{bold})", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["learning_figure", "prediction_figure", "training_curves_figure", "vertex_error_figure"]
