"""Figures: renders with landmark and part-label overlays, grids of random faces, atomic saving.

Functions return matplotlib Figures; saving is :func:`save_figure`'s job (atomic write).
"""
from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt  # headless: matplotlib picks Agg by itself; notebooks: inline
import numpy as np
import torch

from .camera import PerspectiveCamera
from .face_model.base import PART_COLOURS, PART_NAMES
from .provenance import atomic_path
from .scene import FaceRender, random_coefficients, render_faces


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) float numpy array clipped to [0, 1]."""
    return image.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()


def part_label_image(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W) part labels -> (H, W, 3) colours (see :data:`dfmvr_lib.face_model.PART_COLOURS`)."""
    return PART_COLOURS[np.asarray(torch.as_tensor(labels).cpu())]


def add_part_legend(fig, fontsize: int = 7) -> None:
    """A legend of the 9 face-part colours along the bottom of ``fig``."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=PART_COLOURS[k]) for k in range(1, len(PART_NAMES))]
    fig.legend(handles, PART_NAMES[1:], loc="lower center", ncol=5, fontsize=fontsize, frameon=False)


def views_overlay_figure(images, landmarks_2d, landmark_visibility, parse_maps,
                         view_names=("A (left)", "B (front)", "C (right)"), title: str | None = None):
    """Views in three rows: the image, the image with its 68 landmarks (hidden ones hollow red), and the part-label
    map blended over the image.

    Args:
        images: (S, 3, H, W) in [0, 1]; landmarks_2d: (S, 68, 2) pixels; landmark_visibility: (S, 68) bool;
        parse_maps: (S, H, W) part labels.
    """
    images = torch.as_tensor(images)
    landmarks = torch.as_tensor(landmarks_2d).detach().cpu().numpy()
    visibility = torch.as_tensor(landmark_visibility).cpu().numpy()
    views = images.shape[0]
    H, W = images.shape[-2:]
    fig, axes = plt.subplots(3, views, figsize=(2.6 * views, 7.6), squeeze=False)
    for v in range(views):
        picture = to_numpy_image(images[v])
        axes[0, v].imshow(picture)
        axes[0, v].set_title(view_names[v] if v < len(view_names) else f"view {v}", fontsize=9)
        axes[1, v].imshow(picture)
        visible = visibility[v]
        axes[1, v].scatter(landmarks[v, visible, 0], landmarks[v, visible, 1], s=6, c="lime")
        axes[1, v].scatter(landmarks[v, ~visible, 0], landmarks[v, ~visible, 1], s=6, facecolors="none",
                           edgecolors="red", linewidths=0.6)
        axes[2, v].imshow(0.45 * picture + 0.55 * part_label_image(parse_maps[v]))
        for ax in axes[:, v]:
            ax.set_xlim(0, W)
            ax.set_ylim(H, 0)
            ax.axis("off")
    axes[1, 0].text(0, -2, "68 landmarks (hollow red: hidden)", fontsize=8)
    add_part_legend(fig)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93 if title else 0.96, bottom=0.06, wspace=0.03, hspace=0.05)
    return fig


def render_overlay_figure(faces: FaceRender, sample: int = 0, **kwargs):
    """:func:`views_overlay_figure` for one sample of a :class:`~dfmvr_lib.scene.FaceRender` (landmark visibility
    from :meth:`~dfmvr_lib.scene.FaceRender.landmark_visibility`)."""
    return views_overlay_figure(faces.views("image")[sample], faces.landmarks_2d[sample],
                                faces.landmark_visibility()[sample], faces.views("part_labels")[sample], **kwargs)


def sample_overlay_figure(sample, **kwargs):
    """:func:`views_overlay_figure` for a :class:`dfmvr_lib.data.MultiViewSample` (titled with its ids)."""
    kwargs.setdefault("title", f"subject {sample.subject_id}, sample {sample.sample_id}")
    return views_overlay_figure(sample.images, sample.landmarks_2d, sample.landmark_visibility, sample.parse_maps,
                                **kwargs)


def triplet_grid_figure(dataset, count: int = 6, title: str | None = None, view_names=("A", "B", "C")):
    """The first ``count`` samples of a multi-view dataset, one row each: its views side by side, labelled with the
    subject and the views' yaw when the dataset records it (``extras["nominal_yaw_degrees"]``)."""
    count = min(count, len(dataset))
    samples = [dataset[i] for i in range(count)]
    views = samples[0].images.shape[0] if samples else 3
    fig, axes = plt.subplots(count, views, figsize=(1.9 * views, 1.9 * count + 0.4), squeeze=False)
    for row, sample in enumerate(samples):
        yaws = sample.extras.get("nominal_yaw_degrees")
        for v in range(views):
            ax = axes[row, v]
            ax.imshow(to_numpy_image(sample.images[v]))
            ax.axis("off")
            label = view_names[v] if v < len(view_names) else str(v)
            if yaws is not None:
                label += f" {float(yaws[v]):+.0f}\u00b0"
            ax.set_title(f"{sample.subject_id} {label}" if v == 0 else label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1.0 - 0.6 / (1.9 * count + 0.4), wspace=0.03,
                        hspace=0.2)
    return fig


def random_faces_figure(model, n_faces: int = 12, yaws_degrees=(-45, 0, 45), image_size: int = 224, seed: int = 0,
                        with_expressions: bool = True, background=(1.0, 1.0, 1.0)):
    """``n_faces`` random faces (identity, expression, albedo ~ N(0, 1), random light) at ``yaws_degrees``.

    Faces are laid out in a compact grid, several faces per row with their views side by side.
    """
    generator = torch.Generator().manual_seed(int(seed))
    yaws = torch.tensor([math.radians(a) for a in yaws_degrees])
    coefficients = random_coefficients(model, n_faces, yaws, generator,
                                       expression_scale=1.0 if with_expressions else 0.0)
    camera = PerspectiveCamera.for_image_size(image_size)
    with torch.no_grad():
        images = render_faces(model, coefficients, camera, background=background).views("image")
    n_views = len(yaws_degrees)
    faces_per_row = 1 if n_faces < 4 else (2 if n_faces < 9 else 3)
    rows = int(math.ceil(n_faces / faces_per_row))
    cols = faces_per_row * n_views
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.6 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n_faces):
        r, first = divmod(i, faces_per_row)
        for v in range(n_views):
            ax = axes[r, first * n_views + v]
            ax.imshow(to_numpy_image(images[i, v]))
            if r == 0:
                ax.set_title(f"yaw {yaws_degrees[v]:+g}\u00b0", fontsize=7)
    kind = "identity, expression and albedo" if with_expressions else "identity and albedo"
    fig.suptitle(f"{model.name}: {n_faces} random faces ({kind} ~ N(0, 1)), {image_size} px", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1.0 - 0.5 / (rows * 1.6 + 0.4), wspace=0.02,
                        hspace=0.02)
    return fig


def save_figure(fig, path, dpi: int = 150) -> None:
    """Write ``fig`` to ``path`` atomically; the format follows the suffix (default PNG)."""
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=dpi, format=suffix, bbox_inches="tight")   # legends placed outside the axes included
