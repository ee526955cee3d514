"""Distances from ground-truth points to a predicted triangle mesh (exact closest points, open3d raycasting).

For a GT point ``g`` let ``c`` be the closest point of the prediction surface (over all triangles, exact point-to-
triangle distance) and ``n`` the unit normal of the triangle that holds ``c`` (counter-clockwise triangles seen
from outside give an outward normal). The protocol's per-point error is the **signed point-to-plane distance**

    d = n . (g - c)          (mm; > 0 when the GT point lies outside / in front of the predicted surface)

When ``c`` is inside its triangle, ``g - c`` is parallel to ``n`` and ``|d|`` equals the Euclidean point-to-surface
distance ``|g - c|``; when ``c`` falls on an edge or a corner (GT points beyond the prediction's border, or
facing a crease), ``|d| <= |g - c|`` and the tangential part is not counted, as in point-to-plane ICP. The
Euclidean distance is returned too (``surface_distances``, the NoW-style scan-to-mesh distance).

Degenerate (zero-area) triangles of the prediction are left out: they have no normal, and the surface they would
contribute is covered by their neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

DEGENERATE_AREA_MM2 = 1e-12
"""Triangles with a smaller area (mm^2) are left out of the distance computation."""


@dataclass(frozen=True)
class PointToMeshDistances:
    """Per-point results of :func:`point_to_mesh_distances` for n query points.

    Attributes:
        signed_plane: (n,) float64 mm, signed point-to-plane distance ``n . (g - c)`` (the protocol's d).
        surface: (n,) float64 mm, Euclidean distance ``|g - c|`` to the closest surface point.
        closest_points: (n, 3) float64 mm, ``c``.
        triangle_ids: (n,) int64, the prediction triangle holding ``c`` (index into the input triangles).
    """

    signed_plane: np.ndarray
    surface: np.ndarray
    closest_points: np.ndarray
    triangle_ids: np.ndarray


def point_to_mesh_distances(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray) -> PointToMeshDistances:
    """Exact closest points on the mesh (``vertices`` (V, 3) mm, ``triangles`` (F, 3) int) of ``points`` (n, 3) mm.

    The search runs in float32 (open3d's raycasting scene, a BVH) about the points' centroid; the point-to-plane
    distance is then evaluated in float64 against the chosen triangle's plane, so its rounding error stays far
    below 1 um for face-sized coordinates.
    """
    points = np.asarray(points, dtype=np.float64)
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    corners = vertices[triangles]                                           # (F, 3 corners, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    double_area = np.linalg.norm(normals, axis=1)
    usable = np.flatnonzero(double_area > 2.0 * DEGENERATE_AREA_MM2)
    if usable.size == 0:
        raise ValueError("predicted_triangles are all degenerate (zero area): no surface to measure against")
    normals = normals[usable] / double_area[usable, None]

    origin = points.mean(axis=0) if points.shape[0] else np.zeros(3)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((vertices - origin).astype(np.float32)),
                        o3d.core.Tensor(triangles[usable].astype(np.uint32)))
    answer = scene.compute_closest_points(o3d.core.Tensor((points - origin).astype(np.float32)))
    local_ids = answer["primitive_ids"].numpy().astype(np.int64)
    closest = answer["points"].numpy().astype(np.float64) + origin

    offsets = points - corners[usable[local_ids], 0]
    signed_plane = np.einsum("ij,ij->i", offsets, normals[local_ids])
    surface = np.linalg.norm(points - closest, axis=1)
    return PointToMeshDistances(signed_plane=signed_plane, surface=surface, closest_points=closest,
                                triangle_ids=usable[local_ids])
