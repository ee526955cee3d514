"""Part labels from 68 landmarks (dfmvr_lib.face_model.parts) on hand-made landmark sets."""
from __future__ import annotations

import numpy as np
import pytest

from dfmvr_lib.face_model.base import NUM_PARTS, PART_NAMES
from dfmvr_lib.face_model.parts import (derive_part_labels, landmark_part_polygons, part_labels_from_landmarks,
                                        part_mask_image)


def synthetic_landmarks_mm(mouth_open: float = 5.0) -> np.ndarray:
    """A plausible frontal 68-point iBUG set in a head-like frame (x right, y up, mm, nose tip near the origin)."""
    t = np.pi * np.arange(17) / 16
    jaw = np.stack([-70 * np.cos(t), 35 - 110 * np.sin(t)], axis=1)             # 0 (image left) .. 16
    s = np.linspace(0, 1, 5)
    left_brow = np.stack([-55 + 43 * s, 48 + 6 * np.sin(np.pi * s)], axis=1)     # 17 (outer) .. 21 (inner)
    right_brow = left_brow[::-1] * [-1, 1]                                       # 22 (inner) .. 26 (outer)
    bridge = np.array([[0, 35], [0, 22], [0, 10], [0, -2]])                      # 27 .. 30 (tip)
    base = np.array([[-14, -10], [-7, -12], [0, -13], [7, -12], [14, -10]])      # 31 .. 35
    left_eye = np.array([[-45, 33], [-38, 38], [-26, 38], [-18, 33], [-26, 29], [-38, 29]])   # 36 .. 41
    right_eye = np.array([[18, 33], [26, 38], [38, 38], [45, 33], [38, 29], [26, 29]])        # 42 .. 47
    outer_mouth = np.array([[-25, -38], [-16, -32], [-7, -30], [0, -31], [7, -30], [16, -32], [25, -38],
                            [16, -45], [7, -48], [0, -49], [-7, -48], [-16, -45]])            # 48 .. 59
    half = mouth_open / 2
    inner_mouth = np.array([[-21, -38], [-8, -38.5 + half], [0, -38.5 + half], [8, -38.5 + half], [21, -38],
                            [8, -38.5 - half], [0, -38.5 - half], [-8, -38.5 - half]])        # 60 .. 67
    landmarks = np.concatenate([jaw, left_brow, right_brow, bridge, base, left_eye, right_eye, outer_mouth,
                                inner_mouth]).astype(np.float64)
    assert landmarks.shape == (68, 2)
    return landmarks


# Probe points (mm, frame of synthetic_landmarks_mm) and the class each must get.
PROBES = [
    ((0.0, -2.0), "nose"), ((0.0, 22.0), "nose"), ((-16.0, -8.0), "nose"), ((16.0, -8.0), "nose"),
    ((-31.5, 33.0), "left_eye"), ((31.5, 33.0), "right_eye"),
    ((-35.0, 47.0), "left_brow"), ((35.0, 47.0), "right_brow"),
    ((0.0, -33.0), "upper_lip"), ((0.0, -45.0), "lower_lip"), ((0.0, -38.5), "mouth"),
    ((-45.0, -10.0), "skin"), ((45.0, -10.0), "skin"), ((0.0, 75.0), "skin"), ((0.0, -65.0), "skin"),
    ((-100.0, 0.0), "background"), ((0.0, -90.0), "background"), ((0.0, 140.0), "background"),
]


def _probe_arrays():
    points = np.array([p for p, _ in PROBES], dtype=np.float64)
    expected = np.array([PART_NAMES.index(name) for _, name in PROBES])
    return points, expected


def _to_image(points_mm: np.ndarray, scale: float = 1.2, centre=(112.0, 100.0)) -> np.ndarray:
    """mm (y up) -> pixel coordinates (v down)."""
    return np.stack([centre[0] + scale * points_mm[:, 0], centre[1] - scale * points_mm[:, 1]], axis=1)


@pytest.mark.parametrize("frame", ["model", "image", "rolled"])
def test_classes_land_where_expected(frame):
    landmarks = synthetic_landmarks_mm()
    points, expected = _probe_arrays()
    if frame == "image":
        landmarks, points = _to_image(landmarks), _to_image(points)
    elif frame == "rolled":
        angle = np.deg2rad(25.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        landmarks = landmarks @ rotation.T * 0.7 + [40.0, -15.0]
        points = points @ rotation.T * 0.7 + [40.0, -15.0]
    labels = part_labels_from_landmarks(points, landmarks)
    assert labels.dtype == np.int64 and labels.shape == (len(PROBES),)
    wrong = [(PROBES[i], PART_NAMES[labels[i]]) for i in np.flatnonzero(labels != expected)]
    assert not wrong, f"misplaced probes ({frame}): {wrong}"


def test_image_mask_of_a_face():
    landmarks = _to_image(synthetic_landmarks_mm())
    mask = part_mask_image(landmarks, 224, 224)
    assert mask.shape == (224, 224) and mask.dtype == np.int64
    counts = np.bincount(mask.ravel(), minlength=NUM_PARTS)
    assert np.all(counts > 0), dict(zip(PART_NAMES, counts))
    rows, cols = np.indices(mask.shape)

    def centre(label):
        return rows[mask == label].mean(), cols[mask == label].mean()

    left_eye, right_eye = centre(4), centre(5)
    left_brow, right_brow = centre(2), centre(3)
    nose, mouth, upper, lower = centre(6), centre(7), centre(8), centre(9)
    assert left_eye[1] < 112 < right_eye[1] and left_brow[1] < 112 < right_brow[1]   # image left / right
    assert left_brow[0] < left_eye[0] < nose[0] and right_brow[0] < right_eye[0] < nose[0]  # rows grow down
    assert nose[0] < upper[0] < mouth[0] < lower[0]
    assert mask[0, 0] == 0 and mask[-1, -1] == 0 and mask[0, -1] == 0
    # Skin is the biggest part and the face covers a sensible share of the image.
    assert counts[1] == counts[1:].max()
    assert 0.3 < (mask > 0).mean() < 0.9
    # Brows: a band about 0.2 inter-ocular distances thick (iod = 63 mm * 1.2 px/mm here).
    brow_rows_at_centre = np.flatnonzero(mask[:, int(_to_image(np.array([[-35.0, 0.0]]))[0, 0])] == 2)
    assert 0.12 * 63 * 1.2 < brow_rows_at_centre.size < 0.3 * 63 * 1.2


def test_mask_and_point_labels_agree_at_pixel_centres():
    landmarks = _to_image(synthetic_landmarks_mm(), scale=0.9, centre=(70.3, 60.1))
    height, width = 130, 150
    mask = part_mask_image(landmarks, height, width)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    labels = part_labels_from_landmarks(np.stack([cols.ravel(), rows.ravel()], axis=1), landmarks)
    np.testing.assert_array_equal(mask.ravel(), labels)
    # Pixel (i, j) is judged by (j + 0.5, i + 0.5): a pixel whose centre is at the nose tip is nose.
    tip = landmarks[30]
    assert mask[int(tip[1]), int(tip[0])] == PART_NAMES.index("nose")


def test_face_region_masks_points():
    landmarks = synthetic_landmarks_mm()
    points, expected = _probe_arrays()
    region = np.ones(len(points), dtype=bool)
    region[::2] = False
    labels = part_labels_from_landmarks(points, landmarks, face_region=region)
    assert np.all(labels[~region] == 0)
    np.testing.assert_array_equal(labels[region], expected[region])


def test_closed_mouth_has_no_inner_mouth_but_lips():
    landmarks = synthetic_landmarks_mm(mouth_open=0.0)
    points = np.array([[0.0, -33.0], [0.0, -45.0]])
    np.testing.assert_array_equal(part_labels_from_landmarks(points, landmarks), [8, 9])
    mask = part_mask_image(_to_image(landmarks), 224, 224)
    assert (mask == 7).sum() == 0 and (mask == 8).sum() > 0 and (mask == 9).sum() > 0


def test_polygons_listed_in_painting_order():
    polygons = landmark_part_polygons(synthetic_landmarks_mm())
    assert [label for label, _ in polygons][0] == 1           # skin first, parts over it
    assert sorted(label for label, _ in polygons) == list(range(1, 10))


def _grid_face(landmarks_mm: np.ndarray, step: float = 2.0):
    """A frontal height-field mesh covering the face, with the landmarks appended as vertices."""
    xs = np.arange(-90.0, 90.0 + 1e-9, step)
    ys = np.arange(-100.0, 130.0 + 1e-9, step)
    gx, gy = np.meshgrid(xs, ys)
    def height(x, y):
        return 100.0 - 0.004 * x ** 2 - 0.002 * y ** 2 + 25.0 * np.exp(-(x ** 2 + (y - 5) ** 2) / 300)

    grid = np.stack([gx.ravel(), gy.ravel(), height(gx.ravel(), gy.ravel())], axis=1)
    nx = xs.size
    i, j = np.meshgrid(np.arange(ys.size - 1), np.arange(nx - 1), indexing="ij")
    a = (i * nx + j).ravel()
    b, c, d = a + 1, a + nx + 1, a + nx
    triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])  # counter-clockwise from +z
    lm3d = np.concatenate([landmarks_mm, height(landmarks_mm[:, 0], landmarks_mm[:, 1])[:, None]], axis=1)
    vertices = np.concatenate([grid, lm3d])
    landmark_ids = np.arange(grid.shape[0], vertices.shape[0])
    return vertices, triangles, landmark_ids


def test_derive_part_labels_matches_frontal_projection():
    landmarks = synthetic_landmarks_mm()
    vertices, triangles, ids = _grid_face(landmarks)
    labels = derive_part_labels(vertices, ids, triangles)
    np.testing.assert_array_equal(labels, part_labels_from_landmarks(vertices[:, :2], landmarks))
    assert labels[ids[30]] == 6 and labels[ids[37]] == 4 and labels[ids[44]] == 5


def test_derive_part_labels_back_side_is_background():
    landmarks = synthetic_landmarks_mm()
    vertices, triangles, ids = _grid_face(landmarks)
    front_count = vertices.shape[0]
    # The back of a head: a copy of the face far behind it (facing away) -> background.
    back = vertices.copy()
    back[:, 2] = -back[:, 2]
    all_vertices = np.concatenate([vertices, back])
    all_triangles = np.concatenate([triangles, triangles[:, [0, 2, 1]] + front_count])
    labels = derive_part_labels(all_vertices, ids, all_triangles)
    assert np.all(labels[front_count:] == 0)
    np.testing.assert_array_equal(labels[:front_count], derive_part_labels(vertices, ids, triangles))
    # A back-facing patch at the depth of the face (caught by its normals only when triangles are given).
    patch = np.array([[-40.0, -10.0, 95.0], [-36.0, -10.0, 95.0], [-38.0, -6.0, 95.0]])
    patched = np.concatenate([vertices, patch])
    patch_triangles = np.concatenate([triangles, [[front_count, front_count + 2, front_count + 1]]])
    assert np.all(derive_part_labels(patched, ids, patch_triangles)[front_count:] == 0)
    assert np.all(derive_part_labels(patched, ids)[front_count:] == 1)


def test_invalid_inputs():
    landmarks = synthetic_landmarks_mm()
    with pytest.raises(ValueError, match="landmarks_2d"):
        part_labels_from_landmarks(np.zeros((3, 2)), landmarks[:60])
    with pytest.raises(ValueError, match="points_2d"):
        part_labels_from_landmarks(np.zeros((3, 3)), landmarks)
    with pytest.raises(ValueError, match="face_region"):
        part_labels_from_landmarks(np.zeros((3, 2)), landmarks, face_region=np.ones(4, bool))
    with pytest.raises(ValueError, match="degenerate"):
        part_labels_from_landmarks(np.zeros((3, 2)), np.zeros((68, 2)))
    with pytest.raises(ValueError, match="landmark_68"):
        derive_part_labels(np.zeros((10, 3)), np.arange(68))
    assert part_labels_from_landmarks(np.zeros((0, 2)), landmarks).shape == (0,)
