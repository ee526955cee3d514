"""Config profiles, pose and camera conventions, SH lighting, and the morphable-model interface."""
import math

import numpy as np
import pytest
import torch

from dfmvr_lib.camera import (PerspectiveCamera, apply_pose, canonical_angles, euler_to_rotation, rotation_to_euler,
                              view_yaws)
from dfmvr_lib.config import get_config
from dfmvr_lib.face_model import MorphableModel, MorphableModelData, vertex_triangle_table
from dfmvr_lib.lighting import directional_lighting, sh_basis, sh_irradiance


# ---------------------------------------------------------------- config
def test_profiles_differ_in_size_and_share_defaults():
    smoke, cpu, paper = (get_config(p) for p in ("smoke", "cpu", "paper"))
    assert smoke.image_size <= cpu.image_size < paper.image_size == 224          # cpu: 64 px, chosen by the study
    assert smoke.training.steps < cpu.training.steps < paper.training.steps
    assert paper.network.base_width == 64
    assert abs(paper.focal_length - 1015.0) < 1e-9
    assert abs(cpu.focal_length - 1015.0 * cpu.image_size / 224) < 1e-9
    assert smoke.hash() != cpu.hash()
    assert get_config("cpu").hash() == get_config("cpu").hash()


def test_overrides_and_errors():
    config = get_config("smoke", overrides={"training.steps": 7, "image_size": 96})
    assert config.training.steps == 7 and config.image_size == 96
    with pytest.raises(KeyError, match="trainig"):
        get_config("smoke", overrides={"trainig.steps": 1})
    with pytest.raises(ValueError, match="unknown profile"):
        get_config("gpu")


# ---------------------------------------------------------------- pose and camera
def test_rotation_composition_order_and_signs():
    pitch, yaw, roll = 0.3, -0.4, 0.2
    rotation = euler_to_rotation(torch.tensor([pitch, yaw, roll], dtype=torch.float64))
    rx = torch.tensor([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]],
                      dtype=torch.float64)
    ry = torch.tensor([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]],
                      dtype=torch.float64)
    rz = torch.tensor([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]],
                      dtype=torch.float64)
    assert torch.allclose(rotation, rz @ ry @ rx)
    assert torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(rotation_to_euler(rotation), torch.tensor([pitch, yaw, roll], dtype=torch.float64))


def test_canonical_angles_bring_the_other_euler_branch_back_to_the_real_turn():
    turn = torch.tensor([[0.09, -0.44, -0.02], [0.1, 0.1, 0.05]], dtype=torch.float64)     # radians
    other = torch.stack([turn[:, 0] + math.pi, math.pi - turn[:, 1], turn[:, 2] - math.pi], -1)
    other[1] += torch.tensor([0.0, 4 * math.pi, -2 * math.pi], dtype=torch.float64)          # and whole turns
    assert torch.allclose(euler_to_rotation(other), euler_to_rotation(turn))               # the same rotations
    assert other[:, 1].abs().min() > math.radians(150)                                      # read raw: a side view
    assert torch.allclose(canonical_angles(other), turn)


def test_positive_yaw_turns_nose_to_image_right_and_pitch_down():
    camera = PerspectiveCamera.for_image_size(224)
    nose = torch.tensor([[[0.0, 0.0, 100.0]]])
    centre = camera.project(torch.zeros(1, 1, 3))[0, 0]
    assert torch.allclose(centre, torch.tensor([112.0, 112.0]))
    yawed = camera.project(apply_pose(nose, torch.tensor([[0.0, 0.3, 0.0]]), torch.zeros(1, 3)))[0, 0]
    pitched = camera.project(apply_pose(nose, torch.tensor([[0.3, 0.0, 0.0]]), torch.zeros(1, 3)))[0, 0]
    assert yawed[0] > 112.5  # image right
    assert pitched[1] > 112.5  # rows grow downwards: nose moved down
    yaws = view_yaws(0.5)
    assert yaws[0] < 0 and yaws[1] == 0 and yaws[2] > 0


def test_projection_known_values_and_round_trip():
    camera = PerspectiveCamera.for_image_size(112)
    assert camera.focal_length == pytest.approx(507.5)
    point = torch.tensor([10.0, 20.0, 0.0])  # 1000 mm from the camera
    uv = camera.project(point)
    assert torch.allclose(uv, torch.tensor([56.0 + 507.5 * 0.01, 56.0 - 507.5 * 0.02]))
    points = torch.randn(50, 3) * 60
    back = camera.unproject(camera.project(points), camera.depth(points))
    assert torch.allclose(back, points, atol=1e-3)


# ---------------------------------------------------------------- lighting
def test_sh_constants_and_directional_light():
    normals = torch.nn.functional.normalize(torch.randn(1, 200, 3), dim=-1)
    irradiance = sh_irradiance(normals, torch.zeros(1, 27))
    assert torch.allclose(irradiance, torch.full_like(irradiance, 0.8 * math.pi / math.sqrt(4 * math.pi)))
    assert torch.allclose(sh_basis(torch.tensor([0.0, 0.0, 1.0]))[0], torch.tensor(math.pi / math.sqrt(4 * math.pi)))
    light = directional_lighting(torch.tensor([[1.0, 0.0, 0.0]]), strength=0.5)
    facing = sh_irradiance(torch.tensor([[[1.0, 0.0, 0.0]]]), light)
    away = sh_irradiance(torch.tensor([[[-1.0, 0.0, 0.0]]]), light)
    assert (facing > away).all()


def test_lighting_is_differentiable():
    normals = torch.nn.functional.normalize(torch.randn(2, 30, 3), dim=-1)
    lighting = torch.zeros(2, 27, requires_grad=True)
    sh_irradiance(normals, lighting).sum().backward()
    assert lighting.grad.abs().sum() > 0


# ---------------------------------------------------------------- morphable model interface
def tiny_model_data(seed: int = 0) -> MorphableModelData:
    """A closed octahedron-like tiny model, enough to test the interface."""
    rng = np.random.default_rng(seed)
    vertices = np.array([[50, 0, 0], [-50, 0, 0], [0, 50, 0], [0, -50, 0], [0, 0, 50], [0, 0, -50]], float)
    triangles = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    V = len(vertices)
    return MorphableModelData(
        mean_shape=vertices, identity_basis=rng.normal(size=(V, 3, 5)), expression_basis=rng.normal(size=(V, 3, 4)),
        mean_albedo=np.full((V, 3), 0.5), albedo_basis=rng.normal(size=(V, 3, 3)) * 0.01, triangles=triangles,
        landmark_68=np.arange(68) % V, landmark_101=np.arange(101) % V, alignment_7=np.arange(7) % V,
        part_labels=np.arange(V) % 10, evaluation_region=np.ones(V, bool), name="tiny",
    )


def test_model_combines_bases_and_uses_leading_components():
    data = tiny_model_data()
    model = MorphableModel(data)
    identity = torch.zeros(2, 3)
    identity[1, 2] = 1.0
    vertices, albedo = model(identity, torch.zeros(2, 4), None)
    assert vertices.shape == (2, 6, 3) and albedo.shape == (2, 6, 3)
    assert torch.allclose(vertices[0], model.mean_shape)
    column = torch.as_tensor(data.identity_basis[:, :, 2], dtype=torch.float32)
    assert torch.allclose(vertices[1] - vertices[0], column, atol=1e-4)
    with pytest.raises(ValueError, match="identity coefficients have 9"):
        model(torch.zeros(1, 9))


def test_normals_point_outwards_and_gradients_flow():
    model = MorphableModel(tiny_model_data())
    identity = torch.zeros(1, 5, requires_grad=True)
    vertices, _ = model(identity)
    normals = model.normals(vertices)
    radial = torch.nn.functional.normalize(vertices, dim=-1)
    assert ((normals * radial).sum(-1) > 0.99).all()
    (normals[..., 0].sum() + vertices.sum()).backward()
    assert identity.grad.abs().sum() > 0


def test_vertex_triangle_table_is_the_one_ring():
    triangles = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]])
    table = vertex_triangle_table(triangles, 5)
    assert sorted(table[0]) == [0, 1, 2]
    assert sorted(t for t in table[1] if t < 3) == [0, 2]
    assert (table[4] == 3).all()  # isolated vertex: only padding


def test_validation_names_the_field():
    data = tiny_model_data()
    data.triangles = data.triangles + 10
    with pytest.raises(ValueError, match="triangles"):
        MorphableModel(data)
    data = tiny_model_data()
    data.landmark_68 = np.arange(60)
    with pytest.raises(ValueError, match="landmark_68"):
        MorphableModel(data)


def test_anthropometric_measurements_scale_with_the_face():
    from dfmvr_lib.face_model import anthropometric_measurements, measurement_table

    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(100, 3)) * 40.0
    landmarks = rng.choice(100, 68, replace=False)
    vertices[landmarks[36]] = [-45.0, 30.0, 10.0]
    vertices[landmarks[45]] = [45.0, 30.0, 10.0]
    measured = anthropometric_measurements(vertices, landmarks)
    assert measured["biocular_width"] == pytest.approx(90.0)
    doubled = anthropometric_measurements(2.0 * vertices, landmarks)
    for name, value in measured.items():
        assert doubled[name] == pytest.approx(2.0 * value), name
    table = measurement_table(vertices, landmarks)
    assert list(table["measurement"]) == list(measured) and (table["norm_mm"] > 0).all()
    with pytest.raises(ValueError, match="68 landmark"):
        anthropometric_measurements(vertices, landmarks[:60])


def test_vertex_normal_paths_agree_and_scatter_path_has_gradients():
    from dfmvr_lib.face_model import vertex_normals

    model = MorphableModel(tiny_model_data())
    vertices = model.mean_shape[None] + torch.randn(2, 6, 3)
    without_gradient = vertex_normals(vertices, model.triangles)          # numba kernel
    tracked = vertices.clone().requires_grad_(True)
    with_gradient = vertex_normals(tracked, model.triangles)              # differentiable scatter-add
    assert torch.allclose(without_gradient, with_gradient.detach(), atol=1e-5)
    with_gradient[..., 2].sum().backward()
    assert tracked.grad.abs().sum() > 0
