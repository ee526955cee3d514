"""Helpers shared by the real-dataset readers (Pixel-Face, Bosphorus, Multi-PIE, CelebAMask-HQ).

- :func:`load_image_rgb`: any image file -> ``(3, H, W)`` float32 tensor in [0, 1], RGB, with an error that names
  the file for anything that cannot be read or converted (see its docstring for the mode table).
- :func:`load_mask_png`: a binary / label mask -> ``(H, W)`` array.
- :func:`resize_image`, :func:`resize_labels`, :func:`fit_square`: resizing (bilinear with anti-aliasing for colour,
  nearest for labels; ``fit_square`` pads to a square with black, centred, then resizes, so faces keep their
  aspect ratio).
- :class:`DatasetLayoutError` / :func:`layout_error`: "expected X at Y, found: a, b, c" errors.
- :func:`file_problem`: why a path is not a readable file (missing, a folder, a broken link or link loop), the
  check every reader makes before opening a file.
- :func:`build_multiview_sample`: images of the three views (A left, B front, C right; a missing view is ``None``)
  -> :class:`~dfmvr_lib.data.sample.MultiViewSample`, with landmarks / parse maps from optional providers.
- :func:`split_subjects`: deterministic train / validation split by subject.

The readers' base classes (shared constructor options and their checks, ``split``, sample assembly) are in
:mod:`dfmvr_lib.data.readers_base`.

Errors: every reader refuses bad input with a :class:`DatasetError` (a ``ValueError``) whose message names the
offending file or folder: :class:`DatasetLayoutError` (folder layout), :class:`DatasetFileError` (file content:
corrupt, truncated, NaN values), :class:`ImageReadError` (images), :class:`DatasetFileNotFound` (also a
``FileNotFoundError``) and :class:`DatasetFieldMissing` (also a ``KeyError``). Nothing is ever written.

Providers (the real-photo preparation module supplies them; readers never guess landmarks):

- ``landmark_provider(image) -> (landmarks (68, 2), visibility (68,))`` or just ``landmarks``; ``image`` is the
  ``(3, H, W)`` float tensor exactly as the sample returns it, landmarks in its pixel coordinates
  (docs/conventions.md). Without a provider landmarks are NaN and visibility False.
- ``parse_provider(image) -> (H, W)`` integer part labels (10 classes). Without one, parse maps are zeros, unless
  ``parse_from_landmarks=True`` and the view has 68 finite landmarks: then the landmark-polygon mask of
  :func:`dfmvr_lib.face_model.parts.part_mask_image` is used.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..face_model.parts import part_mask_image
from .sample import MultiViewSample

LandmarkProvider = Callable[[torch.Tensor], object]
ParseProvider = Callable[[torch.Tensor], object]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """Base of every error a dataset reader raises for bad input (a ``ValueError``): catch this one type to skip or
    report a bad file or folder. The message always names the file or folder."""


class DatasetLayoutError(DatasetError):
    """A dataset folder does not have the layout a reader expects."""


class DatasetFileError(DatasetError):
    """A dataset file whose content cannot be used (corrupt, truncated, wrong format, NaN values): ``path`` and a
    human-readable ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetFileNotFound(DatasetFileError, FileNotFoundError):
    """A dataset file that does not exist (or is a folder, a broken link, a link loop); also a
    ``FileNotFoundError``."""


class DatasetFieldMissing(DatasetFileError, KeyError):
    """A structured file (``.mat``) lacks a struct or field the reader needs; also a ``KeyError``."""

    __str__ = DatasetFileError.__str__          # KeyError would quote the message


class ImageReadError(DatasetFileError):
    """An image file that cannot be used: ``path`` and a human-readable ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.args = (f"cannot use image {self.path}: {reason}",)


MAX_IMAGE_PIXELS = 89_478_485
"""Largest image decoded (width x height; Pillow's decompression-bomb warning threshold, about 9459 x 9459 = 89.5
megapixels): larger ones are refused from their header, before any pixel is decoded."""


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be opened as a file (``"not found"``, ``"is a folder, not a file"``, ``"is a symbolic
    link that leads nowhere (broken, or a loop)"``), or None when it is a file."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a folder, not a file"
    if path.is_symlink():
        return "is a symbolic link that leads nowhere (broken, or a loop)"
    return "not found"


def _examples(root: Path, limit: int = 6) -> str:
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return "(cannot list the folder)"
    if not entries:
        return "(the folder is empty)"
    shown = [entry.name + ("/" if entry.is_dir() else "") for entry in entries[:limit]]
    more = f", ... ({len(entries) - limit} more)" if len(entries) > limit else ""
    return ", ".join(shown) + more


def layout_error(dataset: str, root: str | os.PathLike, expected: str, found: Iterable[str] | None = None
                 ) -> DatasetLayoutError:
    """A :class:`DatasetLayoutError` saying what was expected where and listing a few entries that were found."""
    root = Path(root)
    if root.is_symlink() and not root.exists():
        return DatasetLayoutError(f"{dataset}: {root} is a symbolic link that leads nowhere (broken, or a loop; "
                                  f"expected {expected})")
    if not root.exists():
        return DatasetLayoutError(f"{dataset}: folder {root} does not exist (expected {expected})")
    if not root.is_dir():
        return DatasetLayoutError(f"{dataset}: {root} is not a folder (expected {expected})")
    found_text = ", ".join(list(found)[:6]) if found is not None else _examples(root)
    return DatasetLayoutError(f"{dataset}: no samples under {root}; expected {expected}; "
                              f"found: {found_text or '(nothing)'}")


def _refuse(path: Path, why: str) -> ImageReadError:
    return ImageReadError(path, why)


@contextmanager
def _opened_image(path: Path) -> Iterator:
    """The one place where image files are opened: ``with _opened_image(path) as image`` yields the decoded Pillow
    image, after refusing with :class:`ImageReadError` naming the file what is not a file, an empty file, an image
    of more than :data:`MAX_IMAGE_PIXELS` (from its header, before decoding: decompression bombs), and anything
    Pillow cannot identify or decode (truncated, corrupt, another format)."""
    problem = file_problem(path)
    if problem is not None:
        raise _refuse(path, "file not found" if problem == "not found" else problem)
    try:
        if path.stat().st_size == 0:
            raise _refuse(path, "the file is empty")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)      # checked below, with our limit
            with Image.open(path) as opened:
                width, height = opened.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _refuse(path, _too_large(width * height))
                if width == 0 or height == 0:
                    raise _refuse(path, f"the image has no pixels ({width}x{height})")
                opened.load()                      # decodes fully: truncated files raise here
                yield opened
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise _refuse(path, _too_large(int(pixels[1]) if pixels else None)) from None
    except UnidentifiedImageError:
        raise _refuse(path, "not a readable image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _refuse(path, f"unreadable or truncated ({type(error).__name__}: {reason})") from None


def _too_large(pixels: int | None) -> str:
    size = f"{pixels / 1e6:.0f} megapixels" if pixels is not None else "its header's size"
    return (f"image too large to decode: {size}, more than the limit of {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels "
            "(a huge or forged header: a decompression bomb)")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Decode an image file to ``(H, W, 3)`` float32 RGB in [0, 1], plus the list of conversions applied.

    The one image decoder of the workbook (datasets and the real-photo pipeline both use it). Conversions (Pillow
    modes): EXIF orientation applied; L / 1 / P / CMYK / YCbCr converted to RGB; grayscale replicated to three
    channels; 16-bit grayscale (``I;16*``, and ``I`` from 16-bit PNGs) divided by 65535; RGBA / LA / PA composited
    over white. 16-bit-per-channel RGB PNGs are delivered by Pillow as 8-bit RGB and are accepted as such.
    Refused with :class:`ImageReadError` naming the file: missing files, folders, broken links and link loops,
    empty, unreadable or truncated files, images of more than :data:`MAX_IMAGE_PIXELS` (refused from the header,
    before decoding), float (``F``) images and 32-bit integer images other than 16-bit PNG (their value range is
    unknown), other modes.
    """
    path = Path(path)
    notes: list[str] = []
    with _opened_image(path) as opened:
        fmt = opened.format
        image = opened
        if opened.getexif().get(0x0112, 1) not in (1, None):  # EXIF orientation tag
            image = ImageOps.exif_transpose(opened)
            notes.append("rotated by its EXIF orientation")
        mode = image.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N") or (mode == "I" and fmt == "PNG"):
            array = np.asarray(image, dtype=np.float64)
            if array.max(initial=0) > 65535 or array.min(initial=0) < 0:
                raise _refuse(path, f"integer image (mode {mode}) with values outside 0..65535")
            gray = (array / 65535.0).astype(np.float32)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            notes += ["16-bit image scaled to [0, 1]", "grayscale image converted to 3 channels"]
        elif mode in ("I", "F"):
            raise _refuse(path, f"{'float' if mode == 'F' else '32-bit integer'} image (mode {mode}) has no "
                                "known value range; convert it to 8- or 16-bit")
        elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
            rgb = rgba[..., :3] * rgba[..., 3:4] + (1.0 - rgba[..., 3:4])
            notes.append("alpha channel composited on white")
            if mode in ("LA", "La"):
                notes.append("grayscale image converted to 3 channels")
        elif mode in ("RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            if mode in ("L", "1"):
                notes.append("grayscale image converted to 3 channels")
            elif mode != "RGB":
                notes.append(f"{mode} image converted to RGB")
        else:
            raise _refuse(path, f"unsupported image mode {mode!r}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise _refuse(path, f"unexpected decoded shape {rgb.shape}")
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), notes


def load_image_rgb(path: str | os.PathLike) -> torch.Tensor:
    """:func:`read_image` as a ``(3, H, W)`` float32 tensor in [0, 1] (conversions are silent)."""
    rgb, _ = read_image(path)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def load_mask_png(path: str | os.PathLike) -> np.ndarray:
    """Read a mask image as an ``(H, W)`` array of its values (first channel of colour masks; alpha ignored).

    Refused with :class:`ImageReadError` naming the file: what :func:`read_image` refuses for any image (missing,
    empty, truncated, too large, not an image), and float (mode ``F``) images, which hold no labels."""
    path = Path(path)
    with _opened_image(path) as image:
        if image.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
            array = np.asarray(image.convert("RGB"))[..., 0]
        elif image.mode in ("LA", "PA"):
            array = np.asarray(image)[..., 0]
        elif image.mode == "F":
            raise _refuse(path, "float image (mode F): a mask must hold integer labels")
        else:
            array = np.asarray(image)
    if array.ndim != 2:
        raise _refuse(path, f"mask must be a single-channel image, decoded shape {array.shape}")
    return array


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(C, H, W)`` float image -> ``(C, height, width)``, bilinear with anti-aliasing when shrinking."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    out = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False,
                        antialias=shrinking)[0]
    return out.clamp_(0.0, 1.0)


def resize_labels(labels: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(H, W)`` integer labels -> ``(height, width)`` int64, nearest neighbour (pixel centres)."""
    labels = torch.as_tensor(np.asarray(labels)).to(torch.int64)
    if tuple(labels.shape) == (height, width):
        return labels
    rows = ((torch.arange(height, dtype=torch.float64) + 0.5) * labels.shape[0] / height).floor().long()
    cols = ((torch.arange(width, dtype=torch.float64) + 0.5) * labels.shape[1] / width).floor().long()
    rows = rows.clamp_(0, labels.shape[0] - 1)
    cols = cols.clamp_(0, labels.shape[1] - 1)
    return labels[rows][:, cols]


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pad ``(C, H, W)`` with black to a centred square, then resize to ``(C, size, size)`` (aspect ratio kept)."""
    _, height, width = image.shape
    side = max(height, width)
    if height != width:
        top, left = (side - height) // 2, (side - width) // 2
        padded = image.new_zeros((image.shape[0], side, side))
        padded[:, top:top + height, left:left + width] = image
        image = padded
    return resize_image(image, size, size)


def _landmarks_from_provider(provider: LandmarkProvider | None, image: torch.Tensor, source: str
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    if provider is None:
        return torch.full((68, 2), float("nan")), torch.zeros(68, dtype=torch.bool)
    result = provider(image)
    if isinstance(result, tuple) and len(result) == 2:
        landmarks, visibility = result
    else:
        landmarks, visibility = result, None
    landmarks = torch.as_tensor(np.asarray(landmarks, dtype=np.float32))
    if tuple(landmarks.shape) != (68, 2):
        raise ValueError(f"{source}: landmark_provider must return (68, 2) landmarks, got {tuple(landmarks.shape)}")
    if visibility is None:
        visibility = torch.isfinite(landmarks).all(dim=1)
    else:
        visibility = torch.as_tensor(np.asarray(visibility)).to(torch.bool).reshape(-1)
        if visibility.shape[0] != 68:
            raise ValueError(f"{source}: landmark_provider visibility must have 68 entries, got {visibility.shape[0]}")
    return landmarks, visibility


def build_multiview_sample(images: Sequence[torch.Tensor | None], *, subject_id: str, sample_id: str,
                           image_size: int | None, source: str,
                           landmark_provider: LandmarkProvider | None = None,
                           parse_provider: ParseProvider | None = None,
                           parse_from_landmarks: bool = False,
                           landmarks_3d: torch.Tensor | None = None,
                           mesh_vertices: torch.Tensor | None = None,
                           mesh_triangles: torch.Tensor | None = None,
                           extras: dict | None = None) -> MultiViewSample:
    """Assemble a validated :class:`MultiViewSample` from three view images (A, B, C; ``None`` = missing view).

    ``image_size``: square output size (each image padded to a centred square and resized, :func:`fit_square`);
    ``None`` keeps the native size, which must then agree across the present views.
    """
    if len(images) != 3:
        raise ValueError(f"{source}: need 3 view slots (A, B, C), got {len(images)}")
    present = [image is not None for image in images]
    if image_size is not None:
        height = width = int(image_size)
        ready = [fit_square(image, height) if image is not None else None for image in images]
    else:
        shapes = {tuple(image.shape[-2:]) for image in images if image is not None}
        if len(shapes) > 1:
            raise ValueError(f"{source}: the views have different sizes {sorted(shapes)}; pass image_size=")
        if not shapes:
            raise ValueError(f"{source}: no view present and no image_size to make black views")
        height, width = shapes.pop()
        ready = list(images)
    stacked = torch.zeros((3, 3, height, width), dtype=torch.float32)
    landmarks = torch.full((3, 68, 2), float("nan"))
    visibility = torch.zeros((3, 68), dtype=torch.bool)
    parse = torch.zeros((3, height, width), dtype=torch.int64)
    for view, image in enumerate(ready):
        if image is None:
            continue
        stacked[view] = image
        landmarks[view], visibility[view] = _landmarks_from_provider(landmark_provider, image, f"{source} view {view}")
        if parse_provider is not None:
            labels = torch.as_tensor(np.asarray(parse_provider(image))).to(torch.int64)
            if tuple(labels.shape) != (height, width):
                raise ValueError(f"{source}: parse_provider must return ({height}, {width}) labels, "
                                 f"got {tuple(labels.shape)}")
            parse[view] = labels
        elif parse_from_landmarks and bool(torch.isfinite(landmarks[view]).all()):
            parse[view] = torch.from_numpy(part_mask_image(landmarks[view].numpy(), height, width))
    sample = MultiViewSample(
        images=stacked, parse_maps=parse, landmarks_2d=landmarks, landmark_visibility=visibility,
        view_present=torch.tensor(present, dtype=torch.bool), subject_id=str(subject_id), sample_id=str(sample_id),
        landmarks_3d=landmarks_3d, mesh_vertices=mesh_vertices, mesh_triangles=mesh_triangles,
        extras=dict(extras or {}))
    sample.validate(source)
    return sample


def split_subjects(subject_ids: Iterable[str], train_fraction: float = 0.8, seed: int = 0
                   ) -> tuple[list[str], list[str]]:
    """Deterministic split of the distinct subject ids: ``(train, validation)``, each sorted.

    The sorted distinct ids are shuffled with ``numpy.random.default_rng(seed)``; the first
    ``round(train_fraction * n)`` are training subjects (at least one of each side when there are >= 2 subjects
    and 0 < train_fraction < 1). No subject is on both sides.
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
    unique = sorted(set(str(s) for s in subject_ids))
    n = len(unique)
    n_train = int(round(train_fraction * n))
    if n >= 2 and 0.0 < train_fraction < 1.0:
        n_train = min(max(n_train, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    train = sorted(unique[i] for i in order[:n_train])
    val = sorted(unique[i] for i in order[n_train:])
    return train, val
