"""Test-time refinement (dfmvr_lib.reconstruction.fitting) and the checks on the input views: the fitting loss falls,
gradients reach every coefficient and only the views that take part, the network and parser stay untouched, a known
face is recovered better than the starting point; view proportions and directions."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dfmvr_lib.camera import PerspectiveCamera, view_yaws
from dfmvr_lib.config import get_config
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.reconstruction.reconstructor import default_runs, load_reconstructor
from dfmvr_lib.reconstruction.fitting import (COEFFICIENT_NAMES, RefinementSettings, fitting_loss,
                                              refine_reconstruction)
from dfmvr_lib.reconstruction.photo_inputs import (PROPORTION_TOLERANCE, nose_position, vertical_proportions,
                                             view_consistency_warnings)
from dfmvr_lib.reconstruction.pipeline import reconstruct_triplet
from dfmvr_lib.scene import FaceCoefficients, random_coefficients, render_faces
from dfmvr_lib.training import aligned_vertex_error_mm, make_batch, synthetic_triplets
from dfmvr_lib.training.data import TrainingBatch


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """The smoke profile's benchmark, parser run and 6-step reconstruction run, in the notebooks' layout
    (``<data_dir>/synthetic_smoke_pixelface-like``, ``<data_dir>/runs/{parser,reconstruction}``)."""
    from dfmvr_lib.data.synthetic import generate_benchmark
    from dfmvr_lib.parsing import pretrain_parser
    from dfmvr_lib.training import train_reconstruction

    data_dir = tmp_path_factory.mktemp("fitting_data")
    config = get_config("smoke")
    root = generate_benchmark(data_dir / "synthetic_smoke_pixelface-like", config, "pixelface-like", progress=False)
    parser = pretrain_parser(config, root, runs_root=data_dir / "runs" / "parser", progress=False)
    run = train_reconstruction(config, root, parser.run_dir, runs_root=data_dir / "runs" / "reconstruction",
                               progress=False, validation_split=None)
    return data_dir, root, run.run_dir, parser.run_dir


@pytest.fixture(scope="module")
def reconstructor(smoke_runs):
    return load_reconstructor(smoke_runs[2])


def test_default_runs_are_found_by_their_keys_without_training(smoke_runs):
    data_dir, _, run_dir, parser_dir = smoke_runs
    runs = default_runs("smoke", data_dir)
    assert runs.reconstruction_run_dir == run_dir and runs.parser_run_dir == parser_dir
    loaded = load_reconstructor(run_dir)
    assert loaded.parser_run_dir == parser_dir and loaded.parser is not None
    assert not any(p.requires_grad for p in loaded.parser.parameters())


def test_refinement_lowers_the_fitting_loss_and_leaves_the_network_alone(smoke_runs, reconstructor):
    _, root, _, _ = smoke_runs
    test = synthetic_triplets(root, "test", progress=False)
    targets = make_batch(test, torch.tensor([0]))
    network_before = {k: v.clone() for k, v in reconstructor.network.state_dict().items()}
    parser_before = {k: v.clone() for k, v in reconstructor.parser.state_dict().items()}
    result = reconstruct_triplet(reconstructor, targets, refine_steps=24,
                                 settings=RefinementSettings(mask_weight=None))    # the training weights, mask on
    losses = result.fit.losses
    assert list(losses["step"]) == list(range(25))
    assert np.isfinite(losses.drop(columns="step").to_numpy()).all()
    assert losses["total"].iloc[-1] < 0.85 * losses["total"].iloc[0]        # 21 % lower here (24 steps)
    assert losses["mask"].iloc[0] > 0 and losses["photo"].iloc[0] > 0          # the parser and photo terms take part
    default = reconstruct_triplet(reconstructor, targets, refine_steps=2).fit.losses
    assert (default["mask"] == 0).all() and default["photo"].iloc[0] > 0       # by default the mask loss is off
    assert not torch.equal(result.coefficients.identity, result.network_coefficients.identity)
    for name, value in reconstructor.network.state_dict().items():
        assert torch.equal(value, network_before[name]), f"the network changed: {name}"
    for name, value in reconstructor.parser.state_dict().items():
        assert torch.equal(value, parser_before[name]), f"the parser changed: {name}"


def test_gradients_reach_every_coefficient_and_only_the_views_that_take_part(smoke_runs, reconstructor):
    _, root, _, _ = smoke_runs
    targets = make_batch(synthetic_triplets(root, "test", progress=False), torch.tensor([1]))
    targets.view_weight[0, 2] = 0.0                                     # view C missing from the input
    model = reconstructor.model
    coefficients = FaceCoefficients.neutral(model, 1, yaws=view_yaws(math.radians(30)))
    for name in COEFFICIENT_NAMES:
        getattr(coefficients, name).requires_grad_(True)
    terms, _ = fitting_loss(reconstructor.config.losses, model, reconstructor.camera, coefficients, targets,
                            reconstructor.parser)
    assert terms.landmark_3d.item() == 0.0                                # no 3D ground truth in fitting
    terms.total.backward()
    for name in COEFFICIENT_NAMES:
        gradient = getattr(coefficients, name).grad
        assert gradient is not None and torch.isfinite(gradient).all(), name
    for name in ("identity", "expression", "albedo", "lighting"):
        assert getattr(coefficients, name).grad.abs().sum() > 0, name
    for name in ("angles", "translation"):
        per_view = getattr(coefficients, name).grad[0].abs().sum(-1)
        assert per_view[0] > 0 and per_view[1] > 0, name
        assert per_view[2] == 0, f"{name}: the missing view got a gradient"
    # the mask term alone carries gradient through the frozen parser to the coefficients
    for name in COEFFICIENT_NAMES:
        getattr(coefficients, name).grad = None
    _, render = fitting_loss(reconstructor.config.losses, model, reconstructor.camera, coefficients, targets,
                             reconstructor.parser)
    from dfmvr_lib.losses import mask_loss
    views = lambda t: t.reshape(3, *t.shape[2:])  # noqa: E731
    mask = mask_loss(reconstructor.parser, render.render.image, render.render.alpha[:, 0], views(targets.images),
                     views(targets.parse_maps))
    mask.backward()
    assert coefficients.identity.grad.abs().sum() > 0


def test_missing_view_keeps_its_pose_and_zero_steps_returns_the_start(smoke_runs, reconstructor):
    _, root, _, _ = smoke_runs
    targets = make_batch(synthetic_triplets(root, "test", progress=False), torch.tensor([0]))
    targets.view_weight[0, 0] = 0.0
    start = FaceCoefficients.neutral(reconstructor.model, 1, yaws=view_yaws(math.radians(30)))
    result = refine_reconstruction(reconstructor.model, reconstructor.camera, start, targets,
                                   reconstructor.config.losses, reconstructor.parser, steps=5)
    assert torch.equal(result.coefficients.angles[0, 0], start.angles[0, 0])
    assert torch.equal(result.coefficients.translation[0, 0], start.translation[0, 0])
    assert not torch.equal(result.coefficients.angles[0, 1], start.angles[0, 1])
    unchanged = refine_reconstruction(reconstructor.model, reconstructor.camera, start, targets,
                                      reconstructor.config.losses, reconstructor.parser, steps=0)
    assert len(unchanged.losses) == 1
    for name in COEFFICIENT_NAMES:
        assert torch.equal(getattr(unchanged.coefficients, name), getattr(start, name))
    with pytest.raises(ValueError, match="steps"):
        refine_reconstruction(reconstructor.model, reconstructor.camera, start, targets,
                              reconstructor.config.losses, None, steps=-1)


def test_refinement_recovers_a_known_face_better_than_the_mean_face():
    """Targets rendered from known coefficients (exact parse maps and landmarks): starting from the mean face with
    the right yaws and a 4 mm offset, the fitted shape is closer to the truth than the start."""
    config = get_config("smoke")
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    yaws = view_yaws(math.radians(30))
    truth = random_coefficients(model, 1, yaws, torch.Generator().manual_seed(3), identity_scale=1.5,
                                expression_scale=0.5)
    with torch.no_grad():
        rendered = render_faces(model, truth, camera)
    images = rendered.views("image").clamp(0, 1)
    parse = rendered.views("part_labels")
    targets = TrainingBatch(images=images, parse_maps=parse, network_images=images, network_parse_maps=parse,
                            landmarks_2d=rendered.landmarks_2d, landmark_visibility=rendered.landmark_visibility(),
                            view_weight=torch.ones(1, 3), landmarks_3d=None)
    start = FaceCoefficients.neutral(model, 1, yaws=yaws)
    start.lighting = truth.lighting.clone()
    start.translation = torch.tensor([[[4.0, -3.0, 0.0]]]).expand(1, 3, 3).clone()
    result = refine_reconstruction(model, camera, start, targets, config.losses, None, steps=40,
                                   settings=RefinementSettings(shape_learning_rate=0.1))
    region = model.evaluation_region
    before = aligned_vertex_error_mm(model(start.identity, start.expression)[0], rendered.vertices, region)
    after = aligned_vertex_error_mm(result.render.vertices, rendered.vertices, region)
    assert after.item() < 0.8 * before.item()
    assert result.final_loss < 0.5 * result.initial_loss
    offset_before = (start.translation - truth.translation).norm(dim=-1).mean()
    offset_after = (result.coefficients.translation - truth.translation).norm(dim=-1).mean()
    assert offset_after < offset_before


def test_albedo_bound_keeps_the_albedo_in_its_box_and_settings_reach_the_loss_weights():
    """An albedo started at 6 sd (as the network's albedo head predicts for lips and sclera) is projected into the
    box and stays there; without a bound it is left where it is; the landmark settings reach the loss config."""
    config = get_config("smoke")
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    yaws = view_yaws(math.radians(30))
    truth = random_coefficients(model, 1, yaws, torch.Generator().manual_seed(5))
    with torch.no_grad():
        rendered = render_faces(model, truth, camera)
    images, parse = rendered.views("image").clamp(0, 1), rendered.views("part_labels")
    targets = TrainingBatch(images=images, parse_maps=parse, network_images=images, network_parse_maps=parse,
                            landmarks_2d=rendered.landmarks_2d, landmark_visibility=rendered.landmark_visibility(),
                            view_weight=torch.ones(1, 3), landmarks_3d=None)
    start = FaceCoefficients.neutral(model, 1, yaws=yaws)
    start.albedo[0, :3] = torch.tensor([6.0, -6.0, 1.0])
    bounded = refine_reconstruction(model, camera, start, targets, config.losses, None, steps=3,
                                    settings=RefinementSettings(albedo_bound=2.5))
    assert bounded.coefficients.albedo.abs().max() <= 2.5
    assert bounded.coefficients.albedo[0, 0] > 2.4 and bounded.coefficients.albedo[0, 1] < -2.4
    free = refine_reconstruction(model, camera, start, targets, config.losses, None, steps=3,
                                 settings=RefinementSettings(albedo_bound=None))
    assert free.coefficients.albedo[0, 0] > 5.0
    losses = RefinementSettings(heavy_landmark_weight=1.0, landmark_scale=4.0).fitting_losses(config.losses)
    assert losses.heavy_landmark_weight == 1.0 and losses.landmark_2d == pytest.approx(4 * config.losses.landmark_2d)
    kept = RefinementSettings(heavy_landmark_weight=None).fitting_losses(config.losses)
    assert kept.heavy_landmark_weight == config.losses.heavy_landmark_weight


# ------------------------------------------------------------------------------------------- view consistency
def test_vertical_proportions_ignore_scale_roll_and_side_views(smoke_runs):
    _, root, _, _ = smoke_runs
    data = synthetic_triplets(root, "test", progress=False)
    for sample in range(len(data)):
        proportions = np.stack([vertical_proportions(data.landmarks_2d[sample, v].numpy()) for v in range(3)])
        assert np.abs(proportions - proportions[1]).max() < PROPORTION_TOLERANCE
    points = data.landmarks_2d[0, 1].numpy().astype(np.float64)
    angle = math.radians(25)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = 1.7 * points @ rotation.T + np.array([13.0, -4.0])
    assert np.allclose(vertical_proportions(moved), vertical_proportions(points), atol=1e-9)


def test_consistency_warnings_flag_other_faces_and_swapped_sides_but_not_a_good_triplet(smoke_runs, tmp_path):
    _, root, _, _ = smoke_runs
    data = synthetic_triplets(root, "test", progress=False)
    files = []
    for view in ("left", "front", "right"):
        path = tmp_path / f"{view}.png"
        path.write_bytes(view.encode())                     # distinct contents: not "the same photo"
        files.append(path)
    landmarks = [data.landmarks_2d[0, v].numpy() for v in range(3)]
    assert view_consistency_warnings(files, landmarks) == []
    assert nose_position(landmarks[0]) < 0.4 < 0.6 < nose_position(landmarks[2])
    swapped = view_consistency_warnings(files, [landmarks[2], landmarks[1], landmarks[0]])
    assert any("left view" in m and "swapped" in m for m in swapped)
    assert any("right view" in m and "swapped" in m for m in swapped)
    longer_chin = landmarks[1].copy()
    longer_chin[5:12, 1] += 0.5 * (longer_chin[8, 1] - longer_chin[36:48, 1].mean())   # a much longer lower face
    other = view_consistency_warnings(files, [landmarks[0], longer_chin, landmarks[2]])
    assert any("different people" in m and str(files[1]) in m for m in other)
    same_photo = view_consistency_warnings([files[0], files[0], None], [landmarks[0], landmarks[0], None])
    assert any("same photo" in m for m in same_photo)


def test_refinement_can_start_from_the_mean_face_and_auto_checks_the_network(smoke_runs, reconstructor):
    import warnings

    from dfmvr_lib.reconstruction.pipeline import PlausibilityWarning

    _, root, _, _ = smoke_runs
    targets = make_batch(synthetic_triplets(root, "test", progress=False), torch.tensor([0]))
    from_mean = reconstruct_triplet(reconstructor, targets, refine_steps=0, start="mean face")
    assert from_mean.start == "mean face" and not from_mean.coefficients.identity.any()
    assert torch.allclose(from_mean.coefficients.angles, from_mean.network_coefficients.angles, atol=1e-5)  # its pose
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auto = reconstruct_triplet(reconstructor, targets, refine_steps=0, start="auto")
    check = auto.plausibility
    assert set(check) == {"network_px", "mean_face_px", "plausible"}
    assert auto.start == ("network" if check["plausible"] else "mean face")
    assert any(issubclass(w.category, PlausibilityWarning) for w in caught) == (not check["plausible"])
    with pytest.raises(ValueError, match="start"):
        reconstruct_triplet(reconstructor, targets, start="scan")


def test_landmark_fit_warnings_flag_the_one_view_whose_detection_the_face_cannot_follow():
    from dfmvr_lib.reconstruction.pipeline import LANDMARK_FIT_MINIMUM_PX, landmark_fit_warnings

    generator = torch.Generator().manual_seed(0)
    detected = torch.rand(3, 68, 2, generator=generator) * 64                      # a 64-px crop
    fitted = detected + 0.3 * torch.randn(3, 68, 2, generator=generator)           # ~1.3 px at 224 everywhere
    files = [Path("left.png"), Path("front.png"), Path("right.png")]
    given = torch.ones(3)
    assert landmark_fit_warnings(files, fitted, detected, given, 64) == []
    failed = fitted.clone()
    failed[2, 17:] += torch.tensor([3.0, 0.0])                                    # 3 px at 64 = 10.5 px at 224
    messages = landmark_fit_warnings(files, failed, detected, given, 64)
    assert len(messages) == 1 and "right.png (right view)" in messages[0] and "10." in messages[0]
    shifted_jaw = fitted.clone()
    shifted_jaw[2, :17] += 10.0                                                    # the jaw line is not looked at
    assert landmark_fit_warnings(files, shifted_jaw, detected, given, 64) == []
    small = fitted.clone()
    small[2, 17:] += torch.tensor([0.9 * LANDMARK_FIT_MINIMUM_PX * 64 / 224, 0.0])  # many times the others, < 5 px
    assert landmark_fit_warnings(files, small, detected, given, 64) == []
    assert landmark_fit_warnings(files, failed, detected, torch.tensor([1.0, 1.0, 0.0]), 64) == []  # not given
