"""Synthetic multi-view benchmark: determinism, exact ground truth, splits, files, resume, dataset."""
import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dfmvr_lib.camera import PerspectiveCamera, apply_pose
from dfmvr_lib.config import get_config
from dfmvr_lib.data import MultiViewSample, collate_samples
from dfmvr_lib.data.mesh_io import read_ply, write_ply
from dfmvr_lib.data.synthetic import (SyntheticMultiViewDataset, SyntheticSettings, generate_benchmark, load_manifest,
                                      load_settings, span_residual_mm)
from dfmvr_lib.data.synthetic_scene import SampleSpec, draw_sample, ground_truth_vertices, random_background
from dfmvr_lib.data.synthetic_settings import BACKGROUND_KINDS
from dfmvr_lib.face_model import load_face_model
from dfmvr_lib.render import render_views

CONFIG = get_config("smoke")


@pytest.fixture(scope="module")
def settings():
    return SyntheticSettings.from_config(CONFIG, "pixelface-like")


@pytest.fixture(scope="module")
def gt_model(settings):
    return load_face_model(settings.face_model)


@pytest.fixture(scope="module")
def root(tmp_path_factory, settings):
    return generate_benchmark(tmp_path_factory.mktemp("synthetic") / "bench", settings, progress=False)


def _sample_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "samples").rglob("*")) if p.is_file()}


def _arrays(root: Path, sample_id: str) -> dict[str, np.ndarray]:
    out = {}
    for name in ("annotations", "coefficients"):
        with np.load(root / "samples" / sample_id / f"{name}.npz") as data:
            out.update({f"{name}.{k}": data[k] for k in data.files})
    for name in ("A", "B", "C"):
        out[name] = np.asarray(Image.open(root / "samples" / sample_id / f"{name}.png"))
    return out


def test_manifest_and_split_by_subject(root, settings):
    manifest = pd.read_csv(root / "manifest.csv")
    assert len(manifest) == settings.num_samples == 20
    assert manifest.groupby("subject_id")["split"].nunique().max() == 1
    subjects = manifest.groupby("split")["subject_id"].nunique()
    assert subjects.to_dict() == {"train": CONFIG.data.train_subjects, "validation": CONFIG.data.validation_subjects,
                                  "test": CONFIG.data.test_subjects}
    assert set(manifest["preset"]) == {"pixelface-like"}
    side = CONFIG.data.side_yaw_degrees
    assert (manifest["yaw_A_degrees"] == -side).all() and (manifest["yaw_C_degrees"] == side).all()
    # meshes only for validation and test; every listed file exists
    has_mesh = load_manifest(root)["mesh"] != ""
    assert (has_mesh == manifest["split"].isin(["validation", "test"])).all()
    for column in [c for c in manifest.columns if c.startswith(("image_", "parse_")) or c in ("annotations",)]:
        assert all((root / path).is_file() for path in manifest[column])
    # one lighting setup for the pixelface-like preset
    lights = {tuple(np.load(root / path)["lighting"].round(6)) for path in manifest["coefficients"]}
    assert len(lights) == 1


def test_determinism(root, settings, tmp_path):
    again = generate_benchmark(tmp_path / "again", settings, progress=False)
    assert _sample_files(again) == _sample_files(root)
    assert (again / "manifest.csv").read_text() == (root / "manifest.csv").read_text()
    other = generate_benchmark(tmp_path / "other", dataclasses.replace(settings, seed=1, train_subjects=1,
                                                                       validation_subjects=0, test_subjects=0),
                               progress=False)
    first, second = _arrays(root, "s00000_e00"), _arrays(other, "s00000_e00")
    assert not np.array_equal(first["A"], second["A"])
    assert not np.allclose(first["coefficients.identity"], second["coefficients.identity"])


def test_landmarks_land_on_the_ground_truth(root, settings, gt_model):
    camera = PerspectiveCamera.for_image_size(settings.image_size, settings.focal_length_at_224,
                                              settings.camera_distance_mm)
    manifest = load_manifest(root)
    rows = manifest[manifest["mesh"] != ""]
    on_nose = 0
    for _, row in rows.iterrows():
        vertices, triangles = read_ply(root / row["mesh"])
        assert np.array_equal(triangles, gt_model.triangles.numpy())
        with np.load(root / row["annotations"]) as annotations:
            angles, translation = annotations["angles"], annotations["translation"]
            landmarks_2d, landmarks_3d = annotations["landmarks_2d"], annotations["landmarks_3d"]
        assert np.allclose(landmarks_3d, vertices[gt_model.landmark_101.numpy()], atol=1e-4)
        posed = apply_pose(torch.from_numpy(vertices).expand(3, -1, -1), torch.from_numpy(angles),
                           torch.from_numpy(translation))
        projected = camera.project(posed[:, gt_model.landmark_68]).numpy()
        assert np.abs(projected - landmarks_2d).max() < 1e-3
        # the nose tip (iBUG 30) of the front view lies on a nose pixel of the parse map
        parse = np.asarray(Image.open(root / row["parse_B"]))
        u, v = landmarks_2d[1, 30]
        on_nose += parse[int(math.floor(v)), int(math.floor(u))] == 6
    assert on_nose == len(rows)


def test_parse_maps_match_a_re_render(root, settings, gt_model):
    camera = PerspectiveCamera.for_image_size(settings.image_size, settings.focal_length_at_224,
                                              settings.camera_distance_mm)
    row = load_manifest(root).query("split == 'test'").iloc[0]
    vertices, _ = read_ply(root / row["mesh"])
    with np.load(root / row["annotations"]) as annotations:
        posed = apply_pose(torch.from_numpy(vertices).expand(3, -1, -1), torch.from_numpy(annotations["angles"]),
                           torch.from_numpy(annotations["translation"]))
    rendered = render_views(posed, gt_model.triangles, torch.ones(1, vertices.shape[0], 3), camera,
                            vertex_labels=gt_model.part_labels)
    saved = np.stack([np.asarray(Image.open(root / row[f"parse_{v}"])) for v in "ABC"])
    agreement = (rendered.part_labels.numpy() == saved).mean()
    assert agreement > 0.999
    assert set(np.unique(saved)) >= {0, 1, 2, 3, 4, 5, 6, 8, 9}


def test_meshes_in_mm_and_outside_the_reconstruction_span(root, settings, gt_model):
    manifest = load_manifest(root)
    reconstruction = load_face_model(CONFIG.face_model)  # 80 identity components
    assert reconstruction.num_identity == settings.reconstruction_identity_components < gt_model.num_identity
    assert torch.equal(gt_model.identity_basis[:, :, :reconstruction.num_identity], reconstruction.identity_basis)
    region = reconstruction.evaluation_region.numpy()
    residuals = []
    for _, row in manifest[manifest["mesh"] != ""].iterrows():
        vertices, _ = read_ply(root / row["mesh"])
        width = vertices[region, 0].max() - vertices[region, 0].min()
        assert 100.0 < width < 200.0
        residuals.append(span_residual_mm(reconstruction, torch.as_tensor(vertices), reconstruction.num_identity,
                                          reconstruction.num_expression))
    assert residuals and all(0.3 < r < 6.0 for r in residuals), residuals
    # a face made inside the span has (almost) no residual: the fit itself is right
    identity, expression = reconstruction.num_identity, reconstruction.num_expression
    inside, _ = reconstruction(torch.randn(1, identity), torch.randn(1, expression))
    assert span_residual_mm(reconstruction, inside[0], identity, expression) < 1e-2


def test_ground_truth_rebuilds_from_saved_coefficients(root, gt_model):
    row = load_manifest(root).query("split == 'train'").iloc[3]
    with np.load(root / row["coefficients"]) as c, np.load(root / row["annotations"]) as a:
        t = lambda k: torch.from_numpy(np.asarray(c[k]))[None]  # noqa: E731
        vertices = ground_truth_vertices(gt_model, t("identity"), t("expression"), t("bump_centres"),
                                         t("bump_sigmas"), t("bump_amplitudes"), t("bump_offset"))
        assert np.allclose(vertices[0, gt_model.landmark_101].numpy(), a["landmarks_3d"], atol=1e-3)
        # the displacement is a few mm and really there
        plain = gt_model.shape(t("identity"), t("expression"))
    region = gt_model.evaluation_region
    rms = (vertices - plain)[0, region].norm(dim=-1).square().mean().sqrt()
    assert 1.0 < float(rms) < 4.0


def test_skip_rerun_and_resume(root, settings, tmp_path):
    manifest_time = (root / "manifest.csv").stat().st_mtime_ns
    assert generate_benchmark(root, settings, progress=False) == root
    assert (root / "manifest.csv").stat().st_mtime_ns == manifest_time
    assert load_settings(root) == settings
    with pytest.raises(FileExistsError, match="different settings"):
        generate_benchmark(root, dataclasses.replace(settings, seed=5), progress=False)
    # simulate an interruption: no manifest, two samples missing, one half-written folder
    copy = tmp_path / "interrupted"
    shutil.copytree(root, copy)
    (copy / "manifest.csv").unlink()
    shutil.rmtree(copy / "samples" / "s00003_e01")
    shutil.rmtree(copy / "samples" / "s00008_e00")
    partial = copy / "samples" / ".partial-s00008_e00"
    partial.mkdir()
    (partial / "A.png").write_bytes(b"truncated")
    generate_benchmark(copy, settings, progress=False)
    assert not partial.exists()
    assert _sample_files(copy) == _sample_files(root)
    assert (copy / "manifest.csv").read_text() == (root / "manifest.csv").read_text()
    # overwrite=True replaces a benchmark with other settings
    smaller = dataclasses.replace(settings, seed=3, train_subjects=1, validation_subjects=0, test_subjects=0)
    generate_benchmark(copy, smaller, overwrite=True, progress=False)
    assert len(load_manifest(copy)) == smaller.num_samples and load_settings(copy) == smaller
    assert not (copy / "samples" / "s00003_e01").exists()
    # a folder that is not a benchmark is never overwritten
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_benchmark(stranger, settings, overwrite=True, progress=False)


def test_dataset_returns_valid_samples(root, settings):
    test = SyntheticMultiViewDataset(root, "test")
    assert len(test) == CONFIG.data.test_subjects * CONFIG.data.samples_per_subject
    sample = test[0]
    assert isinstance(sample, MultiViewSample)
    sample.validate()
    size = settings.image_size
    assert sample.images.shape == (3, 3, size, size) and sample.images.dtype == torch.float32
    assert 0.0 <= float(sample.images.min()) and float(sample.images.max()) <= 1.0
    assert sample.parse_maps.dtype == torch.int64 and int(sample.parse_maps.max()) <= 9
    assert sample.view_present.all() and sample.landmark_visibility[1].sum() >= 60
    assert not sample.landmark_visibility[0].all()  # the side views hide some contour points
    assert sample.mesh_vertices is not None and sample.landmarks_3d.shape == (101, 3)
    assert sample.extras["angles"].shape == (3, 3) and "identity" in sample.extras["coefficients"]
    train = SyntheticMultiViewDataset(root, "train")
    assert train[0].mesh_vertices is None and train[0].landmarks_3d is not None
    assert SyntheticMultiViewDataset(root, "test", load_mesh=False)[0].mesh_vertices is None
    batch = collate_samples([train[0], train[1]])
    assert batch.images.shape == (2, 3, 3, size, size)


def test_dataset_names_missing_files(root, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(root, copy)
    dataset = SyntheticMultiViewDataset(copy, "validation")
    missing = copy / dataset.rows.iloc[0]["image_B"]
    missing.unlink()
    with pytest.raises(FileNotFoundError, match="B.png"):
        dataset[0]
    (copy / "manifest.csv").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        SyntheticMultiViewDataset(copy, "validation")


def test_presets_and_yaw_settings(settings, gt_model):
    bosphorus = SyntheticSettings.from_config(CONFIG, "bosphorus-like")
    assert bosphorus.side_yaw_degrees == 45 and bosphorus.lighting == "random"
    spec = SampleSpec(0, 0, "train")
    draws = [draw_sample(SampleSpec(s, 0, "train"), bosphorus, gt_model) for s in range(3)]
    assert all(np.allclose(d.nominal_yaw_degrees, [-45, 0, 45]) for d in draws)
    assert not np.allclose(draws[0].lighting, draws[1].lighting)
    left = dataclasses.replace(bosphorus, left_yaw_mode="fixed", left_yaw_degrees=10.0)
    assert np.allclose(draw_sample(spec, left, gt_model).nominal_yaw_degrees, [-10, 0, 45])
    choice = dataclasses.replace(settings, yaw_mode="choice")
    yaws = {draw_sample(SampleSpec(0, s, "train"), choice, gt_model).nominal_yaw_degrees[2] for s in range(20)}
    assert yaws <= {10.0, 20.0, 30.0, 45.0} and len(yaws) > 1
    uniform = dataclasses.replace(settings, yaw_mode="uniform", left_yaw_mode="uniform")
    yaw = draw_sample(spec, uniform, gt_model).nominal_yaw_degrees
    assert 10 <= yaw[2] <= 45 and -45 <= yaw[0] <= -10 and yaw[0] != -yaw[2]
    # the draw is the same whatever else is drawn before it (per-sample streams)
    assert np.array_equal(draw_sample(spec, settings, gt_model).angles, draw_sample(spec, settings, gt_model).angles)
    with pytest.raises(ValueError, match="preset"):
        SyntheticSettings.from_config(CONFIG, "unknown")
    assert SyntheticSettings.from_dict(bosphorus.to_dict()) == bosphorus


def test_backgrounds_are_not_flat():
    rng = np.random.default_rng(0)
    for kind in BACKGROUND_KINDS:
        image = random_background(rng, kind, 48)
        assert image.shape == (48, 48, 3) and image.min() >= 0 and image.max() <= 1
        if kind != "flat":
            assert image.std(axis=(0, 1)).max() > 0.02, kind


def test_mesh_io_round_trip(tmp_path):
    vertices = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * 80
    triangles = np.random.default_rng(1).integers(0, 50, size=(70, 3))
    path = write_ply(tmp_path / "mesh.ply", vertices, triangles)
    read_vertices, read_triangles = read_ply(path)
    assert np.array_equal(read_vertices, vertices) and np.array_equal(read_triangles, triangles)
    with pytest.raises(FileNotFoundError, match="nothing.ply"):
        read_ply(tmp_path / "nothing.ply")


def test_worker_pool_gives_identical_files(root, settings, tmp_path):
    small = dataclasses.replace(settings, train_subjects=1, validation_subjects=1, test_subjects=0)
    in_process = generate_benchmark(tmp_path / "one", small, workers=1, progress=False)
    pooled = generate_benchmark(tmp_path / "two", small, workers=2, progress=False)
    assert _sample_files(pooled) == _sample_files(in_process)
    # the first subject's samples equal those of the full benchmark (per-sample random streams, same batches)
    full = _sample_files(root)
    assert all(full[name] == data for name, data in _sample_files(in_process).items() if "s00000_" in name)
