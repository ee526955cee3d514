"""The paper's inputs and the references of the tables: parser-fed input masks (computed by the parser, cached,
invalidated by another parser run), detector-noise landmarks (their measured NME), the ceiling fit (a case with a
known answer), and the precision choice (native bf16 only)."""
import math

import pytest
import torch

from dfmvr_lib.config import get_config
from dfmvr_lib.evaluation.ceiling import best_fit_shapes
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.similarity import apply_similarity
from dfmvr_lib.precision import autocast, cpu_flags, resolve_precision
from dfmvr_lib.training import aligned_vertex_error_mm, synthetic_triplets
from dfmvr_lib.training import input_masks
from dfmvr_lib.training.input_masks import cache_path, parser_parse_maps, with_input_masks
from dfmvr_lib.training.landmark_noise import (OFFLINE_DETECTOR_NME, interocular_pixels, normalised_mean_error,
                                               perturb_landmarks)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """A smoke benchmark and two different finished smoke parser runs (seeds 0 and 1)."""
    from dfmvr_lib.data.synthetic import generate_benchmark
    from dfmvr_lib.parsing import pretrain_parser

    root = tmp_path_factory.mktemp("inputs")
    config = get_config("smoke")
    benchmark = generate_benchmark(root / "synthetic", config, progress=False)
    first = pretrain_parser(config, benchmark, runs_root=root / "parser", progress=False)
    second = pretrain_parser(get_config("smoke", {"seed": 1}), benchmark, runs_root=root / "parser", progress=False)
    return config, benchmark, first.run_dir, second.run_dir


def test_input_masks_come_from_the_parser_and_are_cached_per_parser_run(smoke_data, monkeypatch):
    from dfmvr_lib.parsing import load_run_model, predict_labels

    _, benchmark, first, second = smoke_data
    data = synthetic_triplets(benchmark, "train", progress=False)
    input_masks._MEMORY.clear()
    labels = parser_parse_maps(data, benchmark, "train", first, progress=False)
    M, S, H, W = data.parse_maps.shape
    assert labels.shape == (M, S, H, W) and labels.dtype == torch.uint8
    expected = predict_labels(load_run_model(first), data.images.reshape(M * S, 3, H, W).float() / 255.0)
    assert torch.equal(labels.reshape(M * S, H, W).long(), expected)
    assert not torch.equal(labels, data.parse_maps)              # not the renderer's exact maps
    assert cache_path(benchmark, "train", first).is_file()

    calls = []
    original = input_masks.run_parser_on_views
    monkeypatch.setattr(input_masks, "run_parser_on_views", lambda *a, **k: calls.append(1) or original(*a, **k))
    input_masks._MEMORY.clear()
    again = parser_parse_maps(data, benchmark, "train", first, progress=False)
    assert torch.equal(again, labels) and calls == []           # read from the cache, the parser did not run
    other = parser_parse_maps(data, benchmark, "train", second, progress=False)
    assert calls == [1]                                          # another parser run: computed again
    assert not torch.equal(other, labels)

    # new weights in the same run folder invalidate its cache too
    state = torch.load(first / "final.pt", weights_only=True)
    state["model"] = {k: (v + 0.05 if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save(state, first / "final.pt")
    input_masks._MEMORY.clear()
    parser_parse_maps(data, benchmark, "train", first, progress=False)
    assert calls == [1, 1]


def test_ground_truth_masks_are_an_explicit_setting(smoke_data):
    _, benchmark, first, _ = smoke_data
    data = synthetic_triplets(benchmark, "train", progress=False)
    assert with_input_masks(data, "ground_truth", benchmark, "train", None) is data
    with pytest.raises(ValueError, match="parser run"):
        with_input_masks(data, "parser", benchmark, "train", None)
    with pytest.raises(ValueError, match="input_masks"):
        with_input_masks(data, "polygons", benchmark, "train", first)


def test_landmark_noise_has_the_detectors_nme():
    generator = torch.Generator().manual_seed(0)
    M = 400
    landmarks = torch.rand(M, 3, 68, 2, generator=generator) * 60 + 30
    landmarks[:, 1, 36] = torch.tensor([40.0, 50.0])              # outer eye corners 40 px apart in the front view
    landmarks[:, 1, 45] = torch.tensor([80.0, 50.0])
    noisy = perturb_landmarks(landmarks, OFFLINE_DETECTOR_NME, seed=3)
    assert torch.allclose(interocular_pixels(landmarks), torch.full((M,), 40.0))
    nme = normalised_mean_error(noisy, landmarks)
    assert nme == pytest.approx(OFFLINE_DETECTOR_NME, rel=0.03)
    assert torch.equal(perturb_landmarks(landmarks, OFFLINE_DETECTOR_NME, seed=3), noisy)      # one draw per image
    assert torch.equal(perturb_landmarks(landmarks, 0.0), landmarks)
    doubled = normalised_mean_error(perturb_landmarks(landmarks, 2 * OFFLINE_DETECTOR_NME, seed=3), landmarks)
    assert doubled == pytest.approx(2 * nme, rel=1e-4)


def test_ceiling_fit_recovers_a_face_inside_the_model_span():
    model = load_face_model(get_config("smoke").face_model)
    generator = torch.Generator().manual_seed(0)
    identity = torch.randn(2, model.num_identity, generator=generator)
    expression = torch.randn(2, model.num_expression, generator=generator) * 0.7
    vertices, _ = model(identity, expression)
    angle = torch.tensor(0.2)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[1.0, 0, 0], [0, cos, -sin], [0, sin, cos]])
    moved = apply_similarity(vertices, torch.tensor([1.1, 0.9]), rotation.expand(2, 3, 3),
                             torch.tensor([[5.0, -3, 2]] * 2))
    fit = best_fit_shapes(model, moved)
    region = model.evaluation_region                 # the fit sees the front face only: compare the shapes there
    assert (fit.vertices - vertices)[:, region].abs().max() < 1e-3
    refit, _ = model(fit.identity, fit.expression)
    assert torch.allclose(refit, fit.vertices, atol=1e-3)
    assert fit.rms_residual_mm.max() < 1e-3
    assert aligned_vertex_error_mm(fit.vertices, moved, model.evaluation_region).max() < 1e-3


def test_ceiling_fit_beats_the_mean_face_and_keeps_what_lies_outside_the_span():
    model = load_face_model(get_config("smoke").face_model)
    generator = torch.Generator().manual_seed(1)
    vertices, _ = model(torch.randn(3, model.num_identity, generator=generator))
    bump = torch.randn(3, model.num_vertices, 3, generator=generator)      # not smooth: mostly outside the span
    target = vertices + bump
    fit = best_fit_shapes(model, target)
    fitted = aligned_vertex_error_mm(fit.vertices, target, model.evaluation_region)
    mean_face = aligned_vertex_error_mm(model.mean_shape.expand_as(target), target, model.evaluation_region)
    assert (fitted < mean_face).all()
    assert (fit.rms_residual_mm > 1.0).all()                               # the noise stays


def test_precision_auto_follows_the_cpu_and_the_override(monkeypatch):
    monkeypatch.delenv("DFMVR_PRECISION", raising=False)
    native = {"amx_bf16", "avx512_bf16"} & cpu_flags()
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    monkeypatch.setenv("DFMVR_PRECISION", "fp32")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("bf16") == "bf16"                              # an explicit setting wins
    monkeypatch.setenv("DFMVR_PRECISION", "fp16")
    with pytest.raises(ValueError, match="DFMVR_PRECISION"):
        resolve_precision("auto")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half")
    with autocast("bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cpu_flags_reads_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_training_reads_the_parser_masks_and_records_its_precision(smoke_data, tmp_path):
    import json

    from dfmvr_lib.training import train_reconstruction

    config, benchmark, first, _ = smoke_data
    config = get_config("smoke", {"training.steps": 2, "training.checkpoint_every": 2})
    with pytest.raises(ValueError, match="parser"):
        train_reconstruction(config, benchmark, None, runs_root=tmp_path, progress=False)
    run = train_reconstruction(config, benchmark, first, runs_root=tmp_path, progress=False)
    key = json.loads((run.run_dir / "run.json").read_text())
    assert key["precision"] == resolve_precision(config.training.precision)
    assert key["parser_run"] == first.name
    assert cache_path(benchmark, "train", first).is_file() and cache_path(benchmark, "validation", first).is_file()
    oracle = get_config("smoke", {"training.steps": 2, "training.input_masks": "ground_truth",
                                  "losses.use_mask": False})
    assert train_reconstruction(oracle, benchmark, None, runs_root=tmp_path, progress=False).finished


def test_pose_start_rig_reads_the_benchmarks_camera_yaws(smoke_data):
    from dfmvr_lib.training.loop import resolve_pose_start, rig_view_yaws

    config, benchmark, _, _ = smoke_data
    side = config.data.side_yaw_degrees
    assert rig_view_yaws(benchmark) == (-side, 0.0, side)
    rig = resolve_pose_start(get_config("smoke", {"network.pose_start": "rig"}), benchmark)
    assert rig.network.initial_view_yaws_degrees == (-side, 0.0, side)
    frontal = resolve_pose_start(get_config("smoke"), benchmark)
    assert frontal.network.initial_view_yaws_degrees == ()
    single = resolve_pose_start(get_config("smoke", {"network.pose_start": "rig", "network.backbone": "single_image"}),
                                benchmark)
    assert single.network.initial_view_yaws_degrees == ()
