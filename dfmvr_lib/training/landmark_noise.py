"""2D landmark targets with a landmark detector's error.

The paper's 2D landmarks come from a detector (FAN) run on the photos; the synthetic benchmark's are exact
projections. :func:`perturb_landmarks` adds the error of a detector to them: independent isotropic Gaussian noise
per landmark and view whose mean length is ``nme`` times the face's outer-eye-corner distance (iBUG 36 - 45) in
the front view of the triplet (the normalisation of the 300-W NME; the front view's distance is the face's size in
the image, the same in all three views at the benchmark's fixed camera distance).

The default, :data:`OFFLINE_DETECTOR_NME` = 0.028, is what the workbook's offline detector (dlib's 68 points)
measured on the real-photo fixture with a ground-truth annotation (`results/benchmarks/landmarks_nme.md`: NME
0.0277). The noise is drawn once per sample from a generator seeded by (``seed``, sample index), as a detector
gives one answer per image: every epoch, method and training seed sees the same noisy landmarks.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from .data import TripletTensors

OFFLINE_DETECTOR_NME = 0.028
"""NME of the offline (dlib) detector on the real-photo fixture (0.0277, benchmarks/bench_landmarks.py)."""
OUTER_EYE_CORNERS = (36, 45)
FRONT_VIEW = 1


def interocular_pixels(landmarks_2d: torch.Tensor, view: int = FRONT_VIEW) -> torch.Tensor:
    """(M, S, 68, 2) pixels -> (M,) outer-eye-corner distance in ``view``."""
    left, right = OUTER_EYE_CORNERS
    return torch.linalg.vector_norm(landmarks_2d[:, view, left] - landmarks_2d[:, view, right], dim=-1)


def normalised_mean_error(predicted: torch.Tensor, target: torch.Tensor,
                          visibility: torch.Tensor | None = None) -> float:
    """NME: mean landmark distance (over visible landmarks of all views) divided by the front view's
    outer-eye-corner distance of ``target``; (M, S, 68, 2) each, ``visibility`` (M, S, 68) bool."""
    distance = torch.linalg.vector_norm(predicted - target, dim=-1) / interocular_pixels(target)[:, None, None]
    if visibility is None:
        return float(distance.mean())
    return float(distance[visibility].mean())


def perturb_landmarks(landmarks_2d: torch.Tensor, nme: float, seed: int = 0) -> torch.Tensor:
    """``landmarks_2d`` (M, S, 68, 2) pixels plus Gaussian noise of mean length ``nme`` x the front view's
    outer-eye-corner distance (the per-axis std is that length / sqrt(pi / 2), the mean of a 2D Gaussian's
    length). ``nme`` 0 returns the landmarks unchanged."""
    if nme < 0:
        raise ValueError(f"perturb_landmarks: nme must be >= 0, got {nme}")
    if nme == 0:
        return landmarks_2d
    M = landmarks_2d.shape[0]
    sigma = nme * interocular_pixels(landmarks_2d) / math.sqrt(math.pi / 2)                        # (M,)
    noise = torch.empty_like(landmarks_2d)
    for index in range(M):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        noise[index] = torch.randn(landmarks_2d.shape[1:], generator=generator, dtype=landmarks_2d.dtype)
    return landmarks_2d + noise * sigma[:, None, None, None]


def with_landmark_noise(data: TripletTensors, nme: float, seed: int = 0) -> TripletTensors:
    """``data`` with :func:`perturb_landmarks` applied to its 2D landmarks (unchanged for ``nme`` 0)."""
    if nme == 0:
        return data
    return dataclasses.replace(data, landmarks_2d=perturb_landmarks(data.landmarks_2d, nme, seed))


__all__ = ["OFFLINE_DETECTOR_NME", "interocular_pixels", "normalised_mean_error", "perturb_landmarks",
           "with_landmark_noise"]
