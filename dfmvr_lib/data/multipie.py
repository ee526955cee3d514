"""Multi-PIE reader: multi-view image triplets, no 3D (training set of DF-MVR's Bosphorus experiment).

The GLPGAN-version layout DF-MVR used is not documented; this reader accepts a simple, documented layout::

    <root>/<subject>/<sample>/<view file>

where the three view files of a sample are named either

- ``left.<ext>``, ``front.<ext>``, ``right.<ext>`` (views A, B, C), or
- by Multi-PIE camera id: a name starting with ``080_``, ``051_``, ``190_`` (A, B, C), or a Multi-PIE native name
  ``<subject>_<session>_<recording>_<camera>_<image>`` whose 4th field is ``080``, ``051`` or ``190``
  (e.g. ``001_01_01_051_07.png``).

Camera 05_1 (``051``) is Multi-PIE's frontal camera and 08_0 / 19_0 (``080`` / ``190``) the +-45 deg ones; the
mapping 080 -> A (left), 190 -> C (right) is the project's assumption (:data:`CAMERA_VIEWS`; not verified on real
files: check one sample and pass ``camera_views=`` to swap if the "left" view shows the face turned to the image's
right). ``<ext>`` is any of png, jpg, jpeg, bmp. A sample folder with none of these names is skipped; a folder
with two candidates for one view is an error. Missing views are black with ``view_present`` False.

No 3D: ``landmarks_3d``, ``mesh_*`` are None. Landmarks / parse maps come from the optional providers
(:mod:`dfmvr_lib.data.readers_common`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from .readers_common import (IMAGE_SUFFIXES, DatasetLayoutError, LandmarkProvider, ParseProvider,
                             build_multiview_sample, layout_error, load_image_rgb, split_subjects)
from .sample import MultiViewSample

NAMED_VIEWS = {"left": 0, "front": 1, "right": 2}
CAMERA_VIEWS = {"080": 0, "051": 1, "190": 2}
"""Multi-PIE camera id -> view index (0 = A left, 1 = B front, 2 = C right)."""


def view_of_file(name: str, camera_views: dict[str, int] = CAMERA_VIEWS) -> int | None:
    """View index (0, 1, 2) of an image file name, or None when it names no view."""
    path = Path(name)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    stem = path.stem.lower()
    if stem in NAMED_VIEWS:
        return NAMED_VIEWS[stem]
    fields = stem.split("_")
    if len(fields) >= 2 and fields[0] in camera_views:
        return camera_views[fields[0]]
    if len(fields) == 5 and fields[3] in camera_views:
        return camera_views[fields[3]]
    return None


class MultiPieDataset(torch.utils.data.Dataset):
    """Multi-PIE triplets as :class:`MultiViewSample` (images only)."""

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = 224,
                 landmark_provider: LandmarkProvider | None = None, parse_provider: ParseProvider | None = None,
                 parse_from_landmarks: bool = False, camera_views: dict[str, int] | None = None,
                 require_all_views: bool = True, subjects: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise layout_error("Multi-PIE", self.root, "a dataset folder")
        self.camera_views = dict(CAMERA_VIEWS if camera_views is None else camera_views)
        wanted = None if subjects is None else set(str(s) for s in subjects)
        self.entries = []
        for sample_dir in sorted(p for p in self.root.glob("*/*") if p.is_dir()):
            subject = sample_dir.parent.name
            if wanted is not None and subject not in wanted:
                continue
            views: list[Path | None] = [None, None, None]
            for path in sorted(sample_dir.iterdir()):
                view = view_of_file(path.name, self.camera_views) if path.is_file() else None
                if view is None:
                    continue
                if views[view] is not None:
                    raise DatasetLayoutError(f"Multi-PIE sample {sample_dir}: two files for view {'ABC'[view]}: "
                                             f"{views[view].name} and {path.name} (keep one)")
                views[view] = path
            if all(v is None for v in views) or (require_all_views and any(v is None for v in views)):
                continue
            self.entries.append({"subject": subject, "sample": f"{subject}/{sample_dir.name}", "views": tuple(views)})
        if not self.entries and wanted is None:
            raise layout_error("Multi-PIE", self.root,
                               "<subject>/<sample>/{left,front,right}.png or camera-id names "
                               "{080_,051_,190_}*.png (or <subj>_<sess>_<rec>_<cam>_<img>.png) in <subject>/<sample>/"
                               + (" with all three views" if require_all_views else ""))
        self.image_size = image_size
        self.landmark_provider = landmark_provider
        self.parse_provider = parse_provider
        self.parse_from_landmarks = parse_from_landmarks
        self._options = dict(image_size=image_size, landmark_provider=landmark_provider,
                             parse_provider=parse_provider, parse_from_landmarks=parse_from_landmarks,
                             camera_views=self.camera_views, require_all_views=require_all_views)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def subject_ids(self) -> list[str]:
        return sorted({e["subject"] for e in self.entries})

    def split(self, train_fraction: float = 0.8, seed: int = 0) -> tuple["MultiPieDataset", "MultiPieDataset"]:
        train, val = split_subjects(self.subject_ids, train_fraction, seed)
        return (MultiPieDataset(self.root, subjects=train, **self._options),
                MultiPieDataset(self.root, subjects=val, **self._options))

    def __getitem__(self, index: int) -> MultiViewSample:
        entry = self.entries[index]
        images = [load_image_rgb(p) if p is not None else None for p in entry["views"]]
        return build_multiview_sample(
            images, subject_id=entry["subject"], sample_id=entry["sample"], image_size=self.image_size,
            source=f"Multi-PIE sample {entry['sample']}", landmark_provider=self.landmark_provider,
            parse_provider=self.parse_provider, parse_from_landmarks=self.parse_from_landmarks,
            extras={"view_paths": [str(p) if p else None for p in entry["views"]]})


__all__ = ["CAMERA_VIEWS", "MultiPieDataset", "NAMED_VIEWS", "view_of_file"]
