"""Real-dataset readers (Pixel-Face, Bosphorus, Multi-PIE, CelebAMask-HQ) on files written in the real formats."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dfmvr_lib.data.bosphorus import (BosphorusDataset, alignment_7_from_lm3, delaunay_mesh, parse_bosphorus_name,
                                      read_bnt, read_lm3)
from dfmvr_lib.data.celebamask import CelebAMaskDataset, ParsingSample, map_parts_to_classes
from dfmvr_lib.data.multipie import MultiPieDataset
from dfmvr_lib.data.pixelface import (ALIGNMENT_7_IN_101, DROPPED_CONTOUR_106, KEPT_106, PixelFaceDataset,
                                      landmarks_106_to_101, read_gt_mat, read_nicp_landmarks, upright_raw_image)
from dfmvr_lib.data.readers_base import DatasetReader, MultiViewReader, ReaderOptionError
from dfmvr_lib.data.readers_common import (DatasetLayoutError, ImageReadError, load_image_rgb, split_subjects)
from dfmvr_lib.data.sample import collate_samples

from shared_fixtures import FIXTURES

PIXELFACE_FIXTURE = FIXTURES / "pixelface_format" / "sample"
needs_fixture = pytest.mark.skipif(not (PIXELFACE_FIXTURE / "mesh" / "fusion" / "gt.mat").is_file(),
                                   reason=f"Pixel-Face format fixture not found at {PIXELFACE_FIXTURE} "
                                          "(../shared/fixtures is only present in the development checkout)")

VIEW_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))   # A, B, C


def save_rgb(path: Path, colour, size=(24, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def assert_view_colours(sample, tolerance=0.1):
    for view, colour in enumerate(VIEW_COLOURS):
        mean = sample.images[view].mean(dim=(1, 2)).numpy()
        assert np.allclose(mean, np.array(colour) / 255.0, atol=tolerance), (view, mean)


# ----------------------------------------------------------------------------------------------- common helpers
def test_image_conversions(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray).save(tmp_path / "gray.png")
    image = load_image_rgb(tmp_path / "gray.png")
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert torch.allclose(image[0], torch.from_numpy(gray / 255.0).float()) and torch.equal(image[0], image[2])

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255                                     # top opaque, bottom transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = load_image_rgb(tmp_path / "rgba.png")
    # top opaque, bottom transparent -> white
    assert torch.allclose(image[0, :2], torch.tensor(200 / 255.0)) and torch.all(image[:, 2:] == 1)

    sixteen = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    image = load_image_rgb(tmp_path / "deep.png")
    assert torch.allclose(image[1], torch.from_numpy(sixteen / 65535.0).float(), atol=1e-6)

    # 16-bit-per-channel RGB PNG, written by hand (colour type 2, bit depth 16)
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    pixels = np.zeros((4, 5, 3), dtype=">u2")
    pixels[..., 0], pixels[..., 1] = 65535, 32768
    rows = b"".join(b"\x00" + pixels[r].tobytes() for r in range(4))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 16, 2, 0, 0, 0))
    (tmp_path / "rgb16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(rows))
                                         + chunk(b"IEND", b""))
    image = load_image_rgb(tmp_path / "rgb16.png")
    assert image.shape == (3, 4, 5) and torch.allclose(image[:, 0, 0], torch.tensor([1.0, 0.5, 0.0]), atol=0.01)

    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ImageReadError, match="float.tif"):
        load_image_rgb(tmp_path / "float.tif")


def test_image_bad_files_are_named(tmp_path):
    save_rgb(tmp_path / "full.png", (10, 20, 30), size=(64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image_rgb(tmp_path / "cut.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.jpg"):
        load_image_rgb(tmp_path / "text.jpg")
    with pytest.raises(ImageReadError, match="missing.png"):
        load_image_rgb(tmp_path / "missing.png")


def test_split_subjects_is_deterministic_and_disjoint():
    subjects = [f"s{i:03d}" for i in range(10)] * 3
    train, val = split_subjects(subjects, 0.8, seed=3)
    assert (train, val) == split_subjects(list(reversed(subjects)), 0.8, seed=3)
    assert len(train) == 8 and len(val) == 2 and not set(train) & set(val)


# ----------------------------------------------------------------------------------------------------- Pixel-Face
def write_gt_mat(path: Path, with_registration: bool = True) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3)) * 0.5
    f = rng.integers(1, 201, size=(300, 3)).astype(np.int64)
    kpt = np.arange(1, 107, dtype=np.uint16).reshape(106, 1)
    tex = rng.integers(0, 255, size=(200, 3)).astype(np.uint8)
    content = {"new_kpt_gt_obj": {"v": v, "f": f, "kpt_ind": kpt, "tex": tex}}
    if with_registration:
        content["neck_obj09"] = {"v": v * 1.01, "f": f.astype(np.uint16), "kpt_ind": kpt.reshape(1, 106) + 5,
                                 "tex": tex}
    scipy.io.savemat(str(path), content)
    return content


@needs_fixture
def test_pixelface_fixture_raw_layout():
    raw = scipy.io.loadmat(str(PIXELFACE_FIXTURE / "mesh" / "fusion" / "gt.mat"))
    for name in ("new_kpt_gt_obj", "neck_obj09"):
        mesh = read_gt_mat(PIXELFACE_FIXTURE / "mesh" / "fusion" / "gt.mat", name)
        record = raw[name][0, 0]
        assert np.allclose(mesh.vertices, record["v"] * 100.0, atol=1e-4)            # dm -> mm
        assert mesh.triangles.min() == 0 and mesh.triangles.max() == mesh.vertices.shape[0] - 1
        assert np.array_equal(mesh.triangles, record["f"].astype(np.int64) - 1)
        assert np.array_equal(mesh.keypoint_ids, record["kpt_ind"].reshape(-1).astype(np.int64) - 1)
    dataset = PixelFaceDataset(PIXELFACE_FIXTURE)
    assert len(dataset) == 1 and dataset.layout == "raw"
    sample = dataset[0]
    sample.validate("fixture")
    assert not sample.view_present.any() and sample.images.shape == (3, 3, 224, 224)
    assert torch.isnan(sample.landmarks_2d).all() and not sample.landmark_visibility.any()
    registration = read_gt_mat(PIXELFACE_FIXTURE / "mesh" / "fusion" / "gt.mat", "neck_obj09")
    assert np.allclose(sample.landmarks_3d.numpy(), registration.keypoints[list(KEPT_106)], atol=1e-4)
    width = float(sample.mesh_vertices[:, 0].max() - sample.mesh_vertices[:, 0].min())
    assert 50.0 < width < 1000.0, "scan should be face-sized in mm"


def test_101_scheme_constants():
    assert len(KEPT_106) == 101 and len(set(DROPPED_CONTOUR_106)) == 5 and max(DROPPED_CONTOUR_106) <= 32
    points = np.arange(106 * 3, dtype=float).reshape(106, 3)
    kept = landmarks_106_to_101(points)
    assert kept.shape == (101, 3) and kept[28, 0] == points[33, 0]      # first brow point shifts by 5
    assert [KEPT_106[i] for i in ALIGNMENT_7_IN_101] == [52, 55, 58, 61, 46, 84, 90]


def test_pixelface_raw_bmp_is_made_upright(tmp_path):
    upright = np.zeros((1280, 720, 3), dtype=np.uint8)
    upright[:100, :100] = (255, 0, 0)            # red block: top-left of the upright face
    upright[-50:, 300:400] = (0, 255, 0)         # green block: bottom middle
    upright_image = Image.fromarray(upright)
    # stored form = inverse of "rotate 90 deg clockwise, then flip horizontally"
    stored = upright_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).transpose(Image.Transpose.ROTATE_90)
    assert stored.size == (1280, 720)
    sample_dir = tmp_path / "subject7" / "expr2"
    for view in range(3):
        (sample_dir / "mesh" / str(view)).mkdir(parents=True)
        stored.save(sample_dir / "mesh" / str(view) / "t.bmp")
    write_gt_mat(sample_dir / "mesh" / "fusion" / "gt.mat")
    dataset = PixelFaceDataset(tmp_path, image_size=None)
    assert dataset.layout == "raw" and len(dataset) == 1
    sample = dataset[0]
    assert sample.subject_id == "subject7" and sample.sample_id == "subject7/expr2"
    assert sample.images.shape == (3, 3, 1280, 720) and sample.view_present.all()
    expected = torch.from_numpy(upright.transpose(2, 0, 1) / 255.0).float()
    assert torch.allclose(sample.images[1], expected)
    stored_tensor = torch.from_numpy(np.asarray(stored).transpose(2, 0, 1).copy())
    assert torch.equal(upright_raw_image(stored_tensor), torch.from_numpy(upright.transpose(2, 0, 1).copy()))
    # landmarks from the registration's keypoints, in mm
    mat = scipy.io.loadmat(str(sample_dir / "mesh" / "fusion" / "gt.mat"))["neck_obj09"][0, 0]
    keypoints = mat["v"][mat["kpt_ind"].reshape(-1).astype(int) - 1] * 100.0
    assert np.allclose(sample.landmarks_3d.numpy(), keypoints[list(KEPT_106)], atol=1e-3)
    small = PixelFaceDataset(tmp_path, image_size=64)[0]          # padded to a square, aspect kept
    assert small.images.shape == (3, 3, 64, 64) and small.images[1, :, :, :8].abs().max() == 0


def test_pixelface_missing_gt_key(tmp_path):
    write_gt_mat(tmp_path / "s1" / "e1" / "mesh" / "fusion" / "gt.mat", with_registration=False)
    with pytest.raises(KeyError, match="neck_obj09"):
        read_gt_mat(tmp_path / "s1" / "e1" / "mesh" / "fusion" / "gt.mat", "neck_obj09")
    with pytest.raises(KeyError, match="neck_obj09"):
        PixelFaceDataset(tmp_path)[0]
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 garbage")
    with pytest.raises(ValueError, match="bad.mat"):
        read_gt_mat(tmp_path / "bad.mat")


def make_processed_tree(root: Path, subjects=5) -> np.ndarray:
    points_dm = np.arange(106 * 3, dtype=float).reshape(106, 3) * 0.01
    for s in range(subjects):
        expr = root / f"{100 + s}" / "3"
        for view, colour in enumerate(VIEW_COLOURS):
            save_rgb(expr / "Images" / str(view) / "t.jpg", colour)
        (expr / "fusion").mkdir(parents=True)
        np.savetxt(expr / "fusion" / "nicp_106_pts.txt", points_dm + s, fmt="%.6f", delimiter=" ")
    return points_dm


def test_pixelface_processed_layout_and_split(tmp_path):
    points_dm = make_processed_tree(tmp_path)
    calls = []

    def provider(image):
        calls.append(tuple(image.shape))
        return np.full((68, 2), 5.0), np.ones(68, dtype=bool)

    dataset = PixelFaceDataset(tmp_path, image_size=32, landmark_provider=provider,
                               parse_provider=lambda image: np.ones(image.shape[1:], dtype=np.int64))
    assert dataset.layout == "processed" and len(dataset) == 5
    sample = dataset[0]
    sample.validate("processed")
    assert sample.subject_id == "100" and sample.sample_id == "100/3"
    assert_view_colours(sample)
    assert np.allclose(sample.landmarks_3d.numpy(), np.delete(points_dm * 100.0, DROPPED_CONTOUR_106, axis=0),
                       atol=1e-3)
    assert sample.landmark_visibility.all() and torch.all(sample.landmarks_2d == 5.0) and calls == [(3, 32, 32)] * 3
    assert torch.all(sample.parse_maps == 1) and sample.mesh_vertices is None
    assert sample.extras["alignment_7"].shape == (7, 3)
    train, val = dataset.split(0.8)
    assert len(train) == 4 and len(val) == 1 and not set(train.subject_ids) & set(val.subject_ids)
    assert [e.sample_id for e in dataset.split(0.8)[0].entries] == [e.sample_id for e in train.entries]
    batch = collate_samples([train[0], train[1]])
    assert batch.images.shape == (2, 3, 3, 32, 32) and batch.landmarks_3d.shape == (2, 101, 3)
    # a bad nicp file names itself
    bad = tmp_path / "100" / "3" / "fusion" / "nicp_106_pts.txt"
    bad.write_text("1 2 3\n" * 10)
    with pytest.raises(ValueError, match="nicp_106_pts.txt"):
        read_nicp_landmarks(bad)


def test_pixelface_wrong_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    save_rgb(tmp_path / "photos" / "a.jpg", (1, 2, 3))
    with pytest.raises(DatasetLayoutError, match=r"Images/\{0,1,2\}/t.jpg.*found: photos/"):
        PixelFaceDataset(tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        PixelFaceDataset(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------ Bosphorus
def write_bnt(path: Path, data: np.ndarray, nrows: int, ncols: int, zmin: float, image_name: str) -> None:
    name = image_name.encode("latin-1")
    with open(path, "wb") as stream:
        stream.write(struct.pack("<HHdH", nrows, ncols, zmin, len(name)))
        stream.write(name)
        stream.write(struct.pack("<I", data.size))
        stream.write(np.asarray(data, dtype="<f8").T.tobytes())       # column-major (N, 5)


def grid_scan(nrows=6, ncols=5, spacing=2.0, zmin=-1e9, invalid=((0, 0), (5, 4))):
    rows, cols = np.meshgrid(np.arange(nrows), np.arange(ncols), indexing="ij")
    x = cols.ravel() * spacing - 4.0
    y = -rows.ravel() * spacing + 5.0
    z = 50.0 - 0.1 * (x ** 2 + y ** 2)
    u, v = cols.ravel() / (ncols - 1), rows.ravel() / (nrows - 1)
    data = np.stack([x, y, z, u, v], axis=1)
    for r, c in invalid:
        data[r * ncols + c, :3] = zmin
    return data


LM3_TEXT = """3D landmark coordinates
7 landmarks:

Outer left eye corner
40.0 30.0 10.0
Inner left eye corner
15.0 30.0 12.0
Inner right eye corner
-15.0 30.0 12.0

Outer right eye corner
-40.0 30.0 10.0
Nose tip
0.0 0.0 40.0
Left mouth corner
22.0 -30.0 15.0
Right mouth corner
-22.0 -30.0 15.0
"""


def test_bnt_and_lm3_formats(tmp_path):
    data = grid_scan()
    write_bnt(tmp_path / "bs001_N_N_0.bnt", data, 6, 5, -1e9, "bs001_N_N_0.png")
    bnt = read_bnt(tmp_path / "bs001_N_N_0.bnt")
    assert (bnt.nrows, bnt.ncols, bnt.image_file) == (6, 5, "bs001_N_N_0.png")
    assert np.array_equal(bnt.data, data) and bnt.valid.sum() == 28 and bnt.points.shape == (28, 3)
    raw = (tmp_path / "bs001_N_N_0.bnt").read_bytes()
    (tmp_path / "cut.bnt").write_bytes(raw[:-16])
    with pytest.raises(ValueError, match="cut.bnt.*truncated"):
        read_bnt(tmp_path / "cut.bnt")
    (tmp_path / "tiny.bnt").write_bytes(raw[:5])
    with pytest.raises(ValueError, match="tiny.bnt"):
        read_bnt(tmp_path / "tiny.bnt")
    (tmp_path / "a.lm3").write_text(LM3_TEXT)
    landmarks = read_lm3(tmp_path / "a.lm3")
    assert len(landmarks) == 7 and np.allclose(landmarks["Nose tip"], [0, 0, 40])
    alignment = alignment_7_from_lm3(landmarks)
    assert np.allclose(alignment[:, 0], [-40, -15, 15, 40, 0, -22, 22])     # sides from x, not from names
    assert parse_bosphorus_name("bs000_YR_R45_0") == ("bs000", "YR_R45", 0)
    assert parse_bosphorus_name("bs012_E_HAPPY_1") == ("bs012", "E_HAPPY", 1)
    assert parse_bosphorus_name("readme") is None


def test_delaunay_mesh_grid_and_long_edges():
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    points = np.stack([cols.ravel() * 1.0, rows.ravel() * 1.0, np.zeros(20)], axis=1)
    triangles = delaunay_mesh(points)
    assert triangles.shape == (2 * 4 * 3, 3) and triangles.dtype == np.int64
    a, b, c = (points[triangles[:, i]] for i in range(3))
    assert np.all(np.cross(b - a, c - a)[:, 2] > 0)                       # counter-clockwise seen from +z
    # two separate patches 10 mm apart: the bridging triangles are overlong and dropped
    far = points + [10.0, 0.0, 0.0]
    both = np.concatenate([points, far])
    triangles = delaunay_mesh(both, max_edge_mm=1.5)
    assert triangles.shape == (2 * 24, 3)
    corners = both[triangles]
    edges = np.linalg.norm(corners - np.roll(corners, -1, axis=1), axis=2)
    assert edges.max() <= 1.5
    assert delaunay_mesh(both).shape == (48, 3)                           # automatic limit does the same


def make_bosphorus_tree(root: Path):
    subject = root / "bs000"
    subject.mkdir(parents=True)
    write_bnt(subject / "bs000_N_N_0.bnt", grid_scan(), 6, 5, -1e9, "bs000_N_N_0.png")
    (subject / "bs000_N_N_0.lm3").write_text(LM3_TEXT)
    save_rgb(subject / "bs000_YR_R45_0.png", VIEW_COLOURS[0], size=(30, 40))
    save_rgb(subject / "bs000_N_N_0.png", VIEW_COLOURS[1], size=(30, 40))
    save_rgb(subject / "bs000_YR_L45_0.png", VIEW_COLOURS[2], size=(30, 40))
    save_rgb(subject / "bs000_YR_R10_0.png", (255, 255, 0), size=(30, 40))


def test_bosphorus_dataset(tmp_path):
    make_bosphorus_tree(tmp_path)
    dataset = BosphorusDataset(tmp_path, image_size=32)
    assert len(dataset) == 1
    sample = dataset[0]
    sample.validate("bosphorus")
    assert sample.subject_id == "bs000" and sample.view_present.all() and sample.landmarks_3d is None
    # padded to square: check colours in the centre column band only
    for view, colour in enumerate(VIEW_COLOURS):
        centre = sample.images[view, :, :, 12:20].mean(dim=(1, 2)).numpy()
        assert np.allclose(centre, np.array(colour) / 255.0, atol=0.05)
    assert sample.mesh_vertices.shape == (28, 3) and sample.mesh_triangles.min() >= 0
    assert sample.mesh_triangles.max() < 28
    assert np.allclose(sample.extras["alignment_7"][4], [0, 0, 40])
    r10 = BosphorusDataset(tmp_path, image_size=32, left_view_yaw_degrees=10)[0]
    assert np.allclose(r10.images[0, :, :, 12:20].mean(dim=(1, 2)).numpy(), [1, 1, 0], atol=0.05)


def test_bosphorus_wrong_layout(tmp_path):
    save_rgb(tmp_path / "holiday.png", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match="N_N_0.bnt.*found"):
        BosphorusDataset(tmp_path)


# ------------------------------------------------------------------------------------------------------ Multi-PIE
def test_multipie_named_and_camera_layouts(tmp_path):
    for name, colour in zip(("left", "front", "right"), VIEW_COLOURS):
        save_rgb(tmp_path / "001" / "s01_e01" / f"{name}.png", colour)
    for camera, colour in zip(("080", "051", "190"), VIEW_COLOURS):
        save_rgb(tmp_path / "002" / "s01_e01" / f"002_01_01_{camera}_07.png", colour)
        save_rgb(tmp_path / "003" / "x" / f"{camera}_whatever.jpg", colour)
    dataset = MultiPieDataset(tmp_path, image_size=24)
    assert len(dataset) == 3 and dataset.subject_ids == ["001", "002", "003"]
    for sample in (dataset[0], dataset[1], dataset[2]):
        sample.validate("multipie")
        assert sample.landmarks_3d is None and sample.mesh_vertices is None and sample.view_present.all()
        assert_view_colours(sample)


def test_multipie_wrong_layout(tmp_path):
    save_rgb(tmp_path / "001" / "a" / "photo.png", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match=r"\{left,front,right\}"):
        MultiPieDataset(tmp_path)


# -------------------------------------------------------------------------------------------------- CelebAMask-HQ
def write_mask(path: Path, mask: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray((mask * 255).astype(np.uint8))
    (image.convert("RGB") if mode == "RGB" else image).save(path)


def test_celebamask_class_mapping(tmp_path):
    size = 16
    save_rgb(tmp_path / "CelebA-HQ-img" / "2001.jpg", (90, 90, 90), size=(32, 32))
    masks = {name: np.zeros((size, size), dtype=bool) for name in ("skin", "l_eye", "r_eye", "l_brow", "r_brow",
                                                                  "hair", "u_lip", "l_lip", "mouth", "eye_g", "nose")}
    masks["skin"][2:, 2:14] = True
    masks["hair"][:2, :] = True
    masks["hair"][2:4, 2:5] = True                      # hair over the forehead wins (painted later)
    masks["eye_g"][5:8, 2:14] = True
    masks["l_eye"][6, 10:12] = True                     # named "l_" but on the image's right
    masks["r_eye"][6, 4:6] = True
    masks["l_brow"][4, 10:12] = True
    masks["r_brow"][4, 4:6] = True
    masks["nose"][8:10, 7:9] = True
    masks["u_lip"][11, 6:10] = True
    masks["mouth"][12, 6:10] = True
    masks["l_lip"][13, 6:10] = True
    for name, mask in masks.items():
        write_mask(tmp_path / "CelebAMask-HQ-mask-anno" / "1" / f"02001_{name}.png", mask,
                   mode="RGB" if name == "skin" else "L")
    dataset = CelebAMaskDataset(tmp_path, image_size=size)
    sample = dataset[0]
    assert isinstance(sample, ParsingSample) and sample.image.shape == (3, 16, 16)
    labels = sample.parse_map
    assert labels[6, 4] == 4 and labels[6, 10] == 5          # image-left eye = class 4
    assert labels[4, 4] == 2 and labels[4, 10] == 3          # image-left brow = class 2
    assert labels[0, 0] == 0 and labels[3, 3] == 0           # hair -> background, also over skin
    assert labels[5, 8] == 1 and labels[9, 7] == 6           # glasses -> skin, nose
    assert labels[11, 7] == 8 and labels[12, 7] == 7 and labels[13, 7] == 9   # u_lip, mouth, l_lip (lower)
    assert labels[15, 0] == 0
    # one eye only: side from the nose midline; names rule only on request
    single = map_parts_to_classes({"nose": masks["nose"], "l_eye": masks["l_eye"]})
    assert single[6, 10] == 5
    named = map_parts_to_classes({"l_eye": masks["l_eye"], "r_eye": masks["r_eye"]}, side_rule="names",
                                 l_is_image_left=True)
    assert named[6, 10] == 4
    with pytest.raises(ValueError, match="unknown"):
        map_parts_to_classes({"beard": masks["skin"]})


def test_celebamask_wrong_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError, match="CelebA-HQ-img/<id>.jpg.*found: images/"):
        CelebAMaskDataset(tmp_path)
    save_rgb(tmp_path / "CelebA-HQ-img" / "5.jpg", (1, 1, 1))
    (tmp_path / "CelebAMask-HQ-mask-anno" / "0").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="00005_<part>.png"):
        CelebAMaskDataset(tmp_path)[0]


# ------------------------------------------------------------------------------------- shared reader options (base)
MULTIVIEW_READERS = (PixelFaceDataset, BosphorusDataset, MultiPieDataset)
BAD_SHARED_OPTIONS = {
    "image_size-zero": ("image_size", 0), "image_size-negative": ("image_size", -32),
    "image_size-fraction": ("image_size", 224.5), "image_size-text": ("image_size", "224"),
    "image_size-bool": ("image_size", True), "landmark_provider-number": ("landmark_provider", 3),
    "parse_provider-text": ("parse_provider", "parser"), "parse_from_landmarks-text": ("parse_from_landmarks", "no"),
    "subjects-one-string": ("subjects", "bs000"), "subjects-number": ("subjects", 7),
}


@pytest.mark.parametrize("case", sorted(BAD_SHARED_OPTIONS))
def test_a_bad_shared_option_gives_the_same_error_from_every_reader(case, tmp_path):
    option, value = BAD_SHARED_OPTIONS[case]
    readers = MULTIVIEW_READERS + ((CelebAMaskDataset,) if option == "image_size" else ())
    messages = set()
    for reader in readers:
        assert issubclass(reader, DatasetReader)
        with pytest.raises(ReaderOptionError) as caught:        # checked before the (missing) folder is looked at
            reader(tmp_path / "nowhere", **{option: value})
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert message.startswith(f"{reader.dataset_name}: {option} must be ") and repr(value) in message
        messages.add(message[len(reader.dataset_name):])
    assert len(messages) == 1, messages


def test_reader_specific_options_are_checked_too(tmp_path):
    with pytest.raises(ReaderOptionError, match="layout must be 'auto', 'processed' or 'raw', got 'flat'"):
        PixelFaceDataset(tmp_path, layout="flat")
    with pytest.raises(ReaderOptionError, match="side_rule must be 'geometry' or 'names', got 'left'"):
        CelebAMaskDataset(tmp_path, side_rule="left")
    with pytest.raises(ReaderOptionError, match="Bosphorus: require_all_views must be True or False"):
        BosphorusDataset(tmp_path, require_all_views="yes")
    with pytest.raises(ReaderOptionError, match="Multi-PIE: camera_views must map camera ids to view indices"):
        MultiPieDataset(tmp_path, camera_views={"080": 3})


def test_the_base_class_keeps_the_options_through_split(tmp_path):
    for subject in ("001", "002", "003", "004"):
        for name, colour in zip(("left", "front", "right"), VIEW_COLOURS):
            save_rgb(tmp_path / subject / "s01" / f"{name}.png", colour)
    provider = lambda image: np.full((68, 2), 3.0)  # noqa: E731
    dataset = MultiPieDataset(tmp_path, image_size=np.int64(20), landmark_provider=provider,
                              camera_views={"080": 0, "051": 1, "190": 2}, subjects=["001", "002", "003", 4])
    assert isinstance(dataset, MultiViewReader) and dataset.image_size == 20 and type(dataset.image_size) is int
    assert dataset.subjects == {"001", "002", "003", "4"} and dataset.subject_ids == ["001", "002", "003"]
    train, val = dataset.split(0.5)
    for part in (train, val):
        assert type(part) is MultiPieDataset and part.image_size == 20 and part.landmark_provider is provider
        assert part[0].images.shape == (3, 3, 20, 20) and torch.all(part[0].landmarks_2d == 3.0)
    assert sorted(train.subject_ids + val.subject_ids) == ["001", "002", "003"]
    assert PixelFaceDataset.dataset_name == "Pixel-Face" and CelebAMaskDataset.dataset_name == "CelebAMask-HQ"
