"""Figures of the experiment notebooks: bar charts of a table against the paper's numbers, the sensitivity curves,
per-region error maps. (The sentence on where our ordering agrees with the paper's is
:func:`dfmvr_lib.experiments.claims.ordering_statement`.)"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .methods import row_label


def comparison_figure(table: pd.DataFrame, title: str, value: str = "rmse_mm"):
    """Horizontal bars of ``<value>_mean`` +- ``<value>_std`` per row (ours), with the paper's number per row as a
    diamond on a second, labelled axis scale (same mm units; the paper's data are different)."""
    labels = [row_label(row) for _, row in table.iterrows()]
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(table) + 1.4))
    ax.barh(y, table[f"{value}_mean"], xerr=table[f"{value}_std"], color="tab:blue", alpha=0.75,
            label=f"ours ({table['profile'].iloc[0]} profile, synthetic data)")
    if "paper_rmse_mm" in table and table["paper_rmse_mm"].notna().any() and value == "rmse_mm":
        ax.scatter(table["paper_rmse_mm"], y, marker="D", color="tab:red", zorder=3,
                   label="paper (its datasets, BFM09)")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{value.replace('_mm', '')} (mm), mean +- std over test samples")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def sensitivity_figure(sweeps: pd.DataFrame):
    """One panel per swept weight (column ``weight``): rmse mean +- std against the weight's value."""
    names = list(dict.fromkeys(sweeps["weight"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        part = sweeps[sweeps["weight"] == name].sort_values("value")
        ax.errorbar(part["value"], part["rmse_mm_mean"], yerr=part["rmse_mm_sem"], marker="o", capsize=3)
        best = part.loc[part["rmse_mm_mean"].idxmin()]
        ax.axvline(best["value"], color="grey", ls="--", lw=0.8)
        ax.set_xlabel(f"w_{name[0]} ({name} loss weight)")
        ax.set_ylabel("rmse (mm)")
        ax.set_title(f"best {name} weight: {best['value']:g}", fontsize=9)
    fig.tight_layout()
    return fig


def error_map_figure(results: dict, title: str, limit_mm: float | None = None):
    """Per-point |distance| maps on the cropped ground truth, one panel per method (``{label:
    ReconstructionError}``), drawn on the GT triangles seen from the front (x right, y up)."""
    import matplotlib.tri as mtri

    labels = list(results)
    values = [np.abs(results[label].distances) for label in labels]
    limit = limit_mm or float(np.percentile(np.concatenate(values), 98))
    fig, axes = plt.subplots(1, len(labels), figsize=(3.0 * len(labels), 3.5), squeeze=False)
    for ax, label, distances in zip(axes[0], labels, values):
        result = results[label]
        points = np.asarray(result.gt_points)
        if result.gt_triangles is not None and len(result.gt_triangles):
            triangulation = mtri.Triangulation(points[:, 0], points[:, 1], np.asarray(result.gt_triangles))
            image = ax.tripcolor(triangulation, distances, shading="gouraud", cmap="inferno", vmin=0, vmax=limit)
        else:
            image = ax.scatter(points[:, 0], points[:, 1], c=distances, s=1, cmap="inferno", vmin=0, vmax=limit)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{label}\nrmse {result.rmse_mm:.2f} mm", fontsize=8)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="|point-to-plane distance| (mm)")
    fig.suptitle(title, fontsize=9)
    return fig


__all__ = ["comparison_figure", "error_map_figure", "sensitivity_figure"]
