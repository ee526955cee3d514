"""Real-photo preparation: load -> detect 68 landmarks -> POS crop -> parse mask, cached, for folders of photos.

>>> run = prepare_folder("my_photos/")                        # doctest: +SKIP
>>> run.summary                 # one row per file: file, status ("ok" / "failed" / "missing"), reason, ...
>>> samples = run.samples()     # complete triplets as MultiViewSample (views A left, B front, C right)

Folder layouts (:func:`discover_photos`):

- ``0/``, ``1/``, ``2/`` sub-folders (Pixel-Face / DF-MVR ``samples/``: 0 left, 1 front, 2 right): files are
  grouped by equal stem, or, as in the DF-MVR samples, by numeric stems that differ by the view index
  (``00331070.png``, ``00331071.png``, ``00331072.png``);
- ``<stem>_left``, ``<stem>_front``, ``<stem>_right`` (also ``-``, ``.`` or no separator, any case; a bare
  ``left.jpg`` / ``front.jpg`` / ``right.jpg`` forms a triplet named after the folder);
- anything else: single photos.

Bad input never stops a folder run: each failure is a :class:`PhotoError` naming the file and the reason, recorded
in the summary. Convertible images are converted with a :class:`PhotoWarning` (grayscale -> 3 channels, alpha
composited on white, 16-bit scaled to 8-bit, palette / CMYK -> RGB, EXIF rotation applied).

Cache: one ``.npz`` per (file content sha1, settings hash) in ``cache_dir`` (default ``<repo>/data/.cache/photos``
or ``$DFMVR_PHOTO_CACHE``), written atomically. Changing the file's bytes changes its key, so stale entries are
never read.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import get_config
from ..face_model.factory import load_face_model
from ..face_model.parts import part_mask_image
from ..provenance import REPOSITORY_ROOT, atomic_path
from .photo_crop import REFERENCE_SIZE, AlignmentTemplate, align_face, alignment_template
from .landmarks import LandmarkDetector, NoFaceFound, default_landmark_detector
from .readers_common import ImageReadError, read_image
from .sample import MultiViewSample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CACHE_FORMAT_VERSION = 1
VIEW_KEYS = ("left", "front", "right")


class PhotoError(Exception):
    """A photo that cannot be prepared: ``path`` and a human-readable ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class PhotoWarning(UserWarning):
    """A photo was converted on the way in (the message names the file and what was done)."""


def default_cache_dir() -> Path:
    """``$DFMVR_PHOTO_CACHE`` if set, else ``<repository>/data/.cache/photos`` (``data/`` is git-ignored)."""
    override = os.environ.get("DFMVR_PHOTO_CACHE")
    return Path(override) if override else REPOSITORY_ROOT / "data" / ".cache" / "photos"


# ------------------------------------------------------------------------------------------------------- loading
def load_photo(path: str | os.PathLike, min_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Read a photo as (H, W, 3) uint8 RGB, plus the list of conversions applied (see
    :func:`dfmvr_lib.data.readers_common.read_image`).

    Raises :class:`PhotoError` for unreadable, non-image, truncated or too-small files.
    """
    try:
        rgb, notes = read_image(path)
    except ImageReadError as error:
        raise PhotoError(path, error.reason) from error
    height, width = rgb.shape[:2]
    if min(height, width) < min_size:
        raise PhotoError(path, f"image too small: {width}x{height} px (the short side must be at least {min_size} px)")
    return np.rint(rgb * 255.0).astype(np.uint8), notes


# ------------------------------------------------------------------------------------------------------- parsing
class ParseProvider(Protocol):
    """Face-part labels of a crop: ``provider(image (S, S, 3) uint8, landmarks (68, 2)) -> (S, S) int64``
    (10 classes, docs/conventions.md). ``name`` enters the cache key."""

    name: str

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray: ...


class LandmarkPolygonParser:
    """Parse masks from landmark polygons (:func:`dfmvr_lib.face_model.parts.part_mask_image`); the stand-in
    until the parse network is trained."""

    name = "landmark_polygons"

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return part_mask_image(landmarks, image.shape[0], image.shape[1]).astype(np.int64)


# ------------------------------------------------------------------------------------------------------ pipeline
@dataclass
class PreparedPhoto:
    """One prepared photo.

    image (S, S, 3) uint8 crop; landmarks (68, 2) crop pixels; source_landmarks (68, 2) photo pixels;
    affine (2, 3) photo -> crop pixels; mask (S, S) int64 part labels; box (4,) photo pixels; score; detector;
    notes (conversions applied); from_cache.
    """

    path: Path
    image: np.ndarray
    landmarks: np.ndarray
    source_landmarks: np.ndarray
    affine: np.ndarray
    mask: np.ndarray
    box: np.ndarray
    score: float
    detector: str
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False


@functools.lru_cache(maxsize=4)
def _template_for(face_model_config, points: str) -> AlignmentTemplate:
    return alignment_template(load_face_model(face_model_config), points=points)


def default_template(profile: str = "cpu", points: str = "68") -> AlignmentTemplate:
    """The alignment template of a profile's face model (built once per process)."""
    return _template_for(get_config(profile).face_model, points)


class PhotoPreparer:
    """Prepares photos one at a time with fixed settings.

    Args:
        detector: a :class:`LandmarkDetector` (default: :func:`default_landmark_detector`, built on first use).
        template: the crop template (default: :func:`default_template` of ``profile``).
        output_size: crop size in pixels (the profile's image size is the natural choice).
        min_size: smallest accepted short side of a photo, pixels.
        parse_provider: a :class:`ParseProvider` (default :class:`LandmarkPolygonParser`).
        cache_dir: cache folder (default :func:`default_cache_dir`); ``use_cache=False`` disables the cache.
    """

    def __init__(self, detector: LandmarkDetector | None = None, template: AlignmentTemplate | None = None,
                 output_size: int = REFERENCE_SIZE, min_size: int = 64, parse_provider: ParseProvider | None = None,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True, profile: str = "cpu"):
        self._detector = detector
        self._template = template
        self.profile = profile
        self.output_size = int(output_size)
        self.min_size = int(min_size)
        self.parse_provider = parse_provider or LandmarkPolygonParser()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache

    @property
    def detector(self) -> LandmarkDetector:
        if self._detector is None:
            self._detector = default_landmark_detector()
        return self._detector

    @property
    def template(self) -> AlignmentTemplate:
        if self._template is None:
            self._template = default_template(self.profile)
        return self._template

    def settings_hash(self) -> str:
        detector = getattr(self.detector, "name", type(self.detector).__name__)
        settings = {"version": CACHE_FORMAT_VERSION, "detector": detector,
                    "template": self.template.hash(), "output_size": self.output_size, "min_size": self.min_size,
                    "parse": getattr(self.parse_provider, "name", type(self.parse_provider).__name__)}
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def cache_path(self, path: str | os.PathLike) -> Path:
        """Where the cached result of ``path`` (its current content) lives."""
        try:
            digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        except OSError as error:
            raise PhotoError(path, f"cannot read the file ({error.strerror or error})") from error
        return self.cache_dir / digest[:2] / f"{digest}-{self.settings_hash()}.npz"

    def _read_cache(self, path: Path, cache_file: Path) -> PreparedPhoto | None:
        try:
            with np.load(cache_file, allow_pickle=False) as stored:
                notes = json.loads(str(stored["notes"]))
                return PreparedPhoto(path=path, image=stored["image"], landmarks=stored["landmarks"],
                                     source_landmarks=stored["source_landmarks"], affine=stored["affine"],
                                     mask=stored["mask"].astype(np.int64), box=stored["box"],
                                     score=float(stored["score"]), detector=str(stored["detector"]), notes=notes,
                                     from_cache=True)
        except (OSError, KeyError, ValueError):  # unreadable entry: recompute and overwrite
            return None

    def _write_cache(self, cache_file: Path, photo: PreparedPhoto) -> None:
        with atomic_path(cache_file) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, image=photo.image, landmarks=photo.landmarks,
                                    source_landmarks=photo.source_landmarks, affine=photo.affine,
                                    mask=photo.mask.astype(np.uint8), box=photo.box, score=np.float64(photo.score),
                                    detector=np.array(photo.detector), notes=np.array(json.dumps(photo.notes)))

    def prepare(self, path: str | os.PathLike) -> PreparedPhoto:
        """Prepare one photo (from the cache when possible). Raises :class:`PhotoError`; conversions are
        announced with :class:`PhotoWarning` (also on cache hits)."""
        path = Path(path)
        cache_file = self.cache_path(path) if self.use_cache else None
        photo = self._read_cache(path, cache_file) if cache_file is not None and cache_file.exists() else None
        if photo is None:
            photo = self._compute(path)
            if cache_file is not None:
                self._write_cache(cache_file, photo)
        for note in photo.notes:
            warnings.warn(f"{path}: {note}", PhotoWarning, stacklevel=2)
        return photo

    def _compute(self, path: Path) -> PreparedPhoto:
        image, notes = load_photo(path, self.min_size)
        try:
            detection = self.detector.detect(image)
        except NoFaceFound as error:
            raise PhotoError(path, f"no face found (detector: {getattr(self.detector, 'name', '?')})") from error
        try:
            aligned = align_face(image, detection.landmarks, self.template, self.output_size)
        except ValueError as error:
            raise PhotoError(path, f"alignment failed: {error}") from error
        mask = np.asarray(self.parse_provider(aligned.image, aligned.landmarks), dtype=np.int64)
        if mask.shape != aligned.image.shape[:2]:
            raise PhotoError(path, f"parse provider returned shape {mask.shape}, expected {aligned.image.shape[:2]}")
        return PreparedPhoto(path=path, image=aligned.image, landmarks=aligned.landmarks,
                             source_landmarks=detection.landmarks, affine=aligned.affine, mask=mask,
                             box=np.asarray(detection.box, dtype=np.float64), score=float(detection.score),
                             detector=detection.detector, notes=notes)


# ------------------------------------------------------------------------------------------------------- folders
@dataclass
class PhotoGroup:
    """A triplet (``files`` = (left, front, right), ``None`` for a missing view) or a single photo (1 file)."""

    name: str
    kind: str
    files: tuple[Path | None, ...]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _view_folder_groups(folder: Path) -> list[PhotoGroup]:
    views = [_images_in(folder / str(v)) for v in range(3)]

    def by_key(key: Callable[[Path, int], str | None]) -> dict[str, list[Path | None]]:
        groups: dict[str, list[Path | None]] = {}
        for v, files in enumerate(views):
            for file in files:
                groups.setdefault(key(file, v) or f"{file.stem}@{v}", [None, None, None])[v] = file
        return groups

    same_stem = by_key(lambda f, v: f.stem)
    offset = by_key(lambda f, v: (f"{int(f.stem) - v:0{len(f.stem)}d}" if f.stem.isdigit() else None))
    complete = lambda groups: sum(all(x is not None for x in g) for g in groups.values())  # noqa: E731
    groups = offset if complete(offset) > complete(same_stem) else same_stem
    return [PhotoGroup(name, "triplet", tuple(files)) for name, files in sorted(groups.items())]


_VIEW_PATTERN = re.compile(r"^(?P<stem>.*?)[_\-. ]?(?P<view>left|front|right)$", re.IGNORECASE)


def discover_photos(folder: str | os.PathLike) -> list[PhotoGroup]:
    """Triplets and single photos in ``folder`` (see the module docstring for the layouts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    groups: list[PhotoGroup] = []
    if all((folder / str(v)).is_dir() for v in range(3)):
        groups.extend(_view_folder_groups(folder))
    triplets: dict[str, list[Path | None]] = {}
    for file in _images_in(folder):
        match = _VIEW_PATTERN.match(file.stem)
        if match is None:
            groups.append(PhotoGroup(file.stem, "single", (file,)))
            continue
        name = match["stem"] or folder.name
        slot = triplets.setdefault(name, [None, None, None])
        view = VIEW_KEYS.index(match["view"].lower())
        if slot[view] is not None:  # two files for one view (e.g. a.png and a.jpg): keep both, second as single
            groups.append(PhotoGroup(file.stem, "single", (file,)))
        else:
            slot[view] = file
    groups.extend(PhotoGroup(name, "triplet", tuple(files)) for name, files in sorted(triplets.items()))
    return groups


@dataclass
class FolderRun:
    """Result of :func:`prepare_folder`: the groups found, the prepared photos by path, and the ``summary``
    DataFrame (one row per file: ``file, group, view, status, reason, cached, detector, notes``)."""

    groups: list[PhotoGroup]
    photos: dict[Path, PreparedPhoto]
    summary: pd.DataFrame

    @property
    def failures(self) -> pd.DataFrame:
        return self.summary[self.summary["status"] != "ok"]

    def samples(self, complete_only: bool = True) -> list:
        """Triplets as :class:`dfmvr_lib.data.sample.MultiViewSample` (images in [0, 1], parse maps, landmarks;
        a missing or failed view is black with ``view_present`` False; ``complete_only`` keeps full triplets)."""
        samples = []
        for group in self.groups:
            if group.kind != "triplet":
                continue
            photos = [self.photos.get(f) if f is not None else None for f in group.files]
            if complete_only and any(p is None for p in photos):
                continue
            present = [p for p in photos if p is not None]
            if not present:
                continue
            size = present[0].image.shape[0]
            images = torch.zeros(3, 3, size, size)
            parse = torch.zeros(3, size, size, dtype=torch.int64)
            landmarks = torch.zeros(3, 68, 2)
            for v, photo in enumerate(photos):
                if photo is not None:
                    images[v] = torch.from_numpy(photo.image).permute(2, 0, 1).float() / 255.0
                    parse[v] = torch.from_numpy(photo.mask)
                    landmarks[v] = torch.from_numpy(photo.landmarks).float()
            present_mask = torch.tensor([p is not None for p in photos])
            samples.append(MultiViewSample(
                images=images, parse_maps=parse, landmarks_2d=landmarks,
                landmark_visibility=present_mask[:, None].expand(3, 68).clone(), view_present=present_mask,
                subject_id=group.name, sample_id=group.name,
                extras={"files": [str(f) if f is not None else None for f in group.files],
                        "affines": [p.affine if p is not None else None for p in photos]}))
        return samples


def prepare_folder(folder: str | os.PathLike, preparer: PhotoPreparer | None = None, progress: bool = True,
                   **preparer_options) -> FolderRun:
    """Prepare every photo in ``folder``; failures are recorded, never raised.

    Args:
        folder: a folder laid out as the module docstring describes.
        preparer: a :class:`PhotoPreparer`; else one is built from ``preparer_options``.
        progress: show a tqdm progress bar.
    """
    preparer = preparer or PhotoPreparer(**preparer_options)
    groups = discover_photos(folder)
    jobs: list[tuple[PhotoGroup, int, Path | None]] = [
        (group, index, file) for group in groups for index, file in enumerate(group.files)]
    photos: dict[Path, PreparedPhoto] = {}
    rows = []
    files = [job for job in jobs if job[2] is not None]
    bar = tqdm(files, desc=f"photos in {Path(folder).name}", unit="photo", disable=not progress)
    results: dict[Path, tuple[str, str, PreparedPhoto | None, list[str]]] = {}
    for _, _, file in bar:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PhotoWarning)
            try:
                photo = preparer.prepare(file)
                results[file] = ("ok", "", photo, [str(w.message) for w in caught])
            except PhotoError as error:
                results[file] = ("failed", error.reason, None, [])
            except Exception as error:  # a bug or an unexpected library error: record it, keep going
                results[file] = ("failed", f"unexpected {type(error).__name__}: {error}", None, [])
        for message in results[file][3]:
            warnings.warn(message, PhotoWarning, stacklevel=2)
    bar.close()
    for group, index, file in jobs:
        view = ("A", "B", "C")[index] if group.kind == "triplet" else ""
        if file is None:
            rows.append({"file": f"{group.name} ({VIEW_KEYS[index]} view)", "group": group.name, "view": view,
                         "status": "missing", "reason": f"no {VIEW_KEYS[index]} view found for triplet {group.name}",
                         "cached": False, "detector": "", "notes": ""})
            continue
        status, reason, photo, _ = results[file]
        if photo is not None:
            photos[file] = photo
        rows.append({"file": str(file), "group": group.name, "view": view, "status": status, "reason": reason,
                     "cached": bool(photo.from_cache) if photo else False,
                     "detector": photo.detector if photo else "", "notes": "; ".join(photo.notes) if photo else ""})
    summary = pd.DataFrame(rows, columns=["file", "group", "view", "status", "reason", "cached", "detector", "notes"])
    return FolderRun(groups=groups, photos=photos, summary=summary)


__all__ = [
    "PhotoError", "PhotoWarning", "load_photo", "ParseProvider", "LandmarkPolygonParser", "PreparedPhoto",
    "PhotoPreparer", "PhotoGroup", "discover_photos", "FolderRun", "prepare_folder",
    "default_template", "default_cache_dir",
]
