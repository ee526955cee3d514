"""Bad-input campaign: corrupt, hostile or odd files and folders fed to every dataset reader and to
``dfmvr reconstruct`` (in-process through :func:`dfmvr_lib.cli.main`).

Every input is generated in ``tmp_path``. For each one the test asserts:

- readers: a documented exception type (:class:`~dfmvr_lib.data.readers_common.DatasetError` and its subclasses,
  :class:`~dfmvr_lib.data.photos.PhotoError` for the photo loader) whose message names the offending file or
  folder, and that nothing was written;
- the CLI: a documented exit status (``dfmvr_lib.cli.EXIT_*``), a one-line message naming the offending file or
  argument, no traceback on stderr, and no output folder or file left behind;
- inputs that are legitimately usable (grayscale, alpha, palette, CMYK, 16-bit, EXIF-rotated) are converted and the
  conversion is reported, not refused.

The CLI cases that get past loading the checkpoint use the smoke run of ``tests/test_fitting.py`` (trained once per
module); the ones that need a real face use the photos in ``../shared/fixtures`` and skip without them.
"""
from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dfmvr_lib.cli import EXIT_BAD_INPUT, EXIT_NO_CHECKPOINT, EXIT_OK, EXIT_USAGE, EXIT_WRITE_FAILED, main
from dfmvr_lib.data.bosphorus import BosphorusDataset, read_bnt, read_lm3
from dfmvr_lib.data.celebamask import CelebAMaskDataset
from dfmvr_lib.data.mesh_io import read_ply, write_ply
from dfmvr_lib.data.multipie import MultiPieDataset
from dfmvr_lib.data.photos import PhotoError, load_photo
from dfmvr_lib.data.pixelface import PixelFaceDataset, read_gt_mat, read_nicp_landmarks
from dfmvr_lib.data.readers_common import (DatasetError, DatasetFileNotFound, DatasetLayoutError, ImageReadError,
                                           load_image_rgb, load_mask_png, read_image)
from dfmvr_lib.parsing.pretrained import load_face_parsing_checkpoint
from dfmvr_lib.runs import CheckpointFileError, UnsafeCheckpointError
from shared_fixtures import FIXTURES, needs_fixtures
from test_fitting import smoke_runs  # noqa: F401  (module fixture: a smoke benchmark, parser and 6-step run)

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_permissions = pytest.mark.skipif(AS_ROOT, reason="running as root: chmod does not deny access")
FRONT_PHOTO = FIXTURES / "real_multiview" / "pixelface_crops" / "1" / "00336011.png"


# --------------------------------------------------------------------------------------------------- helpers
def _listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (symbolic links not followed)."""
    found = []
    for top, folders, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(top, name), folder) for name in folders + files]
    return sorted(found)


def _gradient(width: int = 96, height: int = 80) -> np.ndarray:
    """(height, width, 3) uint8 test picture."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=2).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, depth: int, colour: int, idat: bytes | None) -> bytes:
    """A PNG file from its parts; ``idat`` None: header only (no image data)."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    body = _chunk(b"IDAT", idat) if idat is not None else b""
    return b"\x89PNG\r\n\x1a\n" + header + body + _chunk(b"IEND", b"")


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: a few kB that decode to side^2 pixels."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return _png(side, side, 1, 0, data)


def _bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header announcing ``width`` x ``height`` with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def _write(path: Path, content: bytes | str) -> Path:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def _save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def _sixteen_bit_rgb(path: Path) -> Path:
    values = (np.arange(80 * 96 * 3, dtype=">u2").reshape(80, 96, 3) * 7)
    raw = b"".join(b"\x00" + values[row].tobytes() for row in range(80))
    return _write(path, _png(96, 80, 16, 2, zlib.compress(raw)))


def _exif_rotated(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6                                     # orientation: rotate 90 degrees clockwise to view
    return _save(path, Image.fromarray(_gradient()), format="JPEG", exif=exif)


def _unreadable(path: Path) -> Path:
    _save(path, Image.fromarray(_gradient()))
    path.chmod(0)
    return path


def _symlink_loop(path: Path) -> Path:
    os.symlink(path.name, path)
    return path


def _broken_link(path: Path) -> Path:
    os.symlink(path.parent / "nowhere" / "gone.png", path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


# ------------------------------------------------------------------------------------------- image inputs
_GRADIENT = Image.fromarray(_gradient())
_PNG = _encoded(_GRADIENT, "PNG")
_JPEG = _encoded(_GRADIENT, "JPEG", quality=90)

REFUSED_IMAGES = {
    # id: (file name, maker(path) -> path, fragment of the reason)
    "zero-byte-png": ("empty.png", lambda p: _write(p, b""), "empty"),
    "zero-byte-jpg": ("empty.jpg", lambda p: _write(p, b""), "empty"),
    "text-named-jpg": ("notes.jpg", lambda p: _write(p, "these are my notes, not a photo\n"), "not a readable image"),
    "html-named-png": ("page.png", lambda p: _write(p, "<html><body>404</body></html>"), "not a readable image"),
    "truncated-png": ("cut.png", lambda p: _write(p, _PNG[: len(_PNG) // 2]), "truncated"),
    "truncated-jpg": ("cut.jpg", lambda p: _write(p, _JPEG[: len(_JPEG) // 2]), "truncated"),
    "png-header-without-data": ("header.png", lambda p: _write(p, _png(96, 80, 8, 2, None)), "truncated"),
    "png-bad-checksum": ("crc.png", lambda p: _write(p, _PNG[:29] + b"\0\0\0\0" + _PNG[33:]), "not a readable image"),
    "bomb-10-gigapixel-png-header": ("bomb.png", lambda p: _write(p, _png(100_000, 100_000, 8, 2, None)),
                                     "too large"),
    "bomb-90-megapixel-png-header": ("bomb90.png", lambda p: _write(p, _png(9_500, 9_500, 8, 2, None)),
                                     "too large"),
    "bomb-90-megapixel-valid-png": ("bomb90valid.png", lambda p: _write(p, _bomb_png(9_500)), "too large"),
    "bomb-3-gigapixel-bmp-header": ("bomb.bmp", lambda p: _write(p, _bmp_header(60_000, 60_000)), "too large"),
    "float32-tiff": ("float.tif", lambda p: _save(p, Image.fromarray(np.random.rand(80, 96).astype(np.float32))),
                     "value range"),
    "int32-tiff": ("int32.tif", lambda p: _save(p, Image.fromarray(np.arange(80 * 96, dtype=np.int32)
                                                                   .reshape(80, 96))), "value range"),
    "folder-named-png": ("folder.png", _folder, "a folder"),
    "symlink-loop": ("loop.png", _symlink_loop, "link"),
    "broken-symlink": ("broken.png", _broken_link, "link"),
}
if not AS_ROOT:
    REFUSED_IMAGES["unreadable-chmod-000"] = ("locked.png", _unreadable, "ermission")

CONVERTED_IMAGES = {
    # id: (file name, maker, fragment of the conversion note, or None when no conversion is needed)
    "grayscale": ("gray.png", lambda p: _save(p, _GRADIENT.convert("L")), "grayscale"),
    "one-bit": ("bits.png", lambda p: _save(p, _GRADIENT.convert("1")), "grayscale"),
    "rgba": ("rgba.png", lambda p: _save(p, _GRADIENT.convert("RGBA")), "alpha"),
    "grayscale-alpha": ("la.png", lambda p: _save(p, _GRADIENT.convert("LA")), "alpha"),
    "palette": ("palette.png", lambda p: _save(p, _GRADIENT.convert("P")), "P image converted"),
    "palette-transparent": ("ptrans.png", lambda p: _save(p, _GRADIENT.convert("P"), transparency=0), "alpha"),
    "cmyk-jpeg": ("cmyk.jpg", lambda p: _save(p, _GRADIENT.convert("CMYK")), "CMYK"),
    "16-bit-grayscale-png": ("gray16.png", lambda p: _save(p, Image.fromarray(
        (np.arange(80 * 96, dtype=np.uint16).reshape(80, 96) * 8))), "16-bit"),
    "16-bit-rgb-png": ("rgb16.png", _sixteen_bit_rgb, None),
    "exif-rotated-jpeg": ("rotated.jpg", _exif_rotated, "EXIF"),
    "gif-named-png": ("anim.png", lambda p: _save(p, _GRADIENT, format="GIF"), "P image converted"),
}


def _make(table: dict, case: str, folder: Path) -> Path:
    name, maker, _ = table[case]
    return maker(folder / name)


@pytest.mark.parametrize("case", sorted(REFUSED_IMAGES))
def test_bad_image_is_refused_by_every_image_loader_naming_the_file(case, tmp_path):
    path = _make(REFUSED_IMAGES, case, tmp_path)
    fragment = REFUSED_IMAGES[case][2]
    before = _listing(tmp_path)
    loaders = (read_image, load_image_rgb) if case == "int32-tiff" else (read_image, load_image_rgb, load_mask_png)
    for load in loaders:                                # (a mask may be a 32-bit integer label image)
        with pytest.raises(ImageReadError) as caught:
            load(path)
        assert isinstance(caught.value, DatasetError)
        message = str(caught.value)
        assert str(path) in message, load.__name__
        expected = "integer labels" if load is load_mask_png and case == "float32-tiff" else fragment
        assert expected in message and "\n" not in message, (load.__name__, message)
    with pytest.raises(PhotoError) as caught:
        load_photo(path)
    assert str(path) in str(caught.value) and fragment in caught.value.reason
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("size", [(1, 1), (40, 300)], ids=["1x1", "40px-short-side"])
def test_too_small_photo_is_refused_with_its_size(size, tmp_path):
    path = _save(tmp_path / "small.png", Image.new("RGB", size, (90, 90, 90)))
    assert read_image(path)[0].shape == (size[1], size[0], 3)          # a dataset image may be tiny
    with pytest.raises(PhotoError, match=f"{size[0]}x{size[1]} px"):
        load_photo(path)


@pytest.mark.parametrize("case", sorted(CONVERTED_IMAGES))
def test_convertible_image_is_converted_and_the_conversion_reported(case, tmp_path):
    path = _make(CONVERTED_IMAGES, case, tmp_path)
    fragment = CONVERTED_IMAGES[case][2]
    rgb, notes = read_image(path)
    expected = (96, 80) if case == "exif-rotated-jpeg" else (80, 96)        # EXIF orientation 6: turned upright
    assert rgb.shape == (*expected, 3) and rgb.dtype == np.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and rgb.std() > 0.01
    if fragment is None:
        assert notes == []
    else:
        assert any(fragment in note for note in notes), notes
    photo, photo_notes = load_photo(path)
    assert photo.dtype == np.uint8 and photo.shape == rgb.shape and photo_notes == notes


# ------------------------------------------------------------------------------------- dataset file inputs
def _bnt(nrows=2, ncols=2, zmin=-1e9, name=b"bs000_N_N_0.png", count=20, data: bytes | None = None) -> bytes:
    if data is None:
        data = np.arange(count, dtype="<f8").tobytes()
    return struct.pack("<HHdH", nrows, ncols, zmin, len(name)) + name + struct.pack("<I", count) + data


def _mat(path: Path, **fields) -> Path:
    vertices = np.random.default_rng(0).random((200, 3))
    record = {"v": vertices, "f": np.array([[1, 2, 3], [2, 3, 4]]), "kpt_ind": np.arange(1, 107)}
    record.update(fields)
    record = {k: v for k, v in record.items() if v is not None}
    scipy.io.savemat(path, {"new_kpt_gt_obj": record})
    return path


def _nan_vertices():
    vertices = np.random.default_rng(0).random((200, 3))
    vertices[7] = np.nan
    return vertices


def _ply(path: Path, vertices=None, triangles=None) -> Path:
    vertices = np.random.default_rng(1).random((10, 3)) if vertices is None else vertices
    triangles = np.array([[0, 1, 2], [2, 3, 4]]) if triangles is None else triangles
    return write_ply(path, vertices, triangles)


def _truncated_ply(path: Path) -> Path:
    _ply(path)
    data = path.read_bytes()
    return _write(path, data[: len(data) - 30])


def _ascii_ply(path: Path, vertices: str, faces: str, counts=(3, 1)) -> Path:
    header = ("ply\nformat ascii 1.0\n"
              f"element vertex {counts[0]}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {counts[1]}\nproperty list uchar int vertex_indices\nend_header\n")
    return _write(path, header + vertices + faces)


DATASET_FILES = {
    # id: (file name, maker(path), reader, fragment of the reason)
    "bnt-zero-byte": ("a.bnt", lambda p: _write(p, b""), read_bnt, "truncated"),
    "bnt-text": ("a.bnt", lambda p: _write(p, "hello, this is a text file and not a scan at all\n"), read_bnt,
                 "truncated"),
    "bnt-truncated-header": ("a.bnt", lambda p: _write(p, _bnt()[:9]), read_bnt, "truncated"),
    "bnt-truncated-data": ("a.bnt", lambda p: _write(p, _bnt()[:-8]), read_bnt, "truncated"),
    "bnt-count-not-multiple-of-5": ("a.bnt", lambda p: _write(p, _bnt(count=7)), read_bnt, "multiple of 5"),
    "bnt-huge-count": ("a.bnt", lambda p: _write(p, _bnt(count=0xFFFFFFF0, data=b"")), read_bnt, "truncated"),
    "bnt-nan-zmin": ("a.bnt", lambda p: _write(p, _bnt(zmin=float("nan"))), read_bnt, "zmin"),
    "bnt-folder": ("a.bnt", _folder, read_bnt, "folder"),
    "bnt-missing": ("a.bnt", lambda p: p, read_bnt, "not found"),
    "lm3-zero-byte": ("a.lm3", lambda p: _write(p, b""), read_lm3, "no 'name'"),
    "lm3-binary": ("a.lm3", lambda p: _write(p, bytes(range(256)) * 4), read_lm3, "no 'name'"),
    "lm3-coordinates-without-name": ("a.lm3", lambda p: _write(p, "1 2 3\n"), read_lm3, "without a preceding"),
    "lm3-nan-coordinate": ("a.lm3", lambda p: _write(p, "Nose tip\nnan 1 2\n"), read_lm3, "Nose tip"),
    "lm3-infinite-coordinate": ("a.lm3", lambda p: _write(p, "Nose tip\n1 inf 2\n"), read_lm3, "finite"),
    "nicp-nan": ("nicp_106_pts.txt", lambda p: _write(p, "nan 1 2\n" * 106), read_nicp_landmarks, "NaN"),
    "nicp-binary": ("nicp_106_pts.txt", lambda p: _write(p, bytes(range(1, 256)) * 3), read_nicp_landmarks,
                    "not 'x y z'"),
    "nicp-105-lines": ("nicp_106_pts.txt", lambda p: _write(p, "1 2 3\n" * 105), read_nicp_landmarks, "found 105"),
    "nicp-four-numbers": ("nicp_106_pts.txt", lambda p: _write(p, "1 2 3 4\n" * 106), read_nicp_landmarks,
                          "4 numbers"),
    "mat-text": ("gt.mat", lambda p: _write(p, "not a mat file"), read_gt_mat, "MATLAB"),
    "mat-zero-byte": ("gt.mat", lambda p: _write(p, b""), read_gt_mat, "MATLAB"),
    "mat-truncated": ("gt.mat", lambda p: _write(p, _mat(p).read_bytes()[:300]), read_gt_mat, "MATLAB"),
    "mat-missing-struct": ("gt.mat", lambda p: scipy.io.savemat(p, {"other": 1}) or p, read_gt_mat,
                           "no struct 'new_kpt_gt_obj'"),
    "mat-missing-field": ("gt.mat", lambda p: _mat(p, kpt_ind=None), read_gt_mat, "lacks fields ['kpt_ind']"),
    "mat-not-a-struct": ("gt.mat", lambda p: scipy.io.savemat(p, {"new_kpt_gt_obj": np.zeros(3)}) or p,
                         read_gt_mat, "not a MATLAB struct"),
    "mat-nan-vertices": ("gt.mat", lambda p: _mat(p, v=_nan_vertices()), read_gt_mat, "NaN"),
    "mat-text-vertices": ("gt.mat", lambda p: _mat(p, v="abc"), read_gt_mat, "new_kpt_gt_obj.v"),
    "mat-struct-vertices": ("gt.mat", lambda p: _mat(p, v={"a": 1}), read_gt_mat, "new_kpt_gt_obj.v"),
    "mat-empty-keypoints": ("gt.mat", lambda p: _mat(p, kpt_ind=np.zeros(0)), read_gt_mat, "kpt_ind"),
    "mat-fractional-triangles": ("gt.mat", lambda p: _mat(p, f=np.array([[1.5, 2, 3], [1, 2, 3]])), read_gt_mat,
                                 "whole numbers"),
    "mat-nan-triangles": ("gt.mat", lambda p: _mat(p, f=np.array([[1, np.nan, 3], [1, 2, 3]])), read_gt_mat,
                          "NaN"),
    "ply-text": ("mesh.ply", lambda p: _write(p, "hello"), read_ply, "not a PLY"),
    "ply-zero-byte": ("mesh.ply", lambda p: _write(p, b""), read_ply, "not a PLY"),
    "ply-truncated": ("mesh.ply", _truncated_ply, read_ply, "truncated"),
    "ply-header-only": ("mesh.ply", lambda p: _ascii_ply(p, "", ""), read_ply, "truncated"),
    "ply-nan-vertex": ("mesh.ply", lambda p: _ply(p, vertices=np.full((10, 3), np.nan)), read_ply, "NaN"),
    "ply-triangle-index-out-of-range": ("mesh.ply", lambda p: _ascii_ply(p, "0 0 0\n1 0 0\n0 1 0\n", "3 0 1 7\n"),
                                        read_ply, "out of range"),
    "ply-folder": ("mesh.ply", _folder, read_ply, "folder"),
    "ply-symlink-loop": ("mesh.ply", _symlink_loop, read_ply, "link"),
}


@pytest.mark.parametrize("case", sorted(DATASET_FILES))
def test_bad_dataset_file_raises_a_dataset_error_naming_it(case, tmp_path):
    name, maker, reader, fragment = DATASET_FILES[case]
    path = maker(tmp_path / name)
    before = _listing(tmp_path)
    with pytest.raises(DatasetError) as caught:
        reader(path)
    message = str(caught.value)
    assert str(path) in message and fragment in message, message
    assert "\n" not in message
    if case.endswith(("-missing", "-folder", "-loop")):
        assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, DatasetFileNotFound)
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------------------- folder layouts
def _pixelface_sample(root: Path, subject: str = "subj01", image: bytes = _JPEG) -> Path:
    for view in ("0", "1", "2"):
        folder = root / subject / "expr1" / "Images" / view
        folder.mkdir(parents=True)
        (folder / "t.jpg").write_bytes(image)
    return root


def _pixelface_with_loop(root: Path) -> Path:
    _pixelface_sample(root)
    os.symlink(root, root / "again")              # a link back to the dataset folder
    os.symlink("self", root / "self")             # a link to itself
    return root


def _pixelface_with_bad_nicp(root: Path) -> Path:
    _pixelface_sample(root)
    fusion = root / "subj01" / "expr1" / "fusion"
    fusion.mkdir()
    (fusion / "nicp_106_pts.txt").write_text("nan nan nan\n" * 106)
    return root


def _bosphorus(root: Path, bnt: bytes | None = None, image: bytes = _PNG) -> Path:
    root.mkdir()
    (root / "bs000_N_N_0.png").write_bytes(image)
    if bnt is not None:
        (root / "bs000_N_N_0.bnt").write_bytes(bnt)
    return root


def _multipie(root: Path, names=("left.png", "front.png", "right.png"), image: bytes = _PNG) -> Path:
    sample = root / "001" / "s01"
    sample.mkdir(parents=True)
    for name in names:
        (sample / name).write_bytes(image)
    return root


def _celebamask(root: Path, mask: bytes | None = None, second_mask: bytes | None = None) -> Path:
    (root / "CelebA-HQ-img").mkdir(parents=True)
    (root / "CelebA-HQ-img" / "5.jpg").write_bytes(_JPEG)
    masks = root / "CelebAMask-HQ-mask-anno" / "0"
    masks.mkdir(parents=True)
    (masks / "00005_skin.png").write_bytes(mask if mask is not None else _encoded(Image.new("L", (40, 40), 255), "PNG"))
    if second_mask is not None:
        (masks / "00005_nose.png").write_bytes(second_mask)
    return root


_SMALL_MASK = _encoded(Image.new("L", (20, 20), 255), "PNG")

LAYOUTS = {
    # id: (builder(root) -> root, open(root) -> dataset, index to read or None, error type, fragment)
    "pixelface-empty-folder": (lambda r: r.mkdir() or r, PixelFaceDataset, None, DatasetLayoutError, "no samples"),
    "pixelface-missing-folder": (lambda r: r, PixelFaceDataset, None, DatasetLayoutError, "does not exist"),
    "pixelface-root-is-a-file": (lambda r: _write(r, "x"), PixelFaceDataset, None, DatasetLayoutError,
                                 "not a folder"),
    "pixelface-flat-photos": (lambda r: _multipie(r), PixelFaceDataset, None, DatasetLayoutError, "Images/{0,1,2}"),
    "pixelface-truncated-view": (lambda r: _pixelface_sample(r, image=_JPEG[:300]), PixelFaceDataset, 0,
                                 ImageReadError, "t.jpg"),
    "pixelface-nan-landmarks": (_pixelface_with_bad_nicp, PixelFaceDataset, 0, DatasetError, "nicp_106_pts.txt"),
    "pixelface-root-symlink-loop": (lambda r: _symlink_loop(r), PixelFaceDataset, None, DatasetLayoutError, "loop"),
    "bosphorus-no-scan": (lambda r: _bosphorus(r), BosphorusDataset, None, DatasetLayoutError, "N_N_0.bnt"),
    "bosphorus-all-background-scan": (lambda r: _bosphorus(r, _bnt(zmin=0.0, data=np.zeros(20).tobytes())),
                                      BosphorusDataset, 0, DatasetError, "bs000_N_N_0.bnt"),
    "bosphorus-truncated-scan": (lambda r: _bosphorus(r, _bnt()[:-16]), BosphorusDataset, 0, DatasetError,
                                 "bs000_N_N_0.bnt"),
    "bosphorus-text-image": (lambda r: _bosphorus(r, _bnt(), image=b"GIF? no"), BosphorusDataset, 0,
                             ImageReadError, "bs000_N_N_0.png"),
    "multipie-two-files-for-one-view": (lambda r: _multipie(r, ("left.png", "front.png", "front.jpg",
                                                                "right.png")), MultiPieDataset, None,
                                        DatasetLayoutError, "front.jpg"),
    "multipie-flat-folder": (lambda r: (r.mkdir(), (r / "left.png").write_bytes(_PNG), r)[-1], MultiPieDataset,
                             None, DatasetLayoutError, "{left,front,right}"),
    "multipie-empty-view-file": (lambda r: _multipie(r, image=b""), MultiPieDataset, 0, ImageReadError, "empty"),
    "celebamask-no-mask-folder": (lambda r: (_celebamask(r), __import__("shutil").rmtree(
        r / "CelebAMask-HQ-mask-anno"), r)[-1], CelebAMaskDataset, None, DatasetLayoutError, "CelebAMask-HQ-mask-anno"),
    "celebamask-text-mask": (lambda r: _celebamask(r, mask=b"not a png"), CelebAMaskDataset, 0, ImageReadError,
                             "00005_skin.png"),
    "celebamask-masks-of-different-sizes": (lambda r: _celebamask(r, second_mask=_SMALL_MASK), CelebAMaskDataset,
                                            0, DatasetError, "00005_"),
}


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_bad_dataset_folder_raises_a_dataset_error_naming_it(case, tmp_path):
    build, open_dataset, index, error_type, fragment = LAYOUTS[case]
    root = build(tmp_path / "dataset")
    before = _listing(tmp_path)
    with pytest.raises(error_type) as caught:
        dataset = open_dataset(root)
        if index is not None:
            dataset[index]
    assert isinstance(caught.value, DatasetError)
    message = str(caught.value)
    assert str(root) in message and fragment in message, message
    assert _listing(tmp_path) == before


def test_symlink_loops_inside_a_dataset_folder_neither_hang_nor_duplicate_samples(tmp_path):
    root = _pixelface_with_loop(tmp_path / "dataset")
    dataset = PixelFaceDataset(root, image_size=32)
    assert [entry.sample_id for entry in dataset.entries] == ["subj01/expr1"]
    assert dataset[0].images.shape == (3, 3, 32, 32)


def test_a_folder_of_bad_photos_is_summarised_not_raised(tmp_path):
    from dfmvr_lib.data.landmarks import NoFaceFound
    from dfmvr_lib.data.photos import PhotoPreparer, prepare_folder

    class NoFaces:
        name = "none"

        def detect(self, image):
            raise NoFaceFound("no face found")

    for case in ("zero-byte-png", "truncated-jpg", "bomb-10-gigapixel-png-header", "symlink-loop"):
        _make(REFUSED_IMAGES, case, tmp_path)
    run = prepare_folder(tmp_path, PhotoPreparer(detector=NoFaces(), use_cache=False), progress=False)
    reasons = dict(zip(run.summary["file"].map(lambda f: Path(f).name), run.summary["reason"]))
    assert set(run.summary["status"]) == {"failed"}
    assert "empty" in reasons["empty.png"] and "truncated" in reasons["cut.jpg"]
    assert "too large" in reasons["bomb.png"]
    assert not any(reason.startswith("unexpected") for reason in reasons.values()), reasons


# ---------------------------------------------------------------------------------------------- checkpoints
def _record_call(marker: str) -> str:
    """What a hostile checkpoint would run on loading: here it only leaves a marker file."""
    Path(marker).write_text("the checkpoint ran code")
    return marker


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_record_call, (self.marker,))


def _hostile(path: Path, marker: Path, how: str) -> Path:
    payload = (_RunsCodeWhenUnpickled(marker) if how == "reduce"
               else functools.partial(_record_call, str(marker)))
    torch.save({"model": payload, "config": {"profile": "smoke"}}, path)
    return path


def _finished_run(folder: Path, final: bytes | None = None, state=None, done: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if state is not None:
        torch.save(state, folder / "final.pt")
    elif final is not None:
        (folder / "final.pt").write_bytes(final)
    if done:
        (folder / "done.json").write_text('{"steps": 1}')
    return folder


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _baseline_state() -> dict:
    """final.pt of a one-face-per-view baseline (``deng``) of the smoke profile, untrained."""
    from dfmvr_lib.experiments.methods import method_config
    from dfmvr_lib.networks import build_network

    config = method_config("smoke", "deng")
    return {"model": build_network(config).state_dict(), "config": config.to_dict()}


def _mismatched_state() -> dict:
    from dfmvr_lib.config import get_config

    return {"model": {"not_a_layer.weight": torch.zeros(2)}, "config": get_config("smoke").to_dict()}


@pytest.mark.parametrize("how", ["reduce", "functools-partial"])
def test_checkpoint_holding_pickled_code_is_refused_without_running_it(how, tmp_path):
    from dfmvr_lib.reconstruction.reconstructor import load_reconstructor

    marker = tmp_path / "ran.txt"
    run = _finished_run(tmp_path / "run")
    _hostile(run / "final.pt", marker, how)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_reconstructor(run)
    message = str(caught.value)
    assert str(run / "final.pt") in message and "not a plain state dict" in message and "execute code" in message
    with pytest.raises(UnsafeCheckpointError, match="execute code"):
        load_face_parsing_checkpoint(_hostile(tmp_path / "79999_iter.pth", marker, how))
    assert not marker.exists(), "the pickled callable was called"


@pytest.mark.parametrize("content", [b"", b"hello", "truncated"], ids=["zero-byte", "text", "truncated"])
def test_corrupt_checkpoint_is_a_checkpoint_file_error_naming_it(content, tmp_path):
    from dfmvr_lib.reconstruction.reconstructor import load_reconstructor

    if content == "truncated":
        content = _torch_bytes({"model": torch.zeros(1000)})[:700]
    run = _finished_run(tmp_path / "run", content)
    for load in (load_reconstructor, lambda run_dir: load_face_parsing_checkpoint(run_dir / "final.pt")):
        with pytest.raises(CheckpointFileError) as caught:
            load(run)
        assert not isinstance(caught.value, UnsafeCheckpointError)
        assert str(run / "final.pt") in str(caught.value) and "\n" not in str(caught.value)


CHECKPOINTS = {
    # id: (builder(tmp) -> argument list, fragment of the message)
    "checkpoint-missing-folder": (lambda t: ["--checkpoint", str(t / "nowhere")], "final.pt and done.json"),
    "checkpoint-is-a-file": (lambda t: ["--checkpoint", str(_write(t / "final.pt", "x"))], "final.pt and done.json"),
    "checkpoint-symlink-loop": (lambda t: ["--checkpoint", str(_symlink_loop(t / "run"))], "final.pt"),
    "checkpoint-unfinished": (lambda t: ["--checkpoint", str(_finished_run(t / "run", _torch_bytes({}), done=False))],
                              "done.json"),
    "checkpoint-pickled-callable": (lambda t: ["--checkpoint", str(_hostile(_finished_run(t / "run") / "final.pt",
                                                                           t / "ran.txt", "reduce").parent)],
                                    "may execute code"),
    "checkpoint-pickled-partial": (lambda t: ["--checkpoint", str(_hostile(_finished_run(t / "run") / "final.pt",
                                                                          t / "ran.txt", "partial").parent)],
                                   "may execute code"),
    "checkpoint-zero-byte": (lambda t: ["--checkpoint", str(_finished_run(t / "run", b""))], "final.pt"),
    "checkpoint-truncated": (lambda t: ["--checkpoint", str(_finished_run(
        t / "run", _torch_bytes({"model": torch.zeros(1000)})[:700]))], "truncated"),
    "checkpoint-text": (lambda t: ["--checkpoint", str(_finished_run(t / "run", b"hello, not a checkpoint"))],
                        "final.pt"),
    "checkpoint-of-a-parser-run": (lambda t: ["--checkpoint", str(_finished_run(
        t / "run", state={"model": {}, "num_classes": 10, "width": 0.25}))], "config"),
    "checkpoint-weights-do-not-match": (lambda t: ["--checkpoint", str(_finished_run(t / "run",
                                                                                     state=_mismatched_state()))],
                                        "final.pt"),
    "checkpoint-one-face-per-view-baseline": (lambda t: ["--checkpoint", str(_finished_run(t / "run",
                                                                                           state=_baseline_state()))],
                                              "one-image-per-view baseline"),
}


def _cli(arguments: list[str], capsys) -> tuple[int, str]:
    """Run ``dfmvr`` in-process: (exit status, stderr)."""
    try:
        status = main(arguments)
    except SystemExit as exit_info:                    # argparse usage errors
        status = exit_info.code
    return status, capsys.readouterr().err


def _assert_refused(status: int, err: str, expected: int, *fragments: str) -> None:
    assert status == expected, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err                         # one message ...
    for fragment in fragments:                         # ... on one line, naming what is wrong
        assert fragment in lines[0], (fragment, err)


@pytest.fixture
def photo(tmp_path) -> Path:
    """A readable photo (no face: the checkpoint cases fail before detection)."""
    return _save(tmp_path / "front.png", Image.fromarray(_gradient(128, 128)))


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_cli_refuses_an_unusable_checkpoint_in_one_line(case, photo, tmp_path, capsys):
    arguments = CHECKPOINTS[case][0](tmp_path)
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(photo), "-o", str(out / "face.obj"), "-q", *arguments], capsys)
    _assert_refused(status, err, EXIT_NO_CHECKPOINT, CHECKPOINTS[case][1])
    assert arguments[-1] in err or str(Path(arguments[-1]) / "final.pt") in err
    assert not out.exists() and not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize("case", ["unfinished", "pickled-callable", "truncated"])
def test_cli_refuses_an_unusable_parser_run(case, smoke_runs, photo, tmp_path, capsys):  # noqa: F811
    parser = tmp_path / "parser"
    if case == "unfinished":
        _finished_run(parser, _torch_bytes({"model": {}}), done=False)
        fragment = "not a finished parser run"
    elif case == "pickled-callable":
        _hostile(_finished_run(parser) / "final.pt", tmp_path / "ran.txt", "reduce")
        fragment = "may execute code"
    else:
        _finished_run(parser, _torch_bytes({"model": torch.zeros(1000)})[:700])
        fragment = "final.pt"
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(photo), "-o", str(out / "face.obj"), "-q", "--checkpoint",
                        str(smoke_runs[2]), "--parser", str(parser)], capsys)
    _assert_refused(status, err, EXIT_NO_CHECKPOINT, str(parser), fragment)
    assert not out.exists() and not (tmp_path / "ran.txt").exists()


# ------------------------------------------------------------------------------------------------ CLI usage
USAGE = {
    "refine-negative": (["--refine", "-1"], "--refine must be >= 0"),
    "refine-not-a-number": (["--refine", "lots"], "--refine"),
    "threads-zero": (["--threads", "0"], "--threads must be >= 1"),
    "threads-negative": (["--threads", "-3"], "--threads must be >= 1"),
    "unknown-detector": (["--detector", "magic"], "--detector"),
    "unknown-colours": (["--colours", "neon"], "--colours"),
    "output-not-obj": (["-o", "face.stl"], ".obj"),
    "views-unknown": (["--views", "top"], "unknown view"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_cli_usage_error_exits_2_naming_the_argument(case, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments, fragment = USAGE[case]
    out = tmp_path / "out"
    if "-o" not in arguments:
        arguments = [*arguments, "-o", str(out / "face.obj")]
    status, err = _cli(["reconstruct", str(photo), "-q", *arguments], capsys)
    _assert_refused(status, err, EXIT_USAGE, fragment)
    assert not out.exists() and not (tmp_path / "face.stl").exists()


# ------------------------------------------------------------------------------------------- CLI photos
CLI_PHOTOS = {**{case: (name, maker, fragment) for case, (name, maker, fragment) in REFUSED_IMAGES.items()},
              "1x1": ("dot.png", lambda p: _save(p, Image.new("RGB", (1, 1))), "too small"),
              "no-face": ("blank.png", lambda p: _save(p, Image.new("RGB", (160, 160), (128, 128, 128))),
                          "no face found")}


@pytest.mark.parametrize("case", sorted(CLI_PHOTOS))
def test_cli_refuses_a_bad_photo_in_one_line(case, smoke_runs, tmp_path, capsys):  # noqa: F811
    bad = _make(CLI_PHOTOS, case, tmp_path)
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(bad), "-o", str(out / "face.obj"), "-q", "--checkpoint",
                        str(smoke_runs[2]), "--detector", "dlib"], capsys)
    fragment = CLI_PHOTOS[case][2]
    if case in ("folder-named-png", "symlink-loop", "broken-symlink"):
        fragment = {"folder-named-png": "a folder", "symlink-loop": "link", "broken-symlink": "link"}[case]
    _assert_refused(status, err, EXIT_BAD_INPUT, str(bad), fragment)
    assert not out.exists()


def test_cli_fan_without_its_weights_exits_3_with_a_message(smoke_runs, photo, tmp_path, capsys,  # noqa: F811
                                                             monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))   # face-alignment's weights: not there
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(photo), "-o", str(out / "face.obj"), "-q", "--checkpoint",
                        str(smoke_runs[2]), "--detector", "fan"], capsys)
    _assert_refused(status, err, EXIT_BAD_INPUT, "FAN weights not found", "empty_torch_home")
    assert not out.exists() and not (tmp_path / "empty_torch_home").exists()


@needs_fixtures
@pytest.mark.parametrize("conversion, note", [("I;16", "16-bit"), ("CMYK", "CMYK"), ("RGBA", "alpha"),
                                              ("P", "P image converted"), ("L", "grayscale")],
                         ids=["16-bit", "cmyk", "rgba", "palette", "grayscale"])
def test_cli_converts_a_usable_photo_and_says_so(conversion, note, smoke_runs, tmp_path, capsys):  # noqa: F811
    source = Image.open(FRONT_PHOTO).convert("RGB")
    if conversion == "I;16":
        converted = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    else:
        converted = source.convert(conversion)
    photo_path = _save(tmp_path / ("front.jpg" if conversion == "CMYK" else "front.png"), converted)
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(photo_path), "-o", str(out / "face.obj"), "-q", "--checkpoint",
                        str(smoke_runs[2]), "--detector", "dlib", "--colours", "albedo"], capsys)
    assert status == EXIT_OK, err
    assert "Traceback" not in err
    assert any(line.startswith("warning:") and str(photo_path) in line and note in line
               for line in err.splitlines()), err
    assert (out / "face.obj").is_file() and (out / "face_coefficients.json").is_file()
    assert note in (out / "face_coefficients.json").read_text()          # recorded with the other warnings


# ------------------------------------------------------------------------------------------- CLI outputs
def _loop_folder(tmp_path: Path) -> Path:
    return _symlink_loop(tmp_path / "loop") / "face.obj"


def _locked_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / "new" / "face.obj"


OUTPUTS = {
    "output-folder-is-a-file": (lambda t: _write(t / "taken", "x") / "face.obj", "taken"),
    "output-is-a-folder": (lambda t: _folder(t / "face.obj"), "face.obj"),
    "output-companion-is-a-folder": (lambda t: (_folder(t / "face_overlay.png"), t / "face.obj")[-1],
                                     "face_overlay.png"),
    "output-in-symlink-loop": (_loop_folder, "loop"),
}
if not AS_ROOT:
    OUTPUTS["output-folder-unwritable"] = (_locked_folder, "locked")


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_cli_refuses_an_unwritable_output_before_any_work(case, photo, tmp_path, capsys):
    obj = OUTPUTS[case][0](tmp_path)
    before = _listing(tmp_path)
    status, err = _cli(["reconstruct", str(photo), "-o", str(obj), "-q", "--checkpoint",
                        str(tmp_path / "no_run")], capsys)                # refused before the checkpoint is read
    _assert_refused(status, err, EXIT_WRITE_FAILED, OUTPUTS[case][1])
    assert _listing(tmp_path) == before
    if case == "output-folder-unwritable":
        (tmp_path / "locked").chmod(0o700)


@needs_fixtures
@pytest.mark.parametrize("failure", ["TypeError-in-json", "ValueError-in-colours", "OSError-while-committing"])
def test_cli_failure_while_saving_leaves_no_folder_and_no_file(failure, smoke_runs, tmp_path, capsys,  # noqa: F811
                                                               monkeypatch):
    import dfmvr_lib.reconstruction.pipeline as pipeline

    if failure == "TypeError-in-json":
        def broken(path, record):
            raise TypeError("cannot write set to JSON")
        monkeypatch.setattr(pipeline, "write_json", broken)
        fragment = "TypeError"
    elif failure == "ValueError-in-colours":
        def broken(*args, **kwargs):
            raise ValueError("colours went wrong")
        monkeypatch.setattr(pipeline, "vertex_colours", broken)
        fragment = "colours went wrong"
    else:
        real_rename = os.rename

        def broken(source, destination, *args, **kwargs):
            if Path(destination).name == "out":
                raise OSError(28, "No space left on device")
            return real_rename(source, destination, *args, **kwargs)
        monkeypatch.setattr(os, "rename", broken)
        fragment = "No space left"
    out = tmp_path / "out"
    status, err = _cli(["reconstruct", str(FRONT_PHOTO), "-o", str(out / "deeper" / "face.obj"), "-q",
                        "--checkpoint", str(smoke_runs[2]), "--detector", "dlib", "--colours", "albedo"], capsys)
    _assert_refused(status, err, EXIT_WRITE_FAILED, fragment, "nothing was written")
    assert _listing(tmp_path) == []                                       # no out/, no staging folder


def test_staged_outputs_commit_all_or_restore_the_previous_set(tmp_path, monkeypatch):
    from dfmvr_lib.reconstruction.export import staged_outputs

    names = ["face.obj", "face.ply", "face_coefficients.json"]
    for name in names[:2]:
        (tmp_path / name).write_text(f"old {name}")
    real_replace = os.replace

    def failing(source, destination, *args, **kwargs):
        if Path(destination).name == "face_coefficients.json" and ".dfmvr-" not in str(destination):
            raise OSError(28, "No space left on device")
        return real_replace(source, destination, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        with staged_outputs([tmp_path / name for name in names]) as staged:
            for name in names:
                staged(tmp_path / name).write_text(f"new {name}")
    assert _listing(tmp_path) == sorted(names[:2])                           # the old set, untouched
    assert [(tmp_path / name).read_text() for name in names[:2]] == [f"old {n}" for n in names[:2]]
    monkeypatch.setattr(os, "replace", real_replace)
    with staged_outputs([tmp_path / name for name in names]) as staged:
        for name in names:
            staged(tmp_path / name).write_text(f"new {name}")
    assert _listing(tmp_path) == sorted(names)
    assert [(tmp_path / name).read_text() for name in names] == [f"new {n}" for n in names]
    with pytest.raises(RuntimeError):
        with staged_outputs([tmp_path / "a" / "b" / "face.obj"]) as staged:
            staged(tmp_path / "a" / "b" / "face.obj").write_text("x")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "a").exists()
    with staged_outputs([tmp_path / "a" / "b" / "face.obj"]) as staged:
        staged(tmp_path / "a" / "b" / "face.obj").write_text("x")
    assert _listing(tmp_path) == sorted([*names, "a", "a/b", "a/b/face.obj"])
