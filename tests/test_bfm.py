"""BFM09 loaders (dfmvr_lib.face_model.bfm) and the model cache (dfmvr_lib.face_model.io).

Two test models, neither containing Basel data:
- a model with the real BFM front topology and mean (fixtures: Deep3D's facemodel_info.mat + Deep3D.obj) and random
  smooth bases, written in Deep3D's BFM_model_front.mat layout and units (skipped without ../shared/fixtures);
- a tiny made-up model in Basel's 01_MorphableModel.mat + Exp_Pca.bin layout with tiny Deep3D index files, run
  through the converter (no fixtures needed).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from dfmvr_lib.face_model import bfm
from dfmvr_lib.face_model.base import MorphableModel, vertex_triangle_table
from dfmvr_lib.face_model.io import load_model, load_model_data, save_model

from shared_fixtures import FIXTURES

META = FIXTURES / "deep3d_bfm_meta"
MEAN_OBJ = FIXTURES / "bfm_front_mean" / "Deep3D.obj"
needs_fixtures = pytest.mark.skipif(not (META.is_dir() and MEAN_OBJ.is_file()),
                                    reason=f"fixtures absent ({FIXTURES}): BFM front topology / mean mesh needed")


def _synthetic_landmarks_mm() -> np.ndarray:
    spec = importlib.util.spec_from_file_location("_dfmvr_test_parts", Path(__file__).with_name("test_parts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_landmarks_mm()


def _smooth_fields(positions_mm: np.ndarray, count: int, amplitude: float, seed: int) -> np.ndarray:
    """(V, 3, count) smooth vector fields: low-frequency sinusoids of the vertex position."""
    rng = np.random.default_rng(seed)
    q = (positions_mm - positions_mm.mean(axis=0)) / 100.0
    directions = rng.normal(size=(3, count))
    frequencies = rng.uniform(0.3, 1.5, size=count)
    phases = rng.uniform(0, 2 * np.pi, size=count)
    waves = np.sin(q @ (directions * frequencies * 2 * np.pi) + phases)          # (V, count)
    vectors = rng.normal(size=(count, 3)) * amplitude
    return (waves[:, None, :] * vectors.T[None, :, :]).astype(np.float32)


def _read_obj_vertices(path: Path) -> np.ndarray:
    with open(path) as stream:
        rows = [line.split()[1:4] for line in stream if line.startswith("v ")]
    return np.asarray(rows, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Test-only model with the real topology

@pytest.fixture(scope="module")
def front_model_file(tmp_path_factory):
    if not (META.is_dir() and MEAN_OBJ.is_file()):
        pytest.skip(f"fixtures absent ({FIXTURES})")
    mean_mm = _read_obj_vertices(MEAN_OBJ)
    info = scipy.io.loadmat(str(META / "facemodel_info.mat"))
    V = mean_mm.shape[0]
    id_mm = _smooth_fields(mean_mm, bfm.NUM_IDENTITY, 2.0, 1)
    exp_mm = _smooth_fields(mean_mm, bfm.NUM_EXPRESSION, 1.0, 2)
    tex_255 = _smooth_fields(mean_mm, bfm.NUM_ALBEDO, 8.0, 3)
    meantex = 170.0 + 40.0 * np.sin(mean_mm / 30.0)                                # smooth colours in 0-255
    arrays = {
        # Deep3D's layout and units: decimetres, (1, 3V) rows, (3V, K) bases, 1-based float indices.
        "meanshape": (mean_mm / 100.0).astype(np.float32).reshape(1, -1),
        "meantex": meantex.astype(np.float32).reshape(1, -1),
        "idBase": (id_mm / 100.0).reshape(3 * V, -1), "exBase": (exp_mm / 100.0).reshape(3 * V, -1),
        "texBase": tex_255.reshape(3 * V, -1),
        **{key: info[key] for key in ("tri", "point_buf", "keypoints", "skinmask", "frontmask2_idx", "tri_mask2")},
    }
    path = tmp_path_factory.mktemp("bfm_front") / "BFM_model_front.mat"
    scipy.io.savemat(str(path), arrays)
    return path, mean_mm, id_mm, meantex, tex_255


@pytest.fixture(scope="module")
def front_model(front_model_file):
    return bfm.load_bfm_front(front_model_file[0])


@needs_fixtures
def test_front_model_units_and_centring(front_model, front_model_file):
    _, mean_mm, id_mm, meantex, tex_255 = front_model_file
    model = front_model
    mean = model.mean_shape.numpy()
    assert model.num_vertices == bfm.BFM_FRONT_NUM_VERTICES and model.triangles.shape[0] == bfm.BFM_FRONT_NUM_TRIANGLES
    assert (model.num_identity, model.num_expression, model.num_albedo) == (80, 64, 80)
    assert 120.0 < np.ptp(mean[:, 0]) < 160.0                     # face width in mm
    np.testing.assert_allclose(mean.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(mean, mean_mm - mean_mm.mean(axis=0), atol=2e-3)
    np.testing.assert_allclose(model.identity_basis.numpy(), id_mm, rtol=1e-5, atol=1e-5)   # mm per unit coeff
    np.testing.assert_allclose(model.mean_albedo.numpy(), meantex / 255.0, atol=1e-6)
    np.testing.assert_allclose(model.albedo_basis.numpy(), tex_255 / 255.0, atol=1e-6)
    coefficients = torch.zeros(1, 80)
    coefficients[0, 3] = 1.0
    np.testing.assert_allclose((model.shape(coefficients)[0] - model.mean_shape).numpy(), id_mm[:, :, 3], atol=1e-4)


@needs_fixtures
def test_front_model_keypoints_and_alignment(front_model):
    model = front_model
    mean = model.mean_shape.numpy()
    keypoints = mean[model.landmark_68.numpy()]
    assert keypoints[:, 2].argmax() == 30                       # nose tip is the most forward keypoint
    assert keypoints[36, 0] < 0 < keypoints[45, 0]              # iBUG 36 (left eye outer) on the image left
    assert keypoints[17:22, 1].min() > keypoints[36:42, 1].max() > keypoints[48:68, 1].max() > keypoints[8, 1]
    align = mean[model.alignment_7.numpy()]
    assert align[0, 0] < align[1, 0] < 0 < align[2, 0] < align[3, 0]   # eye corners left to right
    assert align[:, 2].argmax() == 4                                    # nose tip
    assert align[5, 0] < 0 < align[6, 0] and align[5:, 1].max() < align[4, 1] < align[:4, 1].min()
    # The alignment vertices are the corresponding 68-point keypoints (iBUG 45 is a neighbouring vertex).
    np.testing.assert_allclose(align, keypoints[[36, 39, 42, 45, 30, 48, 54]], atol=2.0)
    assert np.isin(model.alignment_7.numpy(), model.landmark_101.numpy()).all()
    np.testing.assert_array_equal(model.landmark_101.numpy(), bfm.LANDMARK_101)
    if (META / "pre_index_101.npy").is_file():
        np.testing.assert_array_equal(bfm.LANDMARK_101, np.load(META / "pre_index_101.npy"))


@needs_fixtures
def test_front_model_part_labels(front_model):
    model = front_model
    mean = model.mean_shape.numpy()
    labels = model.part_labels.numpy()
    keypoints = mean[model.landmark_68.numpy()]
    counts = np.bincount(labels, minlength=10)
    assert np.all(counts > 0) and counts[1] == counts.max()

    def label_near(xy):
        return labels[np.argmin(np.linalg.norm(mean[:, :2] - xy, axis=1))]

    assert labels[8192] == 6
    near_tip = np.linalg.norm(mean[:, :2] - keypoints[30, :2], axis=1) < 5.0
    assert (labels[near_tip] == 6).mean() > 0.95
    assert label_near(keypoints[36:42, :2].mean(axis=0)) == 4 and label_near(keypoints[42:48, :2].mean(axis=0)) == 5
    assert label_near(keypoints[19, :2] - [0, 3]) == 2 and label_near(keypoints[24, :2] - [0, 3]) == 3
    assert label_near(0.5 * (keypoints[51, :2] + keypoints[62, :2])) == 8
    assert label_near(0.5 * (keypoints[57, :2] + keypoints[66, :2])) == 9
    assert label_near([keypoints[36, 0], keypoints[33, 1]]) == 1               # cheek
    assert label_near([0.0, keypoints[19, 1] + 25.0]) == 1                     # forehead
    # Eye labels sit around the eye keypoints, on the correct side.
    assert mean[labels == 4, 0].max() < 0 < mean[labels == 5, 0].min()


@needs_fixtures
def test_front_model_normals_and_region(front_model):
    model = front_model
    normals = model.normals(model.shape())[0].numpy()
    assert normals[8192, 2] > 0.8                                # nose tip normal points to the camera (+z)
    region = model.evaluation_region.numpy()
    assert region[model.alignment_7.numpy()].all() and region[model.landmark_68.numpy()[27:68]].all()
    assert 0.5 < region.mean() < 1.0
    assert normals[region, 2].mean() > 0.5


@needs_fixtures
def test_front_model_io_round_trip(front_model, tmp_path):
    path = save_model(front_model, tmp_path / "bfm.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["bfm.npz"]     # no temporary file left behind
    loaded = load_model(path)
    for name, buffer in front_model.named_buffers():
        assert torch.equal(buffer, getattr(loaded, name)), name
    assert loaded.name == front_model.name


# ----------------------------------------------------------------------------------------------------------------
# Tiny Basel-format model through the converter

def _grid_mesh(nx: int = 16, ny: int = 20):
    xs, ys = np.linspace(-70.0, 70.0, nx), np.linspace(-80.0, 100.0, ny)
    gx, gy = np.meshgrid(xs, ys)
    x, y = gx.ravel(), gy.ravel()
    z = 90.0 - 0.004 * x ** 2 - 0.002 * y ** 2 + 30.0 * np.exp(-(x ** 2 + y ** 2) / 250.0)
    a = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    triangles = np.concatenate([np.stack([a, a + 1, a + nx + 1], 1), np.stack([a, a + nx + 1, a + nx], 1)])
    return np.stack([x, y, z], axis=1), triangles


def _write_tiny_basel(folder: Path, seed: int = 0) -> dict:
    """Tiny Basel + Guo + Deep3D-index files; returns paths and the ground truth."""
    rng = np.random.default_rng(seed)
    front_mm, triangles = _grid_mesh()
    V, F = front_mm.shape[0], triangles.shape[0]
    N, Nb = V + 40, V + 90                          # trimmed (expression) model, Basel model
    trim = np.sort(rng.choice(Nb, N, replace=False))           # trimmed -> Basel (0-based)
    front = np.sort(rng.choice(N, V, replace=False))           # front -> trimmed (0-based)
    basel_of_front = trim[front]

    shape_mu = rng.uniform(-5e6, 5e6, size=(Nb, 3))            # junk far away for the unused vertices
    shape_mu[basel_of_front] = front_mm * 1e3                  # micrometres
    shape_pc = rng.normal(size=(3 * Nb, 199)).astype(np.float32)
    shape_ev = np.linspace(3e4, 1e2, 199)[:, None]
    tex_mu = rng.uniform(0, 255, size=(3 * Nb, 1))
    tex_pc = rng.normal(size=(3 * Nb, 199)).astype(np.float32)
    tex_ev = np.linspace(40.0, 1.0, 199)[:, None]
    basel = {"shapeMU": shape_mu.reshape(-1, 1).astype(np.float32), "shapePC": shape_pc,
             "shapeEV": shape_ev.astype(np.float32), "texMU": tex_mu.astype(np.float32), "texPC": tex_pc,
             "texEV": tex_ev.astype(np.float32), "tl": np.ones((5, 3), np.float32)}
    scipy.io.savemat(str(folder / "01_MorphableModel.mat"), basel)

    exp_mean = rng.normal(size=3 * N).astype(np.float32)
    exp_pc_components = rng.normal(size=(79, 3 * N)).astype(np.float32)     # stored component by component
    with open(folder / "Exp_Pca.bin", "wb") as stream:
        stream.write(np.array([79], dtype="<i4").tobytes())
        stream.write(exp_mean.astype("<f4").tobytes())
        stream.write(exp_pc_components.astype("<f4").tobytes())
    exp_std = np.linspace(5e3, 50.0, 79)
    meta = folder / "meta"
    meta.mkdir()
    np.savetxt(meta / "std_exp.txt", exp_std[None], fmt="%g")

    landmarks = _synthetic_landmarks_mm()
    keypoints = np.array([np.argmin(np.linalg.norm(front_mm[:, :2] - p, axis=1)) for p in landmarks])
    keypoints[30] = np.argmax(front_mm[:, 2])
    table = vertex_triangle_table(triangles, V)
    point_buf = np.full((V, 8), F, dtype=np.int64)
    point_buf[:, :table.shape[1]] = table
    scipy.io.savemat(str(meta / "BFM_front_idx.mat"), {"idx": (front + 1).astype(np.float32)[:, None]})
    scipy.io.savemat(str(meta / "BFM_exp_idx.mat"), {"trimIndex": (trim + 1).astype(np.uint16)[:, None]})
    scipy.io.savemat(str(meta / "select_vertex_id.mat"), {"select_id": (basel_of_front + 1).astype(np.uint16)[:, None]})
    scipy.io.savemat(str(meta / "facemodel_info.mat"), {
        "tri": (triangles + 1).astype(np.float32), "keypoints": (keypoints + 1).astype(np.float32)[None],
        "point_buf": (point_buf + 1).astype(np.float32), "skinmask": np.ones((1, V), np.float32),
        "frontmask2_idx": np.arange(1, V + 1, dtype=np.float32)[:, None],
        "tri_mask2": (triangles + 1).astype(np.float32)})
    return dict(basel=folder / "01_MorphableModel.mat", exp=folder / "Exp_Pca.bin", meta=meta,
                front_mm=front_mm, triangles=triangles, front=front, basel_of_front=basel_of_front,
                shape_pc=shape_pc, shape_ev=shape_ev, tex_mu=tex_mu, tex_pc=tex_pc, tex_ev=tex_ev,
                exp_pc_components=exp_pc_components, exp_std=exp_std, keypoints=keypoints)


def _tiny_ids(keypoints: np.ndarray) -> dict:
    return {"landmark_101": np.arange(101) % keypoints.size,
            "alignment_7": keypoints[[36, 39, 42, 45, 30, 48, 54]]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_basel")
    truth = _write_tiny_basel(folder)
    output = bfm.convert_basel_bfm09(truth["basel"], truth["exp"], truth["meta"],
                                     folder / "out" / "BFM_model_front.mat")
    truth["output"] = output
    return truth


def test_converter_writes_deep3d_layout(tiny):
    mat = scipy.io.loadmat(str(tiny["output"]))
    V = tiny["front_mm"].shape[0]
    assert mat["meanshape"].shape == (1, 3 * V) and mat["meantex"].shape == (1, 3 * V)
    assert mat["idBase"].shape == (3 * V, 80) and mat["exBase"].shape == (3 * V, 64)
    assert mat["texBase"].shape == (3 * V, 80)
    # Decimetres in the file (Deep3D's units): micrometres / 1e5.
    np.testing.assert_allclose(mat["meanshape"].reshape(V, 3), tiny["front_mm"] / 100.0, rtol=1e-6, atol=1e-6)
    assert [p.name for p in tiny["output"].parent.iterdir()] == ["BFM_model_front.mat"]


def test_converter_index_mapping_and_units(tiny):
    model = bfm.load_bfm_front(tiny["output"], **_tiny_ids(tiny["keypoints"]))
    front_mm = tiny["front_mm"]
    V = front_mm.shape[0]
    np.testing.assert_allclose(model.mean_shape.numpy(), front_mm - front_mm.mean(axis=0), atol=2e-3)
    # Known vertices in known places: front vertex i is Basel vertex trim[front[i]] and expression vertex front[i].
    for i in (0, 17, V // 2, V - 1):
        b, t = tiny["basel_of_front"][i], tiny["front"][i]
        expected_id = tiny["shape_pc"][3 * b:3 * b + 3, :80] * tiny["shape_ev"][:80, 0] / 1e3      # um -> mm
        np.testing.assert_allclose(model.identity_basis[i].numpy(), expected_id, rtol=1e-5, atol=1e-4)
        expected_exp = tiny["exp_pc_components"][:64, 3 * t:3 * t + 3].T * tiny["exp_std"][:64] / 1e3
        np.testing.assert_allclose(model.expression_basis[i].numpy(), expected_exp, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(model.mean_albedo[i].numpy(), tiny["tex_mu"][3 * b:3 * b + 3, 0] / 255, atol=1e-6)
        expected_tex = tiny["tex_pc"][3 * b:3 * b + 3, :80] * tiny["tex_ev"][:80, 0] / 255
        np.testing.assert_allclose(model.albedo_basis[i].numpy(), expected_tex, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.triangles.numpy(), tiny["triangles"])
    np.testing.assert_array_equal(model.landmark_68.numpy(), tiny["keypoints"])
    assert model.normals(model.shape())[0, tiny["keypoints"][30], 2] > 0.8
    assert 120.0 < np.ptp(model.mean_shape[:, 0].numpy()) < 160.0


def test_tiny_model_io_round_trip(tiny, tmp_path):
    model = bfm.load_bfm_front(tiny["output"], **_tiny_ids(tiny["keypoints"]))
    path = save_model(model.to_data(), tmp_path / "tiny.npz")
    data = load_model_data(path)
    np.testing.assert_array_equal(data.identity_basis, model.identity_basis.numpy())
    np.testing.assert_array_equal(data.evaluation_region, model.evaluation_region.numpy())
    assert isinstance(load_model(path), MorphableModel)


# ----------------------------------------------------------------------------------------------------------------
# Malformed inputs: the messages name the file and the key

def _valid_front_arrays(tiny) -> dict:
    return {k: v for k, v in scipy.io.loadmat(str(tiny["output"])).items() if not k.startswith("__")}


def test_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        bfm.load_bfm_front(tmp_path / "nope.mat")


def test_loader_needs_ids_for_other_vertex_counts(tiny):
    with pytest.raises(ValueError, match="landmark_101"):
        bfm.load_bfm_front(tiny["output"])


@pytest.mark.parametrize("key, change, message", [
    ("idBase", None, "missing"),
    ("meanshape", None, "missing"),
    ("keypoints", None, "missing"),
    ("idBase", lambda a: a[:-3], r"\(3V="),
    ("exBase", lambda a: a.T, "shape"),
    ("tri", lambda a: a[:, :2], "shape"),
    ("keypoints", lambda a: a[:, :60], "shape"),
    ("keypoints", lambda a: a * 0, "1-based"),
    ("tri", lambda a: a + 0.5, "whole-number"),
    ("point_buf", lambda a: a[:-1], "shape"),
    ("meantex", lambda a: np.array(["not numbers"]), "dtype"),
    ("meanshape", lambda a: a * 1e5, "decimetres"),          # raw Basel scale
])
def test_loader_reports_file_and_key(tiny, tmp_path, key, change, message):
    arrays = _valid_front_arrays(tiny)
    if change is None:
        del arrays[key]
    else:
        arrays[key] = change(arrays[key])
    path = tmp_path / "broken_front.mat"
    scipy.io.savemat(str(path), arrays)
    with pytest.raises(ValueError) as error:
        bfm.load_bfm_front(path, **_tiny_ids(tiny["keypoints"]))
    text = str(error.value)
    assert "broken_front.mat" in text and repr(key) in text
    assert re.search(message, text), text


def test_converter_missing_inputs(tiny, tmp_path):
    out = tmp_path / "x.mat"
    with pytest.raises(FileNotFoundError, match="Exp_Pca.bin"):
        bfm.convert_basel_bfm09(tiny["basel"], tmp_path / "Exp_Pca.bin", tiny["meta"], out)
    with pytest.raises(FileNotFoundError, match="01_MorphableModel.mat"):
        bfm.convert_basel_bfm09(tmp_path / "01_MorphableModel.mat", tiny["exp"], tiny["meta"], out)
    with pytest.raises(FileNotFoundError, match="meta"):
        bfm.convert_basel_bfm09(tiny["basel"], tiny["exp"], tmp_path / "meta", out)
    assert not out.exists()


def _copy_inputs(tiny, folder: Path) -> dict:
    paths = {"basel": folder / "01_MorphableModel.mat", "exp": folder / "Exp_Pca.bin", "meta": folder / "meta"}
    shutil.copy(tiny["basel"], paths["basel"])
    shutil.copy(tiny["exp"], paths["exp"])
    shutil.copytree(tiny["meta"], paths["meta"])
    return paths


def test_converter_malformed_inputs(tiny, tmp_path):
    paths = _copy_inputs(tiny, tmp_path)
    out = tmp_path / "out.mat"

    def convert():
        return bfm.convert_basel_bfm09(paths["basel"], paths["exp"], paths["meta"], out)

    basel = {k: v for k, v in scipy.io.loadmat(str(paths["basel"])).items() if not k.startswith("__")}
    broken = dict(basel)
    del broken["shapeEV"]
    scipy.io.savemat(str(paths["basel"]), broken)
    with pytest.raises(ValueError, match=r"01_MorphableModel\.mat: key 'shapeEV' is missing"):
        convert()
    broken = dict(basel, texPC=basel["texPC"][:, :50])
    scipy.io.savemat(str(paths["basel"]), broken)
    with pytest.raises(ValueError, match=r"01_MorphableModel\.mat: key 'texPC' must have shape"):
        convert()
    scipy.io.savemat(str(paths["basel"]), basel)

    data = paths["exp"].read_bytes()
    paths["exp"].write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"Exp_Pca\.bin: .* bytes, expected"):
        convert()
    paths["exp"].write_bytes(data)

    std = paths["meta"] / "std_exp.txt"
    std_text = std.read_text()
    std.write_text("1 2 3")
    with pytest.raises(ValueError, match=r"std_exp\.txt: 3 standard deviations, expected 79"):
        convert()
    std.write_text(std_text)

    trim_path = paths["meta"] / "BFM_exp_idx.mat"
    trim = scipy.io.loadmat(str(trim_path))["trimIndex"]
    scipy.io.savemat(str(trim_path), {"trimIndex": np.roll(trim, 1)})
    with pytest.raises(ValueError, match=r"select_vertex_id\.mat: key 'select_id' disagrees"):
        convert()
    scipy.io.savemat(str(trim_path), {"wrong_name": trim})
    with pytest.raises(ValueError, match=r"BFM_exp_idx\.mat: key 'trimIndex' is missing"):
        convert()
    os.remove(trim_path)
    with pytest.raises(FileNotFoundError, match=r"BFM_exp_idx\.mat"):
        convert()
    assert not out.exists()


def test_model_file_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_model(tmp_path / "missing.npz")
    model = bfm.load_bfm_front(tiny["output"], **_tiny_ids(tiny["keypoints"]))
    path = save_model(model, tmp_path / "m.npz")
    arrays = dict(np.load(path))
    del arrays["triangles"]
    np.savez(tmp_path / "no_tri.npz", **arrays)
    with pytest.raises(ValueError, match=r"no_tri\.npz: field 'triangles' is missing"):
        load_model(tmp_path / "no_tri.npz")
    arrays = dict(np.load(path))
    arrays["mean_albedo"] = arrays["mean_albedo"][:-1]
    np.savez(tmp_path / "bad_shape.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad_shape\.npz: field 'mean_albedo'"):
        load_model(tmp_path / "bad_shape.npz")
    arrays = dict(np.load(path))
    arrays["part_labels"] = arrays["part_labels"].astype(np.float32)
    np.savez(tmp_path / "bad_dtype.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad_dtype\.npz: field 'part_labels' must be integer"):
        load_model(tmp_path / "bad_dtype.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"garbage\.npz"):
        load_model(tmp_path / "garbage.npz")


def test_loader_flips_clockwise_triangles(tiny, tmp_path):
    arrays = _valid_front_arrays(tiny)
    arrays["tri"] = arrays["tri"][:, [0, 2, 1]]
    path = tmp_path / "clockwise.mat"
    scipy.io.savemat(str(path), arrays)
    with pytest.warns(UserWarning, match="clockwise"):
        model = bfm.load_bfm_front(path, **_tiny_ids(tiny["keypoints"]))
    assert model.normals(model.shape())[0, tiny["keypoints"][30], 2] > 0.8
