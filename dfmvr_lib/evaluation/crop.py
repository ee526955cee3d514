"""The front-face crop of a ground-truth scan (DF-MVR spec, section 4).

The scan is cut to a ball whose centre and radius come from the 7 alignment landmarks (project order, see
``MorphableModelData.alignment_7`` and docs/conventions.md): 0 left-eye outer, 1 left-eye inner, 2 right-eye inner,
3 right-eye outer, 4 nose tip, 5 left mouth corner, 6 right mouth corner.

    inner-eye midpoint   m = (l[1] + l[2]) / 2
    centre               c = nose + 0.3 (m - nose)
    outer-eye distance   e = |l[0] - l[3]|
    nose distance        n = |nose - m|          (nose tip to the inner-eye midpoint: the length of the nose)
    radius               r = 1.4 (e + n) / 2

"Nose distance" is not defined further by the paper. It is read here as the distance from the nose tip to the
inner-eye midpoint, the same vector the centre moves along, so the whole crop is built from one eye axis and one
nose axis. On an average adult face (e ~ 90 mm, n ~ 45 mm) this gives r ~ 95 mm (the procedural face model: 95.1 mm),
close to the ~95 mm nose-centred crops common in face-reconstruction benchmarks, which supports the reading.

A point is kept when its distance to the centre is <= r (a closed ball). Units are mm throughout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .input_checks import as_points, as_triangles

LEFT_EYE_OUTER, LEFT_EYE_INNER, RIGHT_EYE_INNER, RIGHT_EYE_OUTER, NOSE_TIP, LEFT_MOUTH, RIGHT_MOUTH = range(7)
"""Positions of the alignment points in a (7, 3) landmark array."""

CENTRE_TOWARDS_EYES = 0.3
"""The crop centre sits this fraction of the way from the nose tip to the inner-eye midpoint."""
RADIUS_FACTOR = 1.4
"""radius = RADIUS_FACTOR * (outer-eye distance + nose distance) / 2."""


@dataclass(frozen=True)
class CropSphere:
    """The ball of the front-face crop: ``centre`` (3,) mm and ``radius`` mm, with the two lengths it came from."""

    centre: np.ndarray
    radius: float
    outer_eye_distance: float
    nose_distance: float

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: which of the (N, 3) points lie in the closed ball (distance to the centre <= radius)."""
        points = np.asarray(points, dtype=np.float64)
        return np.einsum("ij,ij->i", points - self.centre, points - self.centre) <= self.radius ** 2


@dataclass(frozen=True)
class FrontFaceCrop:
    """The part of a scan inside :class:`CropSphere`.

    Attributes:
        points: (n, 3) float64 mm, the kept points in their original order.
        indices: (n,) int64, their row numbers in the input.
        mask: (N,) bool over the input points.
        sphere: the :class:`CropSphere` used.
        triangles: (m, 3) int64 into ``points`` (the input triangles whose three corners were all kept), or None
            when the input had no triangles (a point cloud).
    """

    points: np.ndarray
    indices: np.ndarray
    mask: np.ndarray
    sphere: CropSphere
    triangles: np.ndarray | None = None


def front_face_sphere(landmarks_7: Any) -> CropSphere:
    """The crop ball of the spec from the 7 alignment landmarks (7, 3) mm (numpy or torch); see the module text."""
    landmarks = as_points(landmarks_7, "landmarks_7", count=7)
    nose = landmarks[NOSE_TIP]
    inner_eye_midpoint = 0.5 * (landmarks[LEFT_EYE_INNER] + landmarks[RIGHT_EYE_INNER])
    outer_eye_distance = float(np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]))
    nose_distance = float(np.linalg.norm(inner_eye_midpoint - nose))
    radius = RADIUS_FACTOR * (outer_eye_distance + nose_distance) / 2.0
    if radius <= 0:
        raise ValueError("landmarks_7 give a crop radius of 0 (the eye corners and the nose tip coincide)")
    centre = nose + CENTRE_TOWARDS_EYES * (inner_eye_midpoint - nose)
    return CropSphere(centre=centre, radius=radius, outer_eye_distance=outer_eye_distance,
                      nose_distance=nose_distance)


def crop_front_face(points: Any, landmarks_7: Any, triangles: Any = None) -> FrontFaceCrop:
    """Keep the scan points inside the front-face ball defined by ``landmarks_7``.

    Args:
        points: (N, 3) scan vertices or point cloud, mm (numpy or torch).
        landmarks_7: (7, 3) alignment landmarks of the same scan, mm, project order.
        triangles: optional (M, 3) int triangles of the scan; the ones with all corners inside are kept and
            re-indexed into the cropped points (for drawing error maps). None for a point cloud.
    Returns:
        :class:`FrontFaceCrop`.
    """
    points = as_points(points, "points")
    sphere = front_face_sphere(landmarks_7)
    mask = sphere.contains(points)
    indices = np.flatnonzero(mask).astype(np.int64)
    kept_triangles = None
    if triangles is not None:
        triangles = as_triangles(triangles, "triangles", points.shape[0])
        new_index = np.full(points.shape[0], -1, dtype=np.int64)
        new_index[indices] = np.arange(indices.size)
        kept_triangles = new_index[triangles[mask[triangles].all(axis=1)]]
    return FrontFaceCrop(points=points[indices], indices=indices, mask=mask, sphere=sphere, triangles=kept_triangles)
