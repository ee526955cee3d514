"""From photo files to the network's input: which file is which view, the prepared crops, the parse maps, and
checks that the views belong together.

Preparation is :class:`dfmvr_lib.data.photos.PhotoPreparer` (landmark detection, POS crop to the face model's
framing at the network's image size); the parse maps come from the frozen parser of the training run
(:class:`ParserLabels`), the network's stand-in for the exact labels the synthetic training data carried (see
:func:`dfmvr_lib.training.data.make_batch`: ``network_parse_maps`` are the dataset's parse maps). Views that are
not given are black images with parse label 0 and view weight 0, exactly as training's single-view mode drops
views (:func:`dfmvr_lib.training.data.make_batch` with ``single_view_mode``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.photos import PhotoError, PhotoGroup, PhotoPreparer, PreparedPhoto, discover_photos
from ..parsing import predict_labels
from ..training.data import TrainingBatch

VIEW_NAMES = ("left", "front", "right")
"""The views in tensor order (A, B, C of docs/conventions.md)."""

DEFAULT_VIEWS = {1: ("front",), 2: None, 3: VIEW_NAMES}
"""Which views the files are when ``--views`` is not given (two files must say which views they are)."""

PROPORTION_TOLERANCE = 0.07
"""Largest difference of a vertical face proportion (:func:`vertical_proportions`) between two views before the
views are reported as possibly different people or a failed detection. Same-person views differ by at most ~0.03 on
the synthetic benchmark and ~0.045 on the real triplets of the development fixtures; the proportions of different
people differ by ~0.04 on average, so only clear mismatches are reported."""

SIDE_VIEW_MARGIN = 0.1
"""A left view whose nose lies right of ``0.5 + margin`` of the face width (:func:`nose_position`), or a right view
whose nose lies left of ``0.5 - margin``, is reported as turned the wrong way."""


class InputError(ValueError):
    """The files cannot be used as they are (wrong number, unknown view names, a file that cannot be read or has
    no face); the message names the file."""


def assign_views(files: Sequence[str | os.PathLike], views: Sequence[str] | None = None) -> tuple[Path | None, ...]:
    """Place 1-3 files in the (left, front, right) slots.

    Args:
        files: the photo paths, in the order of ``views``.
        views: the view of each file (names from :data:`VIEW_NAMES`); default :data:`DEFAULT_VIEWS`.
    Returns:
        (3,) tuple of paths, None for a view not given.
    Raises:
        InputError for 0 or more than 3 files, two files without ``views``, unknown or repeated view names, or a
        count of views that differs from the count of files.
    """
    files = [Path(f) for f in files]
    if not 1 <= len(files) <= 3:
        raise InputError(f"give 1, 2 or 3 photos (left, front, right), got {len(files)}")
    if views is None:
        views = DEFAULT_VIEWS[len(files)]
        if views is None:
            raise InputError("two photos given: say which views they are, e.g. --views left,front")
    views = [str(v).strip().lower() for v in views]
    unknown = [v for v in views if v not in VIEW_NAMES]
    if unknown:
        raise InputError(f"unknown view name(s) {unknown}; use {', '.join(VIEW_NAMES)}")
    if len(set(views)) != len(views):
        raise InputError(f"each view may be given once, got {views}")
    if len(views) != len(files):
        raise InputError(f"{len(files)} photo(s) but {len(views)} view name(s) ({','.join(views)})")
    slots: list[Path | None] = [None, None, None]
    for view, file in zip(views, files):
        slots[VIEW_NAMES.index(view)] = file
    return tuple(slots)


class ParserLabels:
    """Parse provider (:class:`dfmvr_lib.data.photos.ParseProvider`) backed by a trained face parser: the argmax
    labels (N, H, W) of the parser on the crop, with test-time flip averaging.

    Args:
        parser: a :class:`~dfmvr_lib.parsing.BiSeNet` (eval mode).
        name: enters the photo cache key (e.g. the parser run's directory name).
    """

    def __init__(self, parser: torch.nn.Module, name: str = "parser"):
        self.parser = parser
        self.name = f"parser:{name}"

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:

        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        return predict_labels(self.parser, tensor, flip=True)[0].numpy().astype(np.int64)


@dataclass
class PreparedViews:
    """The prepared input of one reconstruction.

    files: (3,) the photo of each view or None; photos: (3,) :class:`~dfmvr_lib.data.photos.PreparedPhoto` or None;
    targets: a :class:`~dfmvr_lib.training.TrainingBatch` of one triplet: images (1, 3, 3, S, S) in [0, 1], parse
    maps (1, 3, S, S), landmarks_2d (1, 3, 68, 2) crop pixels, view_weight (1, 3) (0 = view not given; its image is
    black and its parse map 0, also in ``network_images`` / ``network_parse_maps``).
    """

    files: tuple[Path | None, ...]
    photos: tuple[PreparedPhoto | None, ...]
    targets: TrainingBatch

    @property
    def present(self) -> tuple[bool, ...]:
        return tuple(p is not None for p in self.photos)

    @property
    def view_names(self) -> list[str]:
        """Panel titles: the view and the file name (``"left: me_left.jpg"``, ``"right: (not given)"``)."""
        return [f"{view}: {file.name if file is not None else '(not given)'}" for view, file in zip(VIEW_NAMES,
                                                                                                  self.files)]


def views_batch(photos: Sequence[PreparedPhoto | None], image_size: int) -> TrainingBatch:
    """The :class:`~dfmvr_lib.training.TrainingBatch` of one triplet of prepared photos (None = view not given):
    black image, parse label 0, no landmarks, weight 0 for a missing view; images (1, 3, 3, S, S) in [0, 1]."""
    images = torch.zeros(1, 3, 3, image_size, image_size)
    parse = torch.zeros(1, 3, image_size, image_size, dtype=torch.int64)
    landmarks = torch.zeros(1, 3, 68, 2)
    for view, photo in enumerate(photos):
        if photo is None:
            continue
        if photo.image.shape[:2] != (image_size, image_size):
            raise ValueError(f"{photo.path}: crop is {photo.image.shape[:2]}, the network needs {image_size} px")
        images[0, view] = torch.from_numpy(photo.image).permute(2, 0, 1).float() / 255.0
        parse[0, view] = torch.from_numpy(np.asarray(photo.mask, dtype=np.int64))
        landmarks[0, view] = torch.from_numpy(np.asarray(photo.landmarks, dtype=np.float32))
    present = torch.tensor([[photo is not None for photo in photos]])
    weight = present.float()
    return TrainingBatch(images=images, parse_maps=parse, network_images=images * weight[:, :, None, None, None],
                         network_parse_maps=parse * present.long()[:, :, None, None], landmarks_2d=landmarks,
                         landmark_visibility=present[:, :, None].expand(1, 3, 68).clone(), view_weight=weight,
                         landmarks_3d=None)


def prepare_views(files: Sequence[Path | None], preparer: PhotoPreparer, progress=None) -> PreparedViews:
    """Prepare the given views (``files`` from :func:`assign_views`) with ``preparer``.

    ``progress``: optional callable receiving one message per photo. Raises :class:`InputError` naming the file
    when a photo cannot be read, is too small, has no face, or its crop has no face pixels in its parse map.
    """
    photos: list[PreparedPhoto | None] = []
    for view, file in zip(VIEW_NAMES, files):
        if file is None:
            photos.append(None)
            continue
        if progress is not None:
            progress(f"{view} view: {file}")
        if not Path(file).is_file():
            raise InputError(f"{file}: no such file ({view} view)")
        try:
            photo = preparer.prepare(file)
        except PhotoError as error:
            raise InputError(f"{error.path} ({view} view): {error.reason}") from error
        if not (np.asarray(photo.mask) > 0).any():
            raise InputError(f"{file} ({view} view): the face parser finds no face pixels in the aligned crop")
        photos.append(photo)
    return PreparedViews(tuple(Path(f) if f is not None else None for f in files), tuple(photos),
                         views_batch(photos, preparer.output_size))


# ------------------------------------------------------------------------------------------------------ checks
def _upright(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks (pixels) rotated about their mean so that the mouth -> brows direction points up the image
    (removes roll; yaw and pitch stay)."""
    points = np.asarray(landmarks, dtype=np.float64)
    up = points[17:27].mean(0) - points[48:68].mean(0)
    angle = np.arctan2(up[0], -up[1])                 # angle of ``up`` from the image's -v axis
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, sin], [-sin, cos]])
    return (points - points.mean(0)) @ rotation.T


def vertical_proportions(landmarks: np.ndarray) -> np.ndarray:
    """(4,) vertical face proportions of 68 iBUG landmarks (pixels), nearly unchanged by yaw, scale and roll:
    eye line -> nose base, nose base -> mouth, mouth -> chin and brows -> eye line, each divided by the eye-line ->
    chin height (heights measured along the face's up direction)."""
    height = _upright(landmarks)[:, 1]
    brows, eyes, nose_base, mouth, chin = (height[17:27].mean(), height[36:48].mean(), height[31:36].mean(),
                                           height[48:68].mean(), height[8])
    face = chin - eyes
    if abs(face) < 1e-6:
        return np.full(4, np.nan)
    return np.array([nose_base - eyes, mouth - nose_base, chin - mouth, eyes - brows]) / face


def nose_position(landmarks: np.ndarray) -> float:
    """Where the nose tip (iBUG 30) lies between the two ends of the jaw contour (iBUG 0 at 0, iBUG 16 at 1), along
    the image's horizontal: about 0.5 for a frontal face, below for a face turned towards the image's left."""
    points = np.asarray(landmarks, dtype=np.float64)
    width = points[16, 0] - points[0, 0]
    return float((points[30, 0] - points[0, 0]) / width) if abs(width) > 1e-6 else float("nan")


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


def view_consistency_warnings(files: Sequence[Path | None], landmarks: Sequence[np.ndarray | None]) -> list[str]:
    """Conservative checks that the views show one face in the expected directions.

    Args:
        files: (3,) the photo of each view (left, front, right) or None.
        landmarks: (3,) the 68 detected landmarks (68, 2) pixels of each view, or None.
    Returns:
        Messages naming the files: the same photo given for two views; a side view turned the wrong way
        (:data:`SIDE_VIEW_MARGIN`); two views whose vertical proportions differ by more than
        :data:`PROPORTION_TOLERANCE` (different people, different expressions, or a failed landmark detection).
    """
    messages = []
    given = [(view, Path(file), points) for view, file, points in zip(VIEW_NAMES, files, landmarks)
             if file is not None and points is not None]
    digests = {view: _file_digest(file) for view, file, _ in given}
    for i, (view_a, file_a, _) in enumerate(given):
        for view_b, file_b, _ in given[i + 1:]:
            if digests[view_a] is not None and digests[view_a] == digests[view_b]:
                messages.append(f"{file_a} ({view_a} view) and {file_b} ({view_b} view) are the same photo")
    for view, file, points in given:
        position = nose_position(points)
        if view == "left" and position > 0.5 + SIDE_VIEW_MARGIN:
            messages.append(f"{file} (left view): the face looks turned towards the image's right (nose at "
                            f"{position:.2f} of the face width); left and right may be swapped, or the landmarks "
                            "are wrong (see the overlay PNG)")
        if view == "right" and position < 0.5 - SIDE_VIEW_MARGIN:
            messages.append(f"{file} (right view): the face looks turned towards the image's left (nose at "
                            f"{position:.2f} of the face width); left and right may be swapped, or the landmarks "
                            "are wrong (see the overlay PNG)")
    proportions = {view: vertical_proportions(points) for view, _, points in given}
    names = ("eyes-nose", "nose-mouth", "mouth-chin", "brows-eyes")
    for i, (view_a, file_a, _) in enumerate(given):
        for view_b, file_b, _ in given[i + 1:]:
            difference = np.abs(proportions[view_a] - proportions[view_b])
            if np.nanmax(difference, initial=0.0) > PROPORTION_TOLERANCE:
                worst = int(np.nanargmax(difference))
                messages.append(
                    f"{file_a} ({view_a} view) and {file_b} ({view_b} view) may show different people (or the "
                    f"landmarks of one are wrong): their {names[worst]} proportion differs by {difference[worst]:.2f} "
                    f"of the face height (same-person views differ by less than {PROPORTION_TOLERANCE})")
    return messages


# ------------------------------------------------------------------------------------------------------ folders
def photo_triplets(folder: str | os.PathLike) -> list[PhotoGroup]:
    """The triplets (:func:`dfmvr_lib.data.photos.discover_photos`) in ``folder`` and in its immediate sub-folders
    (e.g. ``real_multiview/`` holding ``pixelface_crops/0,1,2`` and ``mvfnet/left,front,right``), with at least one
    view present; raises ``NotADirectoryError`` when ``folder`` is not a folder."""
    folder = Path(folder)
    groups = [g for g in discover_photos(folder) if g.kind == "triplet"]
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name in ("0", "1", "2"):
            continue
        groups += [g for g in discover_photos(child) if g.kind == "triplet"]
    return [g for g in groups if any(f is not None for f in g.files)]


__all__ = ["DEFAULT_VIEWS", "InputError", "ParserLabels", "PreparedViews", "PROPORTION_TOLERANCE",
           "SIDE_VIEW_MARGIN", "VIEW_NAMES", "assign_views", "nose_position", "photo_triplets", "prepare_views",
           "vertical_proportions", "view_consistency_warnings", "views_batch"]
