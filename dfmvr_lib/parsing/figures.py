"""Figures of notebook 02: the pretraining loss curve and parse-map overlays."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ..plots import add_part_legend, part_label_image, to_numpy_image


def loss_curve_figure(metrics: pd.DataFrame, title: str = "parser pretraining"):
    """Loss per step (light) with a running mean, and the learning rate on a second axis."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.plot(metrics["step"], metrics["loss"], color="tab:blue", alpha=0.3, lw=0.8, label="loss")
    window = max(1, len(metrics) // 50)
    ax.plot(metrics["step"], metrics["loss"].rolling(window, min_periods=1).mean(), color="tab:blue",
            label=f"running mean ({window} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (parser_loss)")
    ax.set_yscale("log")
    twin = ax.twinx()
    twin.plot(metrics["step"], metrics["lr"], color="tab:orange", lw=0.8)
    twin.set_ylabel("learning rate", color="tab:orange")
    seconds = float(metrics["seconds"].iloc[-1]) if len(metrics) else 0.0
    ax.set_title(f"{title}: {len(metrics)} steps, {seconds / 60:.1f} min", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def parse_overlay_figure(images: torch.Tensor, label_maps: dict[str, torch.Tensor], title: str | None = None,
                         row_titles=None):
    """One row per image (N, 3, H, W): the image, then each named label map (N, H, W) blended over it."""
    images = torch.as_tensor(images)
    n = images.shape[0]
    columns = 1 + len(label_maps)
    fig, axes = plt.subplots(n, columns, figsize=(2.2 * columns, 2.2 * n + 0.6), squeeze=False)
    for i in range(n):
        picture = to_numpy_image(images[i])
        axes[i, 0].imshow(picture)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=7)
        for j, (name, labels) in enumerate(label_maps.items(), start=1):
            axes[i, j].imshow(0.45 * picture + 0.55 * part_label_image(labels[i]))
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    add_part_legend(fig, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


__all__ = ["loss_curve_figure", "parse_overlay_figure"]
