"""Bringing a predicted mesh into the ground-truth frame: a landmark similarity, then rigid ICP.

1. **Landmarks** (rigid + scale): the Umeyama similarity ``gt ~ s R pred + t`` fitted on the 7 corresponding
   alignment landmarks (:func:`dfmvr_lib.similarity.similarity_transform`).
2. **ICP** (rigid, no scale), open3d point-to-plane. Direction: the *cropped ground-truth points are the source*
   and the *aligned prediction (vertices with their vertex normals) is the target*. Reasons:

   - the residual ICP minimises, the distance from a GT point to the tangent plane of the prediction, is the very
     per-point error the protocol reports (GT points -> prediction), so ICP refines the quantity being measured;
   - every cropped GT point has the prediction around it, whereas a prediction usually covers more than the crop
     (ears, neck, forehead) and its extra vertices would be pulled towards the crop border in the other direction;
   - normals are needed on the target only, and the prediction is a mesh whose normals are exact, while a GT may be
     a bare point cloud (Bosphorus) whose normals would have to be estimated.

   open3d returns the rigid motion ``T`` that moves the GT onto the prediction; the prediction is moved by
   ``T^-1`` instead, so the GT points, and the error maps drawn on them, stay in the scan's own frame.

   No scale in ICP: the scale is fixed by the 7 landmarks, as in the paper's "rigid (+scale) alignment on the 7
   landmarks, then ICP refinement". A scale free in ICP could also shrink or grow the prediction to hide a wrong
   face size, which is part of what the error should measure; open3d's point-to-plane estimator is rigid anyway.

Units: mm. Transforms act on row vectors as ``p' = scale * p @ rotation.T + translation``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch

from ..similarity import similarity_transform


@dataclass(frozen=True)
class SimilarityTransform:
    """``p' = scale * rotation @ p + translation`` (scale > 0, rotation (3, 3) with det +1, translation (3,) mm).

    The numpy counterpart of :func:`dfmvr_lib.similarity.apply_similarity` for one unbatched transform.
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> "SimilarityTransform":
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points; returns (N, 3) float64."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def then(self, other: "SimilarityTransform") -> "SimilarityTransform":
        """The composition "first ``self``, then ``other``"."""
        return SimilarityTransform(scale=other.scale * self.scale, rotation=other.rotation @ self.rotation,
                                   translation=other.scale * other.rotation @ self.translation + other.translation)

    def inverse(self) -> "SimilarityTransform":
        rotation = self.rotation.T
        return SimilarityTransform(1.0 / self.scale, rotation, -(rotation @ self.translation) / self.scale)

    def matrix(self) -> np.ndarray:
        """The (4, 4) homogeneous matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.scale * self.rotation
        matrix[:3, 3] = self.translation
        return matrix


@dataclass(frozen=True)
class IcpResult:
    """Outcome of :func:`refine_with_icp`.

    Attributes:
        transform: the rigid motion (scale 1) to apply to the *prediction* (after the landmark alignment).
        fitness: fraction of the ICP source points (GT) with a correspondence within the maximum distance, at the end.
        inlier_rmse_mm: open3d's ``inlier_rmse`` at the end: RMS distance (mm) from those GT points to their nearest
            prediction *vertex* (point-to-vertex, so it is larger than the point-to-plane error on a coarse mesh).
        source_points: how many GT points ICP used (after the optional subsampling).
    """

    transform: SimilarityTransform
    fitness: float
    inlier_rmse_mm: float
    source_points: int


def align_landmarks(predicted_landmarks: np.ndarray, gt_landmarks: np.ndarray) -> SimilarityTransform:
    """Least-squares similarity taking the predicted landmarks (P, 3) onto the GT landmarks (P, 3), mm."""
    source = torch.from_numpy(np.asarray(predicted_landmarks, dtype=np.float64))[None]
    target = torch.from_numpy(np.asarray(gt_landmarks, dtype=np.float64))[None]
    with torch.no_grad():
        scale, rotation, translation = similarity_transform(source, target)
    return SimilarityTransform(float(scale[0]), rotation[0].numpy().copy(), translation[0].numpy().copy())


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V, 3) unit vertex normals of a mesh (open3d: normalised sum of the unit normals of the triangles around each
    vertex, counter-clockwise triangles give outward normals); vertices in no triangle get (0, 0, 0)."""
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(
        np.ascontiguousarray(triangles, dtype=np.int32)))
    mesh.compute_vertex_normals(normalized=True)
    normals = np.asarray(mesh.vertex_normals)
    return np.nan_to_num(normals, nan=0.0)


def refine_with_icp(gt_points: np.ndarray, predicted_vertices: np.ndarray, predicted_normals: np.ndarray, *,
                    max_correspondence_mm: float = 10.0, max_iterations: int = 30,
                    max_source_points: int | None = 10000, seed: int = 0) -> IcpResult:
    """Rigid point-to-plane ICP between the cropped GT points (source) and the prediction (target); see the module.

    Args:
        gt_points: (n, 3) cropped GT points, mm.
        predicted_vertices: (V, 3) prediction already aligned on the landmarks, mm.
        predicted_normals: (V, 3) unit vertex normals of the prediction.
        max_correspondence_mm: pairs farther apart than this are ignored (outliers, parts the other surface lacks).
        max_iterations: ICP iterations at most (it also stops when fitness and RMSE change by < 1e-6 relative).
        max_source_points: when the crop has more points, ICP uses this many of them, drawn at random (fixed
            ``seed``), for speed; the final distances always use every cropped point. None uses all.
    Returns:
        :class:`IcpResult` whose ``transform`` moves the prediction (the inverse of open3d's GT -> prediction motion).
    """
    source_points = gt_points
    if max_source_points is not None and gt_points.shape[0] > max_source_points:
        choice = np.random.default_rng(seed).choice(gt_points.shape[0], max_source_points, replace=False)
        source_points = gt_points[np.sort(choice)]
    # work about the GT centroid: smaller coordinates, and rotations about the face rather than a far-away origin
    origin = source_points.mean(axis=0)
    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source_points - origin))
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(predicted_vertices - origin))
    target.normals = o3d.utility.Vector3dVector(predicted_normals)
    registration = o3d.pipelines.registration
    result = registration.registration_icp(
        source, target, max_correspondence_mm, np.eye(4), registration.TransformationEstimationPointToPlane(),
        registration.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=max_iterations))
    matrix = np.asarray(result.transformation)
    # gt' = R (gt - o) + t + o moves the GT; the prediction moves by the inverse about the same origin
    rotation, translation = matrix[:3, :3], matrix[:3, 3]
    gt_motion = SimilarityTransform(1.0, rotation.copy(), translation + origin - rotation @ origin)
    return IcpResult(transform=gt_motion.inverse(), fitness=float(result.fitness),
                     inlier_rmse_mm=float(result.inlier_rmse), source_points=int(source_points.shape[0]))
