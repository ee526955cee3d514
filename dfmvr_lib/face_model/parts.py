"""Face-part labels (10 classes, docs/conventions.md) from 68 iBUG landmarks.

One labelling function serves every purpose:

- per-vertex part labels of a morphable model (project the mean shape frontally, label the projected vertices:
  :func:`derive_part_labels`);
- landmark-polygon parse masks of photos (label the pixel centres: :func:`part_mask_image`).

The geometry is built from the landmarks only and is independent of the direction of the 2D axes: "up" (towards
the forehead) is taken from the landmarks themselves (perpendicular to the eye line, on the side of the brows),
so the same function works for model coordinates (y up), pixel coordinates (v down) and rolled faces.
All sizes are relative to the inter-ocular distance ``iod`` (distance between the two eye centres, the means of
points 36-41 and 42-47), so the absolute unit (mm, px) does not matter.

Polygons (0-based iBUG indices; "left" = image left, docs/conventions.md), painted in this order so later classes
win where they overlap:

1. skin: inside the face outline, i.e. the jaw 0..16 closed over the forehead by a super-elliptical arc from 16
   back to 0 whose top lies ``forehead_height * iod`` above the highest brow point (and that always contains the
   brows);
2. nose (6): a bridge strip from 27 down past 29 (half-width growing from 0.09 to 0.12 iod) that widens into the
   alae (0.10 iod beyond 31 and 35, rising 0.22 iod above the alar base, at most 0.8 of the way up to 29), closed
   below by the alar base 31..35 lowered by 0.03 iod (the tip 30 lies inside);
3. brows (2: 17-21, 3: 22-26): the brow polyline thickened into a band ``0.05 iod`` above and ``0.15 iod`` below
   the landmarks (iBUG brow points follow the top edge of the brow), ends extended by 0.03 iod;
4. eyes (4: 36-41, 5: 42-47): the eye polygon scaled by 1.15 about its centre plus 0.03 iod outwards;
5. upper lip (8): outer top edge 48..54 closed by the inner top edge 64..60;
6. lower lip (9): outer bottom edge 54..59, 48 closed by the inner bottom edge 60, 67..64;
7. inner mouth (7): 60..67.

Points outside every polygon are background (0); so are points where ``face_region`` is False.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.path import Path as _MplPath

from .base import vertex_normals

BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = range(10)

DEFAULT_FOREHEAD_HEIGHT = 0.75
"""Height of the forehead arc above the highest brow point, in inter-ocular distances."""


def _check_landmarks(landmarks_2d: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks_2d, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks_2d must be (68, 2) iBUG points, got shape {landmarks.shape}")
    if not np.all(np.isfinite(landmarks)):
        raise ValueError("landmarks_2d contains NaN or infinite values")
    return landmarks


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(right, up, iod): unit vector from the left to the right eye, unit vector towards the forehead, eye distance."""
    left_eye = landmarks[36:42].mean(axis=0)
    right_eye = landmarks[42:48].mean(axis=0)
    eye_vector = right_eye - left_eye
    iod = float(np.linalg.norm(eye_vector))
    if iod < 1e-9 * max(1.0, float(np.abs(landmarks).max())):
        raise ValueError("landmarks_2d are degenerate: the two eye centres coincide")
    right = eye_vector / iod
    up = np.array([-right[1], right[0]])
    # The forehead is on the side of the brows, away from the chin (point 8).
    if np.dot(landmarks[17:27].mean(axis=0) - landmarks[8], up) < 0:
        up = -up
    return right, up, iod


def _forehead_outline(landmarks: np.ndarray, up: np.ndarray, iod: float, forehead_height: float,
                      samples: int = 33, exponent: float = 3.0) -> np.ndarray:
    """Points of a super-elliptical arc from jaw point 16 over the forehead to jaw point 0 (both excluded).

    ``arc(t) = centre + c(t) * (p16 - centre) + s(t) * height * up`` for t in (0, pi), with
    ``c = sign(cos t) |cos t|^(2/e)``, ``s = |sin t|^(2/e)`` (e = ``exponent``; 2 is an ellipse, 3 squares the
    temples a little, as real foreheads are).
    """
    start, end = landmarks[16], landmarks[0]
    centre = 0.5 * (start + end)
    half = start - centre
    brows = landmarks[17:27]
    height = float(np.max((brows - centre) @ up)) + forehead_height * iod
    # Make sure every brow point is well inside the arc: solve brow - centre = a * half + h * up.
    basis = np.stack([half, up], axis=1)
    if abs(np.linalg.det(basis)) > 1e-12:
        coords = np.linalg.solve(basis, (brows - centre).T).T   # (10, 2): a, h
        a = np.clip(np.abs(coords[:, 0]), 0.0, 0.95)
        needed = coords[:, 1] / (1.0 - a ** exponent) ** (1.0 / exponent)
        height = max(height, 1.1 * float(needed.max()))
    t = np.linspace(0.0, np.pi, samples)[1:-1]
    cos_t, sin_t = np.cos(t), np.sin(t)
    c = np.sign(cos_t) * np.abs(cos_t) ** (2.0 / exponent)
    s = np.abs(sin_t) ** (2.0 / exponent)
    return centre + c[:, None] * half + (s[:, None] * height) * up


def _brow_band(points: np.ndarray, up: np.ndarray, iod: float) -> np.ndarray:
    """The brow polyline thickened into a closed band (extended a little beyond its ends)."""
    first_dir = points[0] - points[1]
    last_dir = points[-1] - points[-2]
    extend = 0.03 * iod
    start = points[0] + extend * first_dir / max(np.linalg.norm(first_dir), 1e-12)
    end = points[-1] + extend * last_dir / max(np.linalg.norm(last_dir), 1e-12)
    line = np.concatenate([start[None], points, end[None]])
    top = line + 0.05 * iod * up
    bottom = line - 0.15 * iod * up
    return np.concatenate([top, bottom[::-1]])


def _dilated(points: np.ndarray, iod: float, scale: float = 1.15, margin: float = 0.03) -> np.ndarray:
    centre = points.mean(axis=0)
    offset = points - centre
    length = np.linalg.norm(offset, axis=1, keepdims=True)
    return centre + offset * scale + margin * iod * offset / np.maximum(length, 1e-12)


def _nose_polygon(landmarks: np.ndarray, right: np.ndarray, up: np.ndarray, iod: float) -> np.ndarray:
    bridge = landmarks[27:30]                     # 27 (between the eyes), 28, 29 (30, the tip, lies inside)
    half_widths = iod * np.array([0.09, 0.10, 0.12])
    base = landmarks[31:36] - 0.03 * iod * up     # alar base / columella, slightly lowered
    # The alae: 0.10 iod beyond 31 and 35, rising 0.22 iod above the base (but staying below point 29).
    rise = min(0.22 * iod, 0.8 * float(np.dot(landmarks[29] - 0.5 * (landmarks[31] + landmarks[35]), up)))
    rise = max(rise, 0.05 * iod)
    left_ala = landmarks[31] - 0.10 * iod * right
    right_ala = landmarks[35] + 0.10 * iod * right
    return np.concatenate([
        bridge - half_widths[:, None] * right,      # down the left side of the bridge
        (left_ala + rise * up)[None], (left_ala - 0.03 * iod * up)[None],
        base,                                       # 31 .. 35 along the base
        (right_ala - 0.03 * iod * up)[None], (right_ala + rise * up)[None],
        (bridge + half_widths[:, None] * right)[::-1],  # up the right side of the bridge
    ])


def landmark_part_polygons(landmarks_2d: np.ndarray, forehead_height: float = DEFAULT_FOREHEAD_HEIGHT
                           ) -> list[tuple[int, np.ndarray]]:
    """The ``(label, polygon (P, 2))`` list, in painting order, that :func:`part_labels_from_landmarks` uses."""
    landmarks = _check_landmarks(landmarks_2d)
    right, up, iod = _face_frame(landmarks)
    outline = np.concatenate([landmarks[0:17], _forehead_outline(landmarks, up, iod, forehead_height)])
    return [
        (SKIN, outline),
        (NOSE, _nose_polygon(landmarks, right, up, iod)),
        (LEFT_BROW, _brow_band(landmarks[17:22], up, iod)),
        (RIGHT_BROW, _brow_band(landmarks[22:27], up, iod)),
        (LEFT_EYE, _dilated(landmarks[36:42], iod)),
        (RIGHT_EYE, _dilated(landmarks[42:48], iod)),
        (UPPER_LIP, np.concatenate([landmarks[48:55], landmarks[60:65][::-1]])),
        (LOWER_LIP, np.concatenate([landmarks[54:60], landmarks[48:49], landmarks[60:61], landmarks[64:67][::-1]])),
        (MOUTH, landmarks[60:68]),
    ]


def part_labels_from_landmarks(points_2d: np.ndarray, landmarks_2d: np.ndarray,
                               face_region: np.ndarray | None = None,
                               forehead_height: float = DEFAULT_FOREHEAD_HEIGHT) -> np.ndarray:
    """Label arbitrary 2D points with the 10 part classes from 68 iBUG landmarks in the same 2D frame.

    Args:
        points_2d: (N, 2) points (projected model vertices, or pixel centres ``(j + 0.5, i + 0.5)``).
        landmarks_2d: (68, 2) iBUG landmarks, 0-based order, same coordinates as ``points_2d``.
        face_region: optional (N,) bool; points where it is False are background (0).
        forehead_height: forehead arc height above the brows, in inter-ocular distances.
    Returns:
        (N,) int64 labels in [0, 10) (see the module docstring for the polygons).
    """
    points = np.asarray(points_2d, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points_2d must be (N, 2), got shape {points.shape}")
    labels = np.zeros(points.shape[0], dtype=np.int64)
    if points.shape[0] == 0:
        return labels
    finite = np.all(np.isfinite(points), axis=1)
    for label, polygon in landmark_part_polygons(landmarks_2d, forehead_height):
        # Test only the points inside the polygon's bounding box (cheap for image grids).
        low, high = polygon.min(axis=0), polygon.max(axis=0)
        candidates = np.flatnonzero(finite & np.all((points >= low) & (points <= high), axis=1))
        if candidates.size == 0:
            continue
        inside = _MplPath(np.concatenate([polygon, polygon[:1]]), closed=True).contains_points(points[candidates])
        labels[candidates[inside]] = label
    if face_region is not None:
        region = np.asarray(face_region)
        if region.shape != (points.shape[0],):
            raise ValueError(f"face_region must be ({points.shape[0]},) bool, got shape {region.shape}")
        labels[~region.astype(bool)] = BACKGROUND
    return labels


def part_mask_image(landmarks_2d: np.ndarray, height: int, width: int,
                    forehead_height: float = DEFAULT_FOREHEAD_HEIGHT) -> np.ndarray:
    """(H, W) int64 part-label mask of an image from its 68 landmarks (pixel coordinates, docs/conventions.md).

    Pixel (row i, column j) is labelled by its centre ``(j + 0.5, i + 0.5)``.
    """
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    centres = np.stack([cols.ravel(), rows.ravel()], axis=1)
    return part_labels_from_landmarks(centres, landmarks_2d, forehead_height=forehead_height).reshape(height, width)


def derive_part_labels(mean_shape: np.ndarray, landmark_68: np.ndarray, triangles: np.ndarray | None = None,
                       forehead_height: float = DEFAULT_FOREHEAD_HEIGHT) -> np.ndarray:
    """Per-vertex part labels of a morphable model from its 68 landmark vertices.

    The mean shape (head frame: x right, y up, z towards the camera) is projected frontally and orthographically
    (its x, y) and labelled with :func:`part_labels_from_landmarks`, using the projected landmark vertices.

    Vertices on the back side get 0 (background): those deeper than every landmark vertex by more than
    0.1 inter-ocular distances (the back of a full head), and, when ``triangles`` (F, 3, counter-clockwise from
    outside) are given, those whose vertex normal points clearly away from the camera (normal z < -0.7).
    Surfaces that merely turn down or sideways (the underside of the nose, the mouth corners) keep their label.

    Args:
        mean_shape: (V, 3) vertices.
        landmark_68: (68,) vertex ids, iBUG order.
        triangles: optional (F, 3) vertex ids for the normal test.
    Returns:
        (V,) int64 labels in [0, 10).
    """
    vertices = np.asarray(mean_shape, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"mean_shape must be (V, 3), got shape {vertices.shape}")
    ids = np.asarray(landmark_68)
    if ids.shape != (68,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"landmark_68 must be (68,) integer vertex ids, got shape {ids.shape} dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= vertices.shape[0]:
        raise ValueError(f"landmark_68 vertex id out of range [0, {vertices.shape[0]})")
    landmarks_3d = vertices[ids]
    landmarks_2d = landmarks_3d[:, :2]
    _, _, iod = _face_frame(_check_landmarks(landmarks_2d))
    front = vertices[:, 2] >= landmarks_3d[:, 2].min() - 0.1 * iod
    if triangles is not None:
        front &= _vertex_normals_z(vertices, np.asarray(triangles, dtype=np.int64)) >= -0.7
    return part_labels_from_landmarks(vertices[:, :2], landmarks_2d, face_region=front,
                                      forehead_height=forehead_height)


def _vertex_normals_z(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """z component of the unit one-ring vertex normals (see :func:`dfmvr_lib.face_model.base.vertex_normals`)."""
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"triangles must be (F, 3), got shape {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= vertices.shape[0]):
        raise ValueError(f"triangles: vertex id out of range [0, {vertices.shape[0]})")
    normals = vertex_normals(torch.as_tensor(vertices)[None], torch.as_tensor(triangles))[0]
    return normals[:, 2].numpy()
