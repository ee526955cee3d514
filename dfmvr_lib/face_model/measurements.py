"""Anthropometric measurements of a face mesh from its 68 iBUG landmark vertices (millimetres).

Used to check that a model has human proportions (notebook 00, tests). The norms are adult averages from the
anthropometric literature (Farkas), rounded; they are targets for the embedded procedural model, not ground truth.
"""
from __future__ import annotations

import numpy as np
import torch

# name -> (description, typical adult value in mm)
ANTHROPOMETRIC_NORMS_MM = {
    "face_width": ("jaw-contour width at eye level, iBUG 0-16 (about the bizygomatic width)", 135.0),
    "nasion_chin": ("nasion (iBUG 27) to chin (iBUG 8)", 120.0),
    "biocular_width": ("outer eye corners, iBUG 36-45", 90.0),
    "intercanthal_width": ("inner eye corners, iBUG 39-42", 32.0),
    "eye_fissure_length": ("eye corner to corner, mean of iBUG 36-39 and 42-45", 30.0),
    "nose_height": ("nasion (iBUG 27) to subnasale (iBUG 33)", 52.0),
    "alar_width": ("widest points of the nostrils, iBUG 31-35", 35.0),
    "nose_protrusion": ("nose tip (iBUG 30) in front of subnasale (iBUG 33), along z", 20.0),
    "mouth_width": ("mouth corners, iBUG 48-54", 50.0),
}


def anthropometric_measurements(vertices: torch.Tensor | np.ndarray, landmark_68) -> dict[str, float]:
    """Measure a face.

    Args:
        vertices: (V, 3) head-frame vertices in mm (unposed: z towards the camera).
        landmark_68: (68,) vertex ids in iBUG order.
    Returns:
        ``{name: millimetres}`` for every key of :data:`ANTHROPOMETRIC_NORMS_MM`.
    """
    points = np.asarray(torch.as_tensor(vertices).detach().cpu(), dtype=np.float64)[np.asarray(landmark_68)]
    if points.shape != (68, 3):
        raise ValueError(f"need (V, 3) vertices and 68 landmark ids, got landmark points of shape {points.shape}")

    def distance(a: int, b: int) -> float:
        return float(np.linalg.norm(points[a] - points[b]))

    return {
        "face_width": distance(0, 16),
        "nasion_chin": distance(27, 8),
        "biocular_width": distance(36, 45),
        "intercanthal_width": distance(39, 42),
        "eye_fissure_length": 0.5 * (distance(36, 39) + distance(42, 45)),
        "nose_height": distance(27, 33),
        "alar_width": distance(31, 35),
        "nose_protrusion": float(points[30, 2] - points[33, 2]),
        "mouth_width": distance(48, 54),
    }


def measurement_table(vertices, landmark_68) -> "pandas.DataFrame":  # noqa: F821
    """:func:`anthropometric_measurements` next to the norms: columns measurement, description, measured_mm,
    norm_mm, ratio."""
    import pandas as pd

    measured = anthropometric_measurements(vertices, landmark_68)
    rows = [(name, description, measured[name], norm, measured[name] / norm)
            for name, (description, norm) in ANTHROPOMETRIC_NORMS_MM.items()]
    return pd.DataFrame(rows, columns=["measurement", "description", "measured_mm", "norm_mm", "ratio"])
