"""DF-MVR's reconstruction error (spec section 4): crop, align, measure, summarise.

    1. crop the GT scan to the front-face ball (:mod:`.crop`),
    2. align the prediction on the 7 landmarks (similarity), then refine with rigid point-to-plane ICP, GT points
       -> prediction (:mod:`.registration`),
    3. the signed point-to-plane distance d from every cropped GT point to the prediction (:mod:`.distances`),
    4. rmse_mm = sqrt(mean d^2) (the paper's "RMSE"), mean_mm = mean |d| (the public code's number, NoW-style),
       std_mm = standard deviation of |d| (population, ddof 0).

The GT may be a mesh or a bare point cloud (Bosphorus): only its points are measured, so its triangles are optional
and serve for drawing error maps on the crop. The paper meshes Bosphorus scans by Delaunay triangulation before
evaluating (:func:`dfmvr_lib.data.bosphorus.delaunay_mesh`); with distances taken from GT points, the meshing does
not change the numbers.

Everything is in mm, in the GT scan's frame (the prediction is moved, never the GT).

ICP minimises the very distance that is reported, so the protocol measures shape rather than placement: a
prediction whose only error is a uniform offset along its normals loses most of that error to an ICP translation on
an open face patch (a closed surface keeps it; the tests show both). ``icp=False`` gives the landmark-only number.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .registration import SimilarityTransform, align_landmarks, refine_with_icp, vertex_normals
from .crop import CropSphere, crop_front_face
from .distances import point_to_mesh_distances
from .input_checks import as_labels, as_points, as_positive, as_triangles


@dataclass(frozen=True)
class ErrorSummary:
    """Summary statistics of per-point distances d (mm): ``n_points``, ``rmse_mm`` = sqrt(mean d^2),
    ``mean_mm`` = mean |d|, ``std_mm`` = std |d| (ddof 0), ``median_mm`` = median |d|."""

    n_points: int
    rmse_mm: float
    mean_mm: float
    std_mm: float
    median_mm: float

    @classmethod
    def of(cls, distances: np.ndarray) -> "ErrorSummary":
        distances = np.asarray(distances, dtype=np.float64)
        if distances.size == 0:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        absolute = np.abs(distances)
        return cls(n_points=int(distances.size), rmse_mm=float(np.sqrt(np.mean(distances ** 2))),
                   mean_mm=float(absolute.mean()), std_mm=float(absolute.std()), median_mm=float(np.median(absolute)))


@dataclass(frozen=True)
class ReconstructionError:
    """The reconstruction error of one predicted mesh against one GT scan.

    Attributes:
        rmse_mm, mean_mm, std_mm, median_mm, n_points: :class:`ErrorSummary` of ``distances``.
        distances: (n,) float64 mm, signed point-to-plane distance of each cropped GT point to the aligned
            prediction (> 0: the GT point is outside the predicted surface).
        surface_distances: (n,) float64 mm, Euclidean distance of each cropped GT point to the closest point of the
            aligned prediction (>= |distances|).
        gt_points: (n, 3) float64 mm, the cropped GT points (GT frame), ``gt_indices`` (n,) their rows in the input.
        gt_triangles: (m, 3) int64 into ``gt_points`` (GT triangles inside the crop), or None for a point cloud.
        transform: the similarity applied to the predicted vertices (landmarks, then ICP): ``aligned = transform.apply
            (predicted_vertices)``; ``landmark_transform`` and ``icp_transform`` are its two steps.
        aligned_vertices: (V, 3) float64 mm, the prediction in the GT frame.
        crop: the :class:`CropSphere` (centre, radius) used.
        icp_fitness, icp_inlier_rmse_mm: open3d's ICP diagnostics (NaN when ICP was off), see :class:`IcpResult`.
        landmark_residual_mm: mean distance between the aligned predicted landmarks and the GT landmarks.
        regions: (n,) labels of the cropped points, or None; ``region_errors``: label -> :class:`ErrorSummary`.
        timings_s: seconds spent in "crop", "alignment" (landmarks), "icp" and "distances".
    """

    rmse_mm: float
    mean_mm: float
    std_mm: float
    median_mm: float
    n_points: int
    distances: np.ndarray
    surface_distances: np.ndarray
    gt_points: np.ndarray
    gt_indices: np.ndarray
    gt_triangles: np.ndarray | None
    transform: SimilarityTransform
    landmark_transform: SimilarityTransform
    icp_transform: SimilarityTransform
    aligned_vertices: np.ndarray
    crop: CropSphere | None
    icp_fitness: float
    icp_inlier_rmse_mm: float
    landmark_residual_mm: float
    regions: np.ndarray | None = None
    region_errors: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """The scalar columns of one row of :func:`errors_table`."""
        return {"rmse_mm": self.rmse_mm, "mean_mm": self.mean_mm, "std_mm": self.std_mm,
                "median_mm": self.median_mm, "n_points": self.n_points, "scale": self.transform.scale,
                "landmark_residual_mm": self.landmark_residual_mm, "icp_fitness": self.icp_fitness,
                "crop_radius_mm": self.crop.radius if self.crop is not None else float("nan")}


def evaluate_reconstruction(predicted_vertices: Any, predicted_triangles: Any, predicted_landmarks_7: Any,
                            gt_vertices: Any, gt_triangles: Any, gt_landmarks_7: Any, *,
                            crop: bool = True, icp: bool = True, max_correspondence_mm: float = 10.0,
                            icp_iterations: int = 30, icp_max_points: int | None = 10000,
                            gt_region_labels: Any = None) -> ReconstructionError:
    """The DF-MVR reconstruction error of one prediction against one GT scan (module text gives the protocol).

    Args:
        predicted_vertices: (V, 3) predicted mesh, mm, any frame (numpy or torch).
        predicted_triangles: (F, 3) int, counter-clockwise seen from outside (the sign of d depends on it).
        predicted_landmarks_7: (7, 3) mm, the prediction's alignment landmarks (e.g.
            ``predicted_vertices[model.alignment_7]``), project order: left-eye outer, left-eye inner, right-eye
            inner, right-eye outer, nose tip, left mouth corner, right mouth corner.
        gt_vertices: (N, 3) GT scan vertices or point cloud, mm.
        gt_triangles: (M, 3) int GT triangles, or None for a point cloud.
        gt_landmarks_7: (7, 3) mm, the GT's alignment landmarks, same order.
        crop: crop the GT to the front-face ball (False: use every GT point, for a GT that is already cropped).
        icp: refine the landmark alignment with rigid point-to-plane ICP (GT points -> prediction).
        max_correspondence_mm: ICP ignores pairs farther apart than this (mm).
        icp_iterations: ICP iterations at most.
        icp_max_points: ICP uses at most this many cropped GT points (random, fixed seed) for speed; the
            distances always use all of them. None: all.
        gt_region_labels: optional (N,) label per GT point (e.g. face-part ids) for a per-region summary.
    Returns:
        :class:`ReconstructionError`.
    Raises:
        ValueError naming the argument for wrong shapes, NaN / infinity, indices out of range, or a crop that keeps
        no GT point.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    predicted_vertices = as_points(predicted_vertices, "predicted_vertices", min_count=3)
    predicted_triangles = as_triangles(predicted_triangles, "predicted_triangles", predicted_vertices.shape[0])
    predicted_landmarks = as_points(predicted_landmarks_7, "predicted_landmarks_7", count=7)
    gt_vertices = as_points(gt_vertices, "gt_vertices")
    gt_landmarks = as_points(gt_landmarks_7, "gt_landmarks_7", count=7)
    if gt_triangles is not None:
        gt_triangles = as_triangles(gt_triangles, "gt_triangles", gt_vertices.shape[0])
    if gt_region_labels is not None:
        gt_region_labels = as_labels(gt_region_labels, "gt_region_labels", gt_vertices.shape[0])
    max_correspondence_mm = as_positive(max_correspondence_mm, "max_correspondence_mm")
    if int(icp_iterations) < 1:
        raise ValueError(f"icp_iterations must be >= 1, got {icp_iterations!r}")
    gt_points, gt_indices, kept_triangles, sphere = _ground_truth_points(gt_vertices, gt_triangles, gt_landmarks,
                                                                         crop)
    timings["crop"] = time.perf_counter() - start

    start = time.perf_counter()
    landmark_transform = align_landmarks(predicted_landmarks, gt_landmarks)
    aligned = landmark_transform.apply(predicted_vertices)
    landmark_residual = float(np.linalg.norm(landmark_transform.apply(predicted_landmarks) - gt_landmarks,
                                             axis=1).mean())
    timings["alignment"] = time.perf_counter() - start

    start = time.perf_counter()
    icp_transform, fitness, inlier_rmse = SimilarityTransform.identity(), float("nan"), float("nan")
    if icp:
        refinement = refine_with_icp(gt_points, aligned, vertex_normals(aligned, predicted_triangles),
                                     max_correspondence_mm=max_correspondence_mm,
                                     max_iterations=int(icp_iterations), max_source_points=icp_max_points)
        icp_transform, fitness, inlier_rmse = refinement.transform, refinement.fitness, refinement.inlier_rmse_mm
        aligned = icp_transform.apply(aligned)
    timings["icp"] = time.perf_counter() - start

    start = time.perf_counter()
    measured = point_to_mesh_distances(gt_points, aligned, predicted_triangles)
    summary = ErrorSummary.of(measured.signed_plane)
    regions = gt_region_labels[gt_indices] if gt_region_labels is not None else None
    region_errors = _region_summaries(regions, measured.signed_plane) if regions is not None else {}
    timings["distances"] = time.perf_counter() - start

    return ReconstructionError(
        rmse_mm=summary.rmse_mm, mean_mm=summary.mean_mm, std_mm=summary.std_mm, median_mm=summary.median_mm,
        n_points=summary.n_points, distances=measured.signed_plane, surface_distances=measured.surface,
        gt_points=gt_points, gt_indices=gt_indices, gt_triangles=kept_triangles,
        transform=landmark_transform.then(icp_transform), landmark_transform=landmark_transform,
        icp_transform=icp_transform, aligned_vertices=aligned, crop=sphere, icp_fitness=fitness,
        icp_inlier_rmse_mm=inlier_rmse, landmark_residual_mm=landmark_residual, regions=regions,
        region_errors=region_errors, timings_s=timings)


def _ground_truth_points(gt_vertices: np.ndarray, gt_triangles: np.ndarray | None, gt_landmarks: np.ndarray,
                         crop: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, CropSphere | None]:
    """The GT points that are measured: ``(points (n, 3) mm, their rows (n,) in gt_vertices, triangles (m, 3) into
    points or None, the crop sphere or None)``; the front-face crop when ``crop``, else every vertex. ValueError
    when the crop keeps no point."""
    if not crop:
        return gt_vertices, np.arange(gt_vertices.shape[0]), gt_triangles, None
    front = crop_front_face(gt_vertices, gt_landmarks, gt_triangles)
    if front.points.shape[0] == 0:
        centre = np.round(front.sphere.centre, 2).tolist()
        raise ValueError(f"gt_vertices: the front-face crop (centre {centre} mm, radius {front.sphere.radius:.2f} "
                         "mm from gt_landmarks_7) keeps no point")
    return front.points, front.indices, front.triangles, front.sphere


def _region_summaries(regions: np.ndarray, distances: np.ndarray) -> dict:
    """``{label: ErrorSummary}`` of the distances (n,) per region label (n,), labels in order of first appearance
    (numpy scalars as Python values)."""
    summaries = {}
    for label in pd.unique(regions):
        summaries[label.item() if hasattr(label, "item") else label] = ErrorSummary.of(distances[regions == label])
    return summaries


def _check_ids(results: Sequence[ReconstructionError], ids: Sequence[Any] | None) -> list:
    results = list(results)
    if ids is None:
        return list(range(len(results)))
    ids = list(ids)
    if len(ids) != len(results):
        raise ValueError(f"ids must have one entry per result: {len(ids)} ids for {len(results)} results")
    return ids


def errors_table(results: Sequence[ReconstructionError], ids: Sequence[Any] | None = None) -> pd.DataFrame:
    """A tidy table, one row per sample: ``sample`` (the id), rmse_mm, mean_mm, std_mm, median_mm, n_points, scale
    (of the landmark similarity), landmark_residual_mm, icp_fitness, crop_radius_mm. ``ids`` default to 0..n-1."""
    ids = _check_ids(results, ids)
    columns = ["sample", "rmse_mm", "mean_mm", "std_mm", "median_mm", "n_points", "scale", "landmark_residual_mm",
               "icp_fitness", "crop_radius_mm"]
    rows = [{"sample": sample, **result.summary()} for sample, result in zip(ids, results)]
    return pd.DataFrame(rows, columns=columns)


def region_errors_table(results: Sequence[ReconstructionError], ids: Sequence[Any] | None = None) -> pd.DataFrame:
    """A tidy table, one row per (sample, region): ``sample``, ``region``, n_points, rmse_mm, mean_mm, std_mm,
    median_mm; empty when no result was evaluated with ``gt_region_labels``."""
    ids = _check_ids(results, ids)
    rows = [{"sample": sample, "region": region, **vars(summary)}
            for sample, result in zip(ids, results) for region, summary in result.region_errors.items()]
    return pd.DataFrame(rows, columns=["sample", "region", "n_points", "rmse_mm", "mean_mm", "std_mm", "median_mm"])
