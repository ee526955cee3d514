"""Anthropometric measurements of a face mesh from its 68 iBUG landmark vertices (millimetres).

Used to check that a model has human proportions (notebook 00, tests). The norms are adult averages from the
anthropometric literature (Farkas), rounded; they are targets for the embedded procedural model, not ground truth.
A second reference is the BFM09 front model's mean face measured with these same landmark definitions
(:data:`BFM09_MEAN_MM`); landmark-based distances differ from caliper anthropometry (iBUG 0-16 lie on the jaw
contour, iBUG 31-35 on the nostril base rather than the widest point of the alae).
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
    "nostril_base_width": ("outer ends of the nostril base, iBUG 31-35 (narrower than the alar width, ~35 mm)", 25.0),
    "nose_protrusion": ("nose tip (iBUG 30) in front of subnasale (iBUG 33), along z", 20.0),
    "mouth_width": ("mouth corners, iBUG 48-54", 50.0),
}

# The same measurements on the BFM09 front model's mean face (Deep3D.obj with Deep3D's 68 keypoints), in mm.
BFM09_MEAN_MM = {
    "face_width": 146.1, "nasion_chin": 113.1, "biocular_width": 86.3, "intercanthal_width": 38.0,
    "eye_fissure_length": 24.8, "nose_height": 45.9, "nostril_base_width": 23.8, "nose_protrusion": 15.7,
    "mouth_width": 50.1,
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
        "nostril_base_width": distance(31, 35),
        "nose_protrusion": float(points[30, 2] - points[33, 2]),
        "mouth_width": distance(48, 54),
    }


def measurement_table(vertices, landmark_68) -> "pandas.DataFrame":  # noqa: F821
    """:func:`anthropometric_measurements` next to the references: columns measurement, description, measured_mm,
    norm_mm, ratio (measured / norm), bfm09_mean_mm."""
    import pandas as pd  # here: pandas takes ~1 s to import and only this table needs it

    measured = anthropometric_measurements(vertices, landmark_68)
    rows = [(name, description, measured[name], norm, measured[name] / norm, BFM09_MEAN_MM[name])
            for name, (description, norm) in ANTHROPOMETRIC_NORMS_MM.items()]
    return pd.DataFrame(rows, columns=["measurement", "description", "measured_mm", "norm_mm", "ratio",
                                       "bfm09_mean_mm"])
