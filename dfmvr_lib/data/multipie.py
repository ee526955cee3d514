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
from typing import Mapping, Sequence

from .readers_base import MultiViewReader, ReaderOptionError, check_flag
from .readers_common import IMAGE_SUFFIXES, DatasetLayoutError, LandmarkProvider, ParseProvider
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


class MultiPieDataset(MultiViewReader):
    """Multi-PIE triplets as :class:`MultiViewSample` (images only).

    ``camera_views``: camera id -> view index (0 A, 1 B, 2 C), default :data:`CAMERA_VIEWS`;
    ``require_all_views``: skip samples that lack a view (default) instead of giving them black views. The options
    shared with the other readers are checked by :class:`~.readers_base.MultiViewReader`.
    """

    dataset_name = "Multi-PIE"

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = 224,
                 landmark_provider: LandmarkProvider | None = None, parse_provider: ParseProvider | None = None,
                 parse_from_landmarks: bool = False, camera_views: dict[str, int] | None = None,
                 require_all_views: bool = True, subjects: Sequence[str] | None = None):
        self.camera_views = _camera_views(camera_views, self.dataset_name)
        require_all_views = check_flag(require_all_views, "require_all_views", self.dataset_name)
        super().__init__(root, image_size=image_size, landmark_provider=landmark_provider,
                         parse_provider=parse_provider, parse_from_landmarks=parse_from_landmarks, subjects=subjects,
                         camera_views=self.camera_views, require_all_views=require_all_views)
        self._require_folder()
        for sample_dir in sorted(p for p in self.root.glob("*/*") if p.is_dir()):
            subject = sample_dir.parent.name
            if not self._wanted(subject):
                continue
            views = self._sample_views(sample_dir)
            if all(v is None for v in views) or (require_all_views and any(v is None for v in views)):
                continue
            self.entries.append({"subject": subject, "sample": f"{subject}/{sample_dir.name}", "views": tuple(views)})
        if not self.entries and self.subjects is None:
            raise self._layout_error("<subject>/<sample>/{left,front,right}.png or camera-id names "
                                     "{080_,051_,190_}*.png (or <subj>_<sess>_<rec>_<cam>_<img>.png) in "
                                     "<subject>/<sample>/" + (" with all three views" if require_all_views else ""))

    def _sample_views(self, sample_dir: Path) -> list[Path | None]:
        """The view files (A, B, C; None where missing) of one sample folder; :class:`DatasetLayoutError` when two
        files name the same view."""
        views: list[Path | None] = [None, None, None]
        for path in sorted(sample_dir.iterdir()):
            view = view_of_file(path.name, self.camera_views) if path.is_file() else None
            if view is None:
                continue
            if views[view] is not None:
                raise DatasetLayoutError(f"Multi-PIE sample {sample_dir}: two files for view {'ABC'[view]}: "
                                         f"{views[view].name} and {path.name} (keep one)")
            views[view] = path
        return views

    def __getitem__(self, index: int) -> MultiViewSample:
        entry = self.entries[index]
        return self._build_sample(self._load_views(entry["views"]), subject_id=entry["subject"],
                                  sample_id=entry["sample"], source=f"Multi-PIE sample {entry['sample']}",
                                  extras={"view_paths": self._view_paths(entry["views"])})


def _camera_views(camera_views: Mapping[str, int] | None, reader: str) -> dict[str, int]:
    """``camera_views`` (None: :data:`CAMERA_VIEWS`) as a dict, refused with :class:`ReaderOptionError` unless it
    maps camera ids to view indices 0, 1, 2."""
    if camera_views is None:
        return dict(CAMERA_VIEWS)
    if not isinstance(camera_views, Mapping) or any(view not in (0, 1, 2) for view in camera_views.values()):
        raise ReaderOptionError(f"{reader}: camera_views must map camera ids to view indices 0 (A), 1 (B), 2 (C), "
                                f"got {camera_views!r}")
    return dict(camera_views)


__all__ = ["CAMERA_VIEWS", "MultiPieDataset", "NAMED_VIEWS", "view_of_file"]
