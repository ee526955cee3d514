"""The forward model: coefficients -> shading -> pose -> render, landmark projection and visibility."""
import math

import pytest
import torch

from dfmvr_lib.camera import PerspectiveCamera, view_yaws
from dfmvr_lib.config import get_config
from dfmvr_lib.face_model import load_face_model
from dfmvr_lib.scene import FaceCoefficients, landmark_visibility, random_coefficients, render_faces


@pytest.fixture(scope="module")
def model():
    return load_face_model(get_config("smoke").face_model)


@pytest.fixture(scope="module")
def camera():
    return PerspectiveCamera.for_image_size(96)


def test_render_faces_shapes_and_view_order(model, camera):
    yaws = view_yaws(math.radians(30))
    faces = render_faces(model, FaceCoefficients.neutral(model, batch_size=2, yaws=yaws), camera)
    assert faces.render.image.shape == (6, 3, 96, 96)
    assert faces.views("image").shape == (2, 3, 3, 96, 96)
    assert faces.landmarks_2d.shape == (2, 3, 68, 2)
    # view A (negative yaw) turns the nose (iBUG 30) towards the image's left, view C to the right
    nose_u = faces.landmarks_2d[0, :, 30, 0]
    assert nose_u[0] < nose_u[1] - 3 and nose_u[2] > nose_u[1] + 3
    # identical samples render identically
    assert torch.equal(faces.views("image")[0], faces.views("image")[1])


def test_frontal_landmarks_are_visible_and_land_on_their_part(model, camera):
    faces = render_faces(model, FaceCoefficients.neutral(model), camera)
    visible = faces.landmark_visibility()[0, 0]
    assert visible[27:36].all() and visible[36:48].all()  # nose and eyes face the camera
    labels = faces.render.part_labels[0]
    nose_tip = faces.landmarks_2d[0, 0, 30].floor().long()
    assert labels[nose_tip[1], nose_tip[0]] == 6
    depth = faces.render.depth[0, nose_tip[1], nose_tip[0]]
    assert abs(depth - faces.landmark_depth[0, 0, 30]) < 3.0  # the rendered surface is the landmark's


def test_far_side_contour_is_hidden_in_a_profile_view(model, camera):
    faces = render_faces(model, FaceCoefficients.neutral(model, yaws=torch.tensor([math.radians(-60)])), camera)
    visible = faces.landmark_visibility()[0, 0]
    # turned to the image's left: the subject's left side (iBUG 9-16, image right in a frontal view) faces the camera
    assert visible[10:17].sum() > visible[0:7].sum()


def test_landmark_visibility_on_a_synthetic_depth_map():
    depth = torch.zeros(1, 10, 10)
    depth[0, 2:8, 2:8] = 900.0
    points = torch.tensor([[[5.5, 5.5], [5.5, 5.5], [0.5, 0.5], [20.0, 1.0]]])
    point_depth = torch.tensor([[901.0, 950.0, 990.0, 900.0]])
    visible = landmark_visibility(depth, points, point_depth)
    assert visible.tolist() == [[True, False, True, False]]


def test_random_coefficients_are_seeded_and_render_with_gradients(model, camera):
    yaws = view_yaws(math.radians(20))
    a = random_coefficients(model, 2, yaws, torch.Generator().manual_seed(3), pose_jitter_radians=0.02)
    b = random_coefficients(model, 2, yaws, torch.Generator().manual_seed(3), pose_jitter_radians=0.02)
    assert torch.equal(a.identity, b.identity) and torch.equal(a.lighting, b.lighting)
    assert not torch.equal(a.identity[0], a.identity[1])
    target = render_faces(model, a, camera).render.image.detach()
    start = FaceCoefficients.neutral(model, batch_size=2, yaws=yaws)
    start.angles, start.lighting = a.angles, a.lighting
    start.identity.requires_grad_(True)
    start.albedo.requires_grad_(True)
    loss = (render_faces(model, start, camera).render.image - target).abs().mean()
    loss.backward()
    assert start.identity.grad.abs().sum() > 0 and start.albedo.grad.abs().sum() > 0
    # a small step against the gradient lowers the photometric loss
    with torch.no_grad():
        stepped = FaceCoefficients(start.identity - 0.5 * start.identity.grad / start.identity.grad.norm(),
                                   start.expression, start.albedo - 0.5 * start.albedo.grad / start.albedo.grad.norm(),
                                   start.lighting, start.angles, start.translation)
        assert (render_faces(model, stepped, camera).render.image - target).abs().mean() < loss
