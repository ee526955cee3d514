"""The reconstruction-error protocol (dfmvr_lib.evaluation): crop, alignment, ICP, point-to-plane distances.

Test surfaces are built here: a smooth face-like height field (a dome with a Gaussian "nose") triangulated on a
grid, a closed ellipsoid, and the procedural face model's mean shape.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation

from dfmvr_lib.config import get_config
from dfmvr_lib.evaluation import (align_landmarks, crop_front_face, errors_table,
                                  evaluate_reconstruction, front_face_sphere, point_to_mesh_distances,
                                  region_errors_table, vertex_normals)
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.similarity import apply_similarity

# --- test surfaces -----------------------------------------------------------------------------------------------

# eye corners, nose tip, mouth corners (project order) on the height field, (x, y) mm
LANDMARKS_XY = np.array([[-45, 37], [-16, 37], [16, 37], [45, 37], [0, -5], [-25, -30], [25, -30.0]])


def face_height(x, y):
    """A smooth face-like surface z(x, y), mm: a dome (curvature radii 90 and 120 mm) with a 22 mm Gaussian nose."""
    return 40 - x ** 2 / (2 * 90.0) - y ** 2 / (2 * 120.0) + 22 * np.exp(-(x ** 2 + (y + 5) ** 2) / (2 * 11.0 ** 2))


def height_field_mesh(spacing: float):
    """The face height field on a grid of ``spacing`` mm, triangles counter-clockwise seen from +z (outward)."""
    xs = np.arange(-110, 110 + 1e-9, spacing)
    ys = np.arange(-110, 120 + 1e-9, spacing)
    x, y = np.meshgrid(xs, ys)
    vertices = np.stack([x.ravel(), y.ravel(), face_height(x, y).ravel()], 1)
    columns = xs.size
    corner = (np.arange(ys.size - 1)[:, None] * columns + np.arange(columns - 1)[None]).ravel()
    triangles = np.concatenate([np.stack([corner, corner + 1, corner + columns + 1], 1),
                                np.stack([corner, corner + columns + 1, corner + columns], 1)])
    return vertices, triangles


HEIGHT_FIELD_LANDMARKS = np.c_[LANDMARKS_XY, face_height(LANDMARKS_XY[:, 0], LANDMARKS_XY[:, 1])]


def ellipsoid_mesh(resolution: int, axes=(60.0, 75.0, 50.0)):
    """A closed ellipsoid (semi-axes in mm) from open3d's UV sphere; outward triangles."""
    sphere = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution)
    return np.asarray(sphere.vertices) * np.asarray(axes), np.asarray(sphere.triangles).astype(np.int64)


def random_rigid(seed: int, degrees: float, millimetres: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    rotation = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()
    direction = rng.normal(size=3)
    return rotation, millimetres * direction / np.linalg.norm(direction)


@pytest.fixture(scope="module")
def fine_height_field():
    return height_field_mesh(1.0)           # 51k vertices: the GT "scan"


@pytest.fixture(scope="module")
def coarse_height_field():
    return height_field_mesh(1.7)           # 18k vertices: the "prediction", another tessellation


@pytest.fixture(scope="module")
def face():
    model = load_face_model(get_config("smoke").face_model)
    vertices = model.mean_shape.double().numpy()
    return vertices, model.triangles.numpy(), model.alignment_7.numpy(), model.part_labels.numpy()


# --- the whole protocol --------------------------------------------------------------------------------------------

def test_identical_meshes_give_zero_error(face):
    vertices, triangles, alignment, _ = face
    result = evaluate_reconstruction(vertices, triangles, vertices[alignment], vertices, triangles,
                                     vertices[alignment])
    assert result.n_points > 1000
    assert result.rmse_mm < 1e-6 and result.mean_mm < 1e-6 and np.abs(result.surface_distances).max() < 1e-4
    assert result.transform.scale == pytest.approx(1.0, abs=1e-9)
    assert result.icp_fitness == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [1.0, 0.8, 1.3])
def test_known_similarity_of_the_prediction_is_undone(face, scale):
    vertices, triangles, alignment, _ = face
    rotation, translation = random_rigid(1, degrees=35.0, millimetres=150.0)
    moved = scale * vertices @ rotation.T + translation
    result = evaluate_reconstruction(moved, triangles, moved[alignment], vertices, triangles, vertices[alignment])
    assert result.rmse_mm < 0.05
    assert result.transform.scale == pytest.approx(1.0 / scale, rel=1e-6)
    np.testing.assert_allclose(result.aligned_vertices, vertices, atol=1e-3)
    np.testing.assert_allclose(result.transform.apply(moved), result.aligned_vertices, atol=1e-9)


def test_icp_removes_a_misalignment_the_landmarks_miss(coarse_height_field, fine_height_field):
    """The prediction is moved 3 deg / 3 mm but its landmarks are not: only ICP can recover the motion."""
    gt_vertices, gt_triangles = fine_height_field
    vertices, triangles = coarse_height_field
    rotation, translation = random_rigid(2, degrees=3.0, millimetres=3.0)
    centre = gt_vertices.mean(0)
    moved = (vertices - centre) @ rotation.T + centre + translation
    landmarks = HEIGHT_FIELD_LANDMARKS
    without = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, gt_triangles, landmarks, icp=False)
    with_icp = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, gt_triangles, landmarks, icp=True)
    assert without.rmse_mm > 1.0
    assert with_icp.rmse_mm < 0.05
    assert with_icp.icp_fitness > 0.99
    assert np.isnan(without.icp_fitness)


@pytest.mark.parametrize("offset", [0.5, 1.0, 2.0])
def test_normal_offset_is_measured_on_a_face_like_surface(coarse_height_field, fine_height_field, offset):
    """Prediction = GT surface moved outwards by ``offset`` along its normals; the landmarks stay where they
    correspond (on the GT), so the similarity is the identity and, without ICP, the error is the offset."""
    gt_vertices, gt_triangles = fine_height_field
    vertices, triangles = coarse_height_field
    moved = vertices + offset * vertex_normals(vertices, triangles)
    landmarks = HEIGHT_FIELD_LANDMARKS
    result = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, gt_triangles, landmarks, icp=False)
    assert result.mean_mm == pytest.approx(offset, rel=0.02)
    assert result.rmse_mm == pytest.approx(offset, rel=0.02)
    assert result.std_mm < 0.02                  # the tessellation error (~0.01 mm), not the offset
    assert np.all(result.distances < 0)          # the GT lies inside (behind) the predicted surface


def test_normal_offset_of_a_closed_surface_survives_icp():
    """On a closed surface no rigid motion can hide a uniform offset, so with ICP the error stays the offset.
    (On an open face patch ICP legitimately absorbs most of a uniform offset by a translation.)"""
    gt_vertices, gt_triangles = ellipsoid_mesh(100)
    vertices, triangles = ellipsoid_mesh(80)
    offset = 1.0
    moved = vertices + offset * vertex_normals(vertices, triangles)
    landmarks = gt_vertices[np.random.default_rng(0).choice(len(gt_vertices), 7, replace=False)]
    result = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, gt_triangles, landmarks,
                                     crop=False, icp=True)
    assert result.mean_mm == pytest.approx(offset, rel=0.03)
    assert result.rmse_mm == pytest.approx(offset, rel=0.03)
    assert np.linalg.norm(result.icp_transform.translation) < 0.1


def test_another_tessellation_of_the_same_surface_gives_almost_zero(coarse_height_field, fine_height_field):
    """GT meshed at 1 mm, prediction at 1.7 mm (diagonals 2.4 mm). A flat triangle of size h deviates from a
    surface of curvature k by at most ~ k h^2 / 8: 0.12 mm at the nose tip (k ~ 0.18 / mm), ~0.01 mm on the dome.
    Bounds asserted: RMSE < 0.02 mm, max |d| < 0.15 mm."""
    gt_vertices, gt_triangles = fine_height_field
    vertices, triangles = coarse_height_field
    landmarks = HEIGHT_FIELD_LANDMARKS
    result = evaluate_reconstruction(vertices, triangles, landmarks, gt_vertices, gt_triangles, landmarks)
    assert result.rmse_mm < 0.02
    assert np.abs(result.distances).max() < 0.15
    assert result.n_points > 10000


def test_point_cloud_ground_truth_matches_the_mesh(coarse_height_field, fine_height_field):
    gt_vertices, gt_triangles = fine_height_field
    vertices, triangles = coarse_height_field
    moved = vertices + 0.7 * vertex_normals(vertices, triangles)
    landmarks = HEIGHT_FIELD_LANDMARKS
    meshed = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, gt_triangles, landmarks)
    cloud = evaluate_reconstruction(moved, triangles, landmarks, gt_vertices, None, landmarks)
    assert cloud.gt_triangles is None and meshed.gt_triangles is not None
    np.testing.assert_allclose(cloud.distances, meshed.distances, atol=1e-9)   # ICP sums in threads
    assert meshed.gt_triangles.max() < meshed.n_points


def test_torch_inputs_are_accepted(face):
    vertices, triangles, alignment, _ = face
    tensor = torch.from_numpy(vertices).float()
    result = evaluate_reconstruction(tensor, torch.from_numpy(triangles), tensor[torch.from_numpy(alignment)],
                                     vertices, triangles, vertices[alignment])
    assert result.rmse_mm < 1e-3


def test_region_summary_and_tables(face):
    vertices, triangles, alignment, labels = face
    moved = vertices + 0.5 * vertex_normals(vertices, triangles)
    results = [evaluate_reconstruction(vertices, triangles, vertices[alignment], vertices, triangles,
                                       vertices[alignment], gt_region_labels=labels),
               evaluate_reconstruction(moved, triangles, vertices[alignment], vertices, triangles,
                                       vertices[alignment], icp=False, gt_region_labels=labels)]
    second = results[1]
    assert sum(summary.n_points for summary in second.region_errors.values()) == second.n_points
    assert set(second.region_errors) == set(np.unique(labels[second.gt_indices]).tolist())
    skin = second.region_errors[1]
    assert skin.mean_mm == pytest.approx(np.abs(second.distances[second.regions == 1]).mean())

    table = errors_table(results, ids=["same", "offset"])
    assert list(table["sample"]) == ["same", "offset"] and len(table) == 2
    assert {"rmse_mm", "mean_mm", "std_mm", "n_points"} <= set(table.columns)
    assert table.loc[1, "mean_mm"] == pytest.approx(second.mean_mm)
    regions = region_errors_table(results, ids=["same", "offset"])
    assert len(regions) == len(results[0].region_errors) + len(second.region_errors)
    assert isinstance(errors_table([]), pd.DataFrame) and errors_table([]).empty
    with pytest.raises(ValueError, match="ids"):
        errors_table(results, ids=["only one"])


def test_summary_statistics_follow_their_definitions(face):
    vertices, triangles, alignment, _ = face
    result = evaluate_reconstruction(vertices + 0.3 * vertex_normals(vertices, triangles), triangles,
                                     vertices[alignment], vertices, None, vertices[alignment], icp=False)
    d = result.distances
    assert result.rmse_mm == pytest.approx(np.sqrt(np.mean(d ** 2)))
    assert result.mean_mm == pytest.approx(np.mean(np.abs(d)))
    assert result.std_mm == pytest.approx(np.std(np.abs(d)))
    assert np.all(result.surface_distances >= np.abs(d) - 1e-4)


# --- the parts --------------------------------------------------------------------------------------------------

def test_crop_sphere_follows_the_spec():
    landmarks = np.array([[-40, 0, 0], [-15, 0, 0], [15, 0, 0], [40, 0, 0], [0, -40, 0], [-20, -60, 0],
                          [20, -60, 0.0]])
    sphere = front_face_sphere(landmarks)
    assert sphere.outer_eye_distance == pytest.approx(80.0)
    assert sphere.nose_distance == pytest.approx(40.0)       # nose tip to the inner-eye midpoint
    assert sphere.radius == pytest.approx(1.4 * (80 + 40) / 2)
    np.testing.assert_allclose(sphere.centre, [0, -28, 0])


def test_crop_keeps_exactly_the_points_inside_the_sphere():
    landmarks = HEIGHT_FIELD_LANDMARKS
    sphere = front_face_sphere(landmarks)
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.concatenate([rng.uniform(0, 2 * sphere.radius, 3000),
                            sphere.radius * (1 + np.repeat([-1e-9, 1e-9], 500))])   # just inside / just outside
    points = sphere.centre + radii[:, None] * directions
    crop = crop_front_face(points, landmarks)
    inside = radii <= sphere.radius
    np.testing.assert_array_equal(crop.mask, inside)
    np.testing.assert_array_equal(crop.indices, np.flatnonzero(inside))
    np.testing.assert_array_equal(crop.points, points[inside])


def test_crop_reindexes_the_triangles_inside(fine_height_field):
    vertices, triangles = fine_height_field
    crop = crop_front_face(vertices, HEIGHT_FIELD_LANDMARKS, triangles)
    expected = triangles[crop.mask[triangles].all(1)]
    np.testing.assert_array_equal(crop.indices[crop.triangles], expected)


def test_landmark_alignment_agrees_with_the_losses_convention():
    rng = np.random.default_rng(4)
    source = rng.normal(size=(7, 3)) * 30
    rotation, translation = random_rigid(5, degrees=50.0, millimetres=20.0)
    target = 1.2 * source @ rotation.T + translation
    transform = align_landmarks(source, target)
    np.testing.assert_allclose(transform.apply(source), target, atol=1e-9)
    reference = apply_similarity(torch.from_numpy(source)[None], torch.tensor([transform.scale], dtype=torch.float64),
                                 torch.from_numpy(transform.rotation)[None],
                                 torch.from_numpy(transform.translation)[None])[0].numpy()
    np.testing.assert_allclose(transform.apply(source), reference, atol=1e-12)
    both = transform.then(transform.inverse())
    np.testing.assert_allclose(both.apply(source), source, atol=1e-9)
    np.testing.assert_allclose(transform.matrix()[:3, :3], transform.scale * transform.rotation)


def test_point_to_plane_distance_is_signed_and_exact():
    """A unit square at z = 0 facing +z: points above/below get +-height; a point beyond the edge gets its height
    as point-to-plane distance and its Euclidean distance to the edge as surface distance."""
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0.0]])
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    points = np.array([[2, 3, 1.5], [7, 8, -2.0], [13, 5, 4.0]])
    result = point_to_mesh_distances(points, square, triangles)
    np.testing.assert_allclose(result.signed_plane, [1.5, -2.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(result.surface, [1.5, 2.0, 5.0], atol=1e-5)
    np.testing.assert_allclose(result.closest_points[2], [10, 5, 0], atol=1e-5)


def test_degenerate_prediction_triangles_are_ignored():
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0.0], [5, 5, 0]])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 4, 2]])         # the last one has zero area
    result = point_to_mesh_distances(np.array([[5, 5, 1.0]]), square, triangles)
    assert np.isfinite(result.signed_plane).all() and result.triangle_ids[0] in (0, 1)


# --- bad inputs ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_case(coarse_height_field):
    vertices, triangles = coarse_height_field
    return dict(predicted_vertices=vertices, predicted_triangles=triangles,
                predicted_landmarks_7=HEIGHT_FIELD_LANDMARKS, gt_vertices=vertices, gt_triangles=None,
                gt_landmarks_7=HEIGHT_FIELD_LANDMARKS)


def with_nan(array, row=3):
    array = np.array(array, dtype=np.float64)
    array[row, 1] = np.nan
    return array


@pytest.mark.parametrize("argument, value, message", [
    ("predicted_vertices", lambda c: c["predicted_vertices"][:, :2], r"predicted_vertices must have shape \(N, 3\)"),
    ("predicted_vertices", lambda c: with_nan(c["predicted_vertices"]), "predicted_vertices has 1 row.*NaN"),
    ("predicted_triangles", lambda c: c["predicted_triangles"] + len(c["predicted_vertices"]),
     "predicted_triangles has vertex ids"),
    ("predicted_triangles", lambda c: c["predicted_triangles"][:, :2], r"predicted_triangles must have shape"),
    ("predicted_triangles", lambda c: c["predicted_triangles"] + 0.5, "predicted_triangles must hold integer"),
    ("predicted_landmarks_7", lambda c: c["predicted_landmarks_7"][:6],
     r"predicted_landmarks_7 must have shape \(7, 3\)"),
    ("predicted_landmarks_7", lambda c: with_nan(c["predicted_landmarks_7"]), "predicted_landmarks_7 has 1 row"),
    ("gt_vertices", lambda c: c["gt_vertices"].T, r"gt_vertices must have shape \(N, 3\)"),
    ("gt_vertices", lambda c: with_nan(c["gt_vertices"]).astype(np.float32), "gt_vertices has 1 row.*NaN"),
    ("gt_vertices", lambda c: np.full((5, 3), np.inf), "gt_vertices has 5 row"),
    ("gt_triangles", lambda c: -np.ones((2, 3), dtype=int), "gt_triangles has vertex ids"),
    ("gt_landmarks_7", lambda c: c["gt_landmarks_7"][None], r"gt_landmarks_7 must have shape \(7, 3\)"),
    ("gt_landmarks_7", lambda c: with_nan(c["gt_landmarks_7"], 0), "gt_landmarks_7 has 1 row"),
    ("gt_landmarks_7", lambda c: c["gt_landmarks_7"] + 1000.0, "gt_vertices: the front-face crop .* keeps no point"),
    ("gt_region_labels", lambda c: np.zeros(3), r"gt_region_labels must have shape"),
    ("max_correspondence_mm", lambda c: -1.0, "max_correspondence_mm must be a positive"),
    ("predicted_vertices", lambda c: np.array([["a", "b", "c"]] * 3), "predicted_vertices must hold real numbers"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(small_case, argument, value, message):
    arguments = dict(small_case)
    arguments[argument] = value(small_case)
    with pytest.raises(ValueError, match=message):
        evaluate_reconstruction(**arguments)


def test_crop_checks_its_inputs():
    with pytest.raises(ValueError, match="points must have shape"):
        crop_front_face(np.zeros((4, 2)), HEIGHT_FIELD_LANDMARKS)
    with pytest.raises(ValueError, match="landmarks_7 must have shape"):
        crop_front_face(np.zeros((4, 3)), HEIGHT_FIELD_LANDMARKS[:5])
    with pytest.raises(ValueError, match="landmarks_7 give a crop radius of 0"):
        front_face_sphere(np.zeros((7, 3)))
