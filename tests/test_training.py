"""Reconstruction training: schedule, batch order, view dropping, augmentation, initial prediction, loss decrease,
resume after kill -9 with the same result, reuse of a finished run, validation error, population batch-norm
statistics in the saved network, the on-disk cache of a split's tensors."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pandas as pd
import torch

from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.config import get_config
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.similarity import apply_similarity
from dfmvr_lib.networks import build_network
from dfmvr_lib.training import (aligned_vertex_error_mm, learning_rate_factor, make_batch, reconstruct,
                                synthetic_triplets, train_reconstruction)
from dfmvr_lib.training.batch_norm import batch_norm_layers, batch_norm_state, recompute_batch_norm_statistics
from dfmvr_lib.training.data import batch_indices, single_view_keep, step_generator
from dfmvr_lib.training.input_masks import with_input_masks
from dfmvr_lib.training.loop import PRECISE_BN_BATCHES

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_setup(tmp_path_factory):
    """A smoke-profile benchmark and a finished smoke parser run."""
    from dfmvr_lib.data.synthetic import generate_benchmark
    from dfmvr_lib.parsing import pretrain_parser

    root = tmp_path_factory.mktemp("training")
    config = get_config("smoke")
    benchmark = root / "synthetic"
    generate_benchmark(benchmark, config, progress=False)
    parser = pretrain_parser(config, benchmark, runs_root=root / "parser", progress=False)
    return config, benchmark, parser.run_dir, root


def test_learning_rate_schedule_constant_then_cosine_to_floor():
    training = get_config("smoke", {"training.steps": 100, "training.constant_fraction": 0.2}).training
    factors = [learning_rate_factor(training, step) for step in range(100)]
    assert all(f == 1.0 for f in factors[:20])
    assert all(a >= b for a, b in zip(factors[20:], factors[21:]))
    assert factors[-1] == pytest.approx(training.final_learning_rate / training.learning_rate)


def test_batch_order_depends_only_on_seed_and_step_and_covers_each_epoch():
    first_epoch = torch.cat([batch_indices(10, 5, step, seed=3) for step in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert torch.equal(batch_indices(10, 5, 7, seed=3), batch_indices(10, 5, 7, seed=3))
    assert not torch.equal(batch_indices(10, 5, 0, seed=3), batch_indices(10, 5, 0, seed=4))


def test_single_view_mode_keeps_one_view_a_third_of_the_time():
    keep = single_view_keep(6000, 3, torch.Generator().manual_seed(0))
    counts = keep.sum(1)
    assert set(counts.tolist()) <= {1, 3}
    dropped = (counts == 1).float().mean().item()
    assert dropped == pytest.approx(1 / 3, abs=0.03)
    kept_view = keep[counts == 1].float().mean(0)           # the three variants equally often
    assert torch.allclose(kept_view, torch.full((3,), 1 / 3), atol=0.04)


def test_make_batch_drops_views_to_black_and_jitters_colours_identically(smoke_setup):
    config, benchmark, _, _ = smoke_setup
    data = synthetic_triplets(benchmark, "train", progress=False)
    same = data.images.clone()
    same[:, 1] = same[:, 0]
    same[:, 2] = same[:, 0]
    data_same = type(data)(same, data.parse_maps, data.landmarks_2d, data.landmark_visibility, data.view_present,
                           data.landmarks_3d)
    batch = make_batch(data_same, torch.arange(4), torch.Generator().manual_seed(1), colour_augment=True)
    assert torch.equal(batch.images[:, 0], batch.images[:, 1]) and torch.equal(batch.images[:, 0], batch.images[:, 2])
    assert not torch.allclose(batch.images[:, 0], same[:4, 0].float() / 255, atol=1e-3)
    for seed in range(20):                                   # find a draw that drops views
        batch = make_batch(data, torch.arange(4), torch.Generator().manual_seed(seed), single_view_mode=True)
        dropped = batch.view_weight == 0
        if dropped.any():
            break
    assert dropped.any()
    assert batch.network_images[dropped].abs().sum() == 0 and batch.network_parse_maps[dropped].sum() == 0
    assert batch.images[dropped].abs().sum() > 0            # the loss targets keep every view


def test_untrained_network_predicts_the_mean_face_in_front_of_the_camera(smoke_setup):
    config = smoke_setup[0]
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    network = build_network(config).eval()
    images = torch.rand(2, 3, 3, config.image_size, config.image_size)
    parse = torch.randint(0, 10, (2, 3, config.image_size, config.image_size))
    prediction = reconstruct(network, model, camera, images, parse)
    assert torch.allclose(prediction.vertices, model.mean_shape.expand(2, -1, -1), atol=1e-4)
    depth = camera.depth(prediction.posed_vertices)
    assert depth.min() > 800 and depth.max() < 1200          # in front of the camera, about 1 m away
    coverage = prediction.render.render.alpha.mean((1, 2, 3))
    assert (coverage > 0.1).all()                            # every view sees the face


def test_training_lowers_the_loss_on_a_small_set(smoke_setup, tmp_path):
    config, benchmark, parser_dir, _ = smoke_setup
    data = synthetic_triplets(benchmark, "train", progress=False)
    small = type(data)(*(t[:2] if t is not None else None for t in (data.images, data.parse_maps, data.landmarks_2d,
                                                                       data.landmark_visibility, data.view_present,
                                                                       data.landmarks_3d)))
    config = get_config("smoke", {"training.steps": 40, "training.batch_size": 2, "training.learning_rate": 1e-3,
                                  "training.final_learning_rate": 1e-3, "training.colour_augment": False,
                                  "training.checkpoint_every": 100})
    run = train_reconstruction(config, benchmark, parser_dir, run_dir=tmp_path / "run", progress=False,
                               train_data=small, validation_split=None)
    losses = run.metrics["total"]
    assert losses.iloc[-5:].mean() < 0.8 * losses.iloc[:5].mean()
    assert run.metrics[["photo", "mask", "landmark_2d", "landmark_3d"]].iloc[0].gt(0).all()


_TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    from dfmvr_lib.config import get_config
    from dfmvr_lib.training import train_reconstruction
    config = get_config("smoke", {"training.steps": 8, "training.checkpoint_every": 2})
    train_reconstruction(config, sys.argv[1], sys.argv[2], run_dir=sys.argv[3], progress=False)
""")


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "final.pt", map_location="cpu", weights_only=False)["model"]


def test_kill_minus_nine_then_resume_finishes_with_the_same_result(smoke_setup, tmp_path):
    _, benchmark, parser_dir, _ = smoke_setup
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, str(script), str(benchmark), str(parser_dir), str(straight)], check=True,
                   env=environment, capture_output=True)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, str(script), str(benchmark), str(parser_dir), str(interrupted)],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (interrupted / "checkpoint.pt").is_file():
        assert process.poll() is None, "the run finished before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (interrupted / "done.json").is_file()
    resumed = subprocess.run([sys.executable, str(script), str(benchmark), str(parser_dir), str(interrupted)],
                             env=environment, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    a, b = _final_state(straight), _final_state(interrupted)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-5, rtol=1e-4), name
    import pandas as pd
    metrics_a = pd.read_csv(straight / "metrics.csv")
    metrics_b = pd.read_csv(interrupted / "metrics.csv")
    assert list(metrics_b["step"]) == list(range(1, 9))
    assert (metrics_a["total"] - metrics_b["total"]).abs().max() < 1e-4
    validation_a = pd.read_csv(straight / "validation.csv")
    validation_b = pd.read_csv(interrupted / "validation.csv")
    assert validation_a["network_mm"].iloc[-1] == pytest.approx(validation_b["network_mm"].iloc[-1], abs=1e-4)


def test_finished_run_is_reused_and_resume_after_stop(smoke_setup):
    config, benchmark, parser_dir, root = smoke_setup
    runs = root / "reuse_runs"
    partial = train_reconstruction(config, benchmark, parser_dir, runs_root=runs, progress=False, stop_after=3)
    assert not partial.finished
    finished = train_reconstruction(config, benchmark, parser_dir, runs_root=runs, progress=False)
    assert finished.resumed_from == 3 and finished.run_dir == partial.run_dir
    again = train_reconstruction(config, benchmark, parser_dir, runs_root=runs, progress=False)
    assert again.reused and again.run_dir == finished.run_dir
    assert len(again.metrics) == config.training.steps
    other = get_config("smoke", {"losses.use_landmark_3d": False})
    assert train_reconstruction(other, benchmark, parser_dir, runs_root=runs, progress=False,
                                stop_after=0).run_dir != finished.run_dir


def test_mask_loss_without_parser_is_a_clear_error(smoke_setup):
    config, benchmark, _, root = smoke_setup
    with pytest.raises(ValueError, match="parser_run_dir"):
        train_reconstruction(config, benchmark, None, runs_root=root / "none", progress=False)


def test_aligned_vertex_error_known_cases():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 500, 3, generator=generator) * 50
    assert aligned_vertex_error_mm(target, target).abs().max() < 1e-4
    rotation = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0.1], [0.3, 0.0, -0.2], [-0.1, 0.2, 0.0]]))
    moved = apply_similarity(target, torch.tensor([1.1, 0.9]), rotation.expand(2, 3, 3),
                             torch.tensor([5.0, -3, 2]).expand(2, 3))
    assert aligned_vertex_error_mm(moved, target).abs().max() < 1e-3
    offset = target.clone()
    offset[:, ::2, 2] += 2.0                       # +2 mm on half the points, -2 mm after centring: ~2 mm
    region = torch.ones(500, dtype=torch.bool)
    assert aligned_vertex_error_mm(offset, target, region).mean().item() == pytest.approx(1.0, abs=0.1)


def test_single_image_baseline_network_and_its_consistency_losses(smoke_setup):
    from dfmvr_lib.training.forward import batch_loss

    config = get_config("smoke", {"network.backbone": "single_image", "network.regressor": "resnet50",
                                  "losses.use_mask": False, "losses.photo_weighting": "skin",
                                  "losses.shape_consistency": 1.0, "losses.cross_view_photo": 2.0})
    _, benchmark, _, _ = smoke_setup
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    network = build_network(config)
    data = synthetic_triplets(benchmark, "train", progress=False)
    batch = make_batch(data, torch.arange(2))
    prediction = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps)
    assert prediction.coefficients.identity.shape[0] == 6 and prediction.coefficients.angles.shape[1] == 1
    assert torch.allclose(prediction.vertices, model.mean_shape.expand(6, -1, -1), atol=1e-4)
    terms = batch_loss(config.losses, prediction, batch, model, None, camera=camera)
    assert terms.consistency.item() == 0.0                  # identical (mean) shapes from every view
    assert terms.cross_view.item() == pytest.approx(terms.photo.item(), rel=1e-5)   # same shape -> same render
    again = reconstruct(network, model, camera, batch.network_images, batch.network_parse_maps)
    again.coefficients.identity[0::3] += 1.0              # view A's shape differs by +1 in every component
    from dfmvr_lib.scene import render_faces
    again.render = render_faces(model, again.coefficients, camera)
    terms = batch_loss(config.losses, again, batch, model, None, camera=camera)
    spread = (80 * (2 / 3) ** 2 + 2 * 80 * (1 / 3) ** 2) / 3  # per triplet: mean over views of |c_v - mean|^2
    assert terms.consistency.item() == pytest.approx(spread, rel=1e-4)
    assert terms.cross_view.item() != pytest.approx(terms.photo.item(), rel=1e-3)


def test_train_methods_side_by_side_then_reuse_and_mean_face_reference(smoke_setup):
    """Two runs trained in two worker processes finish like any run; asking again reuses them (no retraining);
    the mean-face reference row goes through the same evaluation protocol."""
    from dfmvr_lib.experiments import evaluate_mean_face, load_synthetic_test_set, train_methods
    from dfmvr_lib.face_model.factory import load_face_model

    config, benchmark, parser_dir, root = smoke_setup
    jobs = [("dfmvr", 0, None), ("v4_no_mask", 0, None)]
    kwargs = dict(profile="smoke", dataset_root=benchmark, parser_run_dir=parser_dir, runs_root=root / "side_by_side",
                  progress=False)
    run_dirs = [Path(d) for d in train_methods(jobs, workers=2, **kwargs)]
    assert len(set(run_dirs)) == 2
    for run_dir in run_dirs:
        assert (run_dir / "done.json").is_file() and len(pd.read_csv(run_dir / "metrics.csv")) == config.training.steps
    stamps = [(d / "final.pt").stat().st_mtime_ns for d in run_dirs]
    assert [Path(d) for d in train_methods(jobs, workers=2, **kwargs)] == run_dirs
    assert [(d / "final.pt").stat().st_mtime_ns for d in run_dirs] == stamps

    test_set = load_synthetic_test_set(benchmark, load_face_model(config.face_model), limit=2)
    errors = evaluate_mean_face("smoke", test_set, progress=False)
    assert len(errors) == 2 and (errors["seed"] == -1).all() and (errors["reconstruction"] == "fused").all()
    assert (errors["rmse_mm"] > 0.1).all() and (errors["rmse_mm"] < 20).all()


def test_paired_vertex_error_test_sees_a_consistent_gain():
    from dfmvr_lib.training import paired_vertex_error_test

    mean_face = pd.Series([3.0 + 0.1 * i for i in range(20)])
    table = pd.DataFrame({"network_mm": mean_face - 0.3 + 0.01 * (pd.Series(range(20)) % 3), "mean_face_mm": mean_face})
    result = paired_vertex_error_test(table)
    assert result["difference_mm"] == pytest.approx(-0.3 + 0.01 * (sum(i % 3 for i in range(20)) / 20))
    assert result["wilcoxon_p"] < 1e-3 and result["t_test_p"] < 1e-3
    assert paired_vertex_error_test(table.assign(network_mm=mean_face))["wilcoxon_p"] == 1.0


def test_split_tensors_are_cached_on_disk_keyed_by_the_manifest(smoke_setup, tmp_path):
    import shutil

    from dfmvr_lib.data.synthetic import SyntheticMultiViewDataset
    from dfmvr_lib.training import data as training_data
    from dfmvr_lib.training.data import TRIPLET_CACHE_FOLDER, load_triplets

    _, benchmark, _, _ = smoke_setup
    copy = tmp_path / "benchmark"
    shutil.copytree(benchmark, copy, ignore=shutil.ignore_patterns(TRIPLET_CACHE_FOLDER))
    training_data._CACHE.clear()
    first = synthetic_triplets(copy, "train", progress=False)
    cache = copy / TRIPLET_CACHE_FOLDER / "train.pt"
    assert cache.is_file()
    direct = load_triplets(SyntheticMultiViewDataset(copy, "train", load_mesh=False), progress=False)
    training_data._CACHE.clear()                                   # a new process: read from the disk cache
    stored = torch.load(cache, weights_only=True)
    stored["images"][0] = 0                                        # mark the cached copy to see it is what is read
    torch.save(stored, cache)
    from_disk = synthetic_triplets(copy, "train", progress=False)
    assert torch.equal(from_disk.images[0], torch.zeros_like(direct.images[0]))
    assert torch.equal(from_disk.images[1:], direct.images[1:]) and torch.equal(first.images, direct.images)
    assert torch.equal(from_disk.landmarks_2d, direct.landmarks_2d)
    manifest = copy / "manifest.csv"                               # another manifest: read from the images again
    manifest.write_text(manifest.read_text() + "\n")
    training_data._CACHE.clear()
    again = synthetic_triplets(copy, "train", progress=False)
    assert torch.equal(again.images, direct.images)
    cache.write_bytes(b"not a torch file")                         # an unreadable cache is ignored and rewritten
    manifest.write_text(manifest.read_text() + "\n")
    training_data._CACHE.clear()
    assert torch.equal(synthetic_triplets(copy, "train", progress=False).images, direct.images)
    assert torch.load(cache, weights_only=True)["split"] == "train"


def test_training_saves_population_statistics_and_mid_run_validation_changes_nothing(smoke_setup, tmp_path):
    _, benchmark, parser_dir, _ = smoke_setup
    base = {"training.steps": 6, "training.checkpoint_every": 3}
    configs = {every: get_config("smoke", {**base, "training.validate_every": every}) for every in (0, 2)}
    for every, config in configs.items():     # stop at the step-3 checkpoint (after the validation pass at step 2)
        train_reconstruction(config, benchmark, parser_dir, run_dir=tmp_path / str(every), progress=False,
                             stop_after=3)
    halfway = [torch.load(tmp_path / str(every) / "checkpoint.pt", weights_only=True)["model"] for every in (0, 2)]
    for name in halfway[0]:                   # the mid-run pass put the running averages back
        assert torch.equal(halfway[0][name], halfway[1][name]), name
    plain, validated = (train_reconstruction(configs[every], benchmark, parser_dir, run_dir=tmp_path / str(every),
                                             progress=False) for every in (0, 2))
    assert list(validated.validation["step"]) == [2, 4, 6]
    a, b = _final_state(plain.run_dir), _final_state(validated.run_dir)
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-6), name

    # the saved statistics are the population statistics of the last training batches under the final weights
    config = plain.config
    network = build_network(config)
    network.load_state_dict(a)
    data = synthetic_triplets(benchmark, "train", progress=False)
    data = with_input_masks(data, config.training.input_masks, benchmark, "train", parser_dir, False)
    steps = range(max(0, config.training.steps - PRECISE_BN_BATCHES), config.training.steps)
    batches = [make_batch(data, batch_indices(len(data), config.training.batch_size, s, config.seed),
                          step_generator(config.seed, s), colour_augment=config.training.colour_augment,
                          single_view_mode=config.training.single_view_mode) for s in steps]
    saved = batch_norm_state(network)
    recompute_batch_norm_statistics(network, batches, lambda n, b: n(b.network_images, b.network_parse_maps))
    for (mean, var, _), layer in zip(saved, batch_norm_layers(network)):
        assert torch.allclose(mean, layer.running_mean, atol=1e-5)
        assert torch.allclose(var, layer.running_var, atol=1e-4, rtol=1e-4)
