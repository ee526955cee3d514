"""Base classes of the real-dataset readers: the constructor options they share, checked in one place.

- :class:`DatasetReader` (every reader: Pixel-Face, Bosphorus, Multi-PIE, CelebAMask-HQ): ``root`` (a folder,
  kept as a :class:`~pathlib.Path`) and ``image_size`` (square output size in pixels, or ``None`` for the native
  size), and the reader's display name for messages.
- :class:`MultiViewReader` (the three multi-view readers): adds ``landmark_provider``, ``parse_provider``,
  ``parse_from_landmarks`` (see :mod:`dfmvr_lib.data.readers_common`) and ``subjects`` (keep only these subject
  ids), the sample list ``entries``, ``subject_ids``, :meth:`MultiViewReader.split` (by subject, a new reader of
  the same class with the same options) and the assembly of a :class:`~dfmvr_lib.data.sample.MultiViewSample`
  from the three view images.

A bad option is refused before any file is looked at, with a :class:`ReaderOptionError` (a ``ValueError``) whose
message names the reader, the option and the value given, the same for every reader: ``image_size`` must be a
positive whole number or None; providers must be callables or None; flags must be ``True`` / ``False``;
``subjects`` must be a collection of ids (not a single string); a choice must be one of its values.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence, TypeVar

import numpy as np
import torch

from .readers_common import (LandmarkProvider, ParseProvider, build_multiview_sample, layout_error, load_image_rgb,
                             split_subjects)
from .sample import MultiViewSample

ReaderT = TypeVar("ReaderT", bound="MultiViewReader")


class ReaderOptionError(ValueError):
    """A reader constructor option with a value or type the reader cannot use (a ``ValueError``); the message names
    the option and the value given."""


def check_image_size(value: Any, reader: str) -> int | None:
    """``image_size`` as an ``int`` (>= 1) or None; :class:`ReaderOptionError` for anything else (bools, floats,
    strings, zero or negative sizes)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ReaderOptionError(f"{reader}: image_size must be a positive whole number of pixels (the square output "
                                f"size) or None (native size), got {value!r}")
    return int(value)


def check_callable(value: Any, name: str, reader: str) -> Any:
    """``value`` when it is None or callable, else :class:`ReaderOptionError` naming option ``name``."""
    if value is not None and not callable(value):
        raise ReaderOptionError(f"{reader}: {name} must be a callable (image) -> ... or None, got "
                                f"{type(value).__name__} {value!r}")
    return value


def check_flag(value: Any, name: str, reader: str) -> bool:
    """``value`` as a ``bool`` when it is ``True`` / ``False`` (Python or numpy), else :class:`ReaderOptionError`
    (a string such as ``"false"`` would otherwise count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ReaderOptionError(f"{reader}: {name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``, else :class:`ReaderOptionError`
    ``"<name> must be 'a', 'b' or 'c', got <value>"``."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices[:-1]) + f" or {choices[-1]!r}"
        raise ReaderOptionError(f"{name} must be {listed}, got {value!r}")
    return value


def check_ids(values: Any, name: str, reader: str) -> set[str] | None:
    """A collection of ids (``subjects``) as a set of strings, or None; :class:`ReaderOptionError` for a single
    string (which would be read as a set of characters) or something that is not iterable."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ReaderOptionError(f"{reader}: {name} must be a collection of ids (e.g. a list) or None, got "
                                f"{type(values).__name__} {values!r}")
    return {str(value) for value in values}


class DatasetReader(torch.utils.data.Dataset):
    """Base of every real-dataset reader: ``root`` and ``image_size``, checked (module doc).

    Subclasses set :attr:`dataset_name` (``"Pixel-Face"``, ...), the name that starts their messages.

    Attributes:
        root: the dataset folder (:class:`~pathlib.Path`).
        image_size: square output size (pixels), or None for the images' own size.
    """

    dataset_name: ClassVar[str] = "dataset"

    def __init__(self, root: str | os.PathLike, *, image_size: int | None):
        self.image_size = check_image_size(image_size, self.dataset_name)
        self.root = Path(root)

    def _layout_error(self, expected: str, found: Iterable[str] | None = None, folder: Path | None = None):
        """:func:`~dfmvr_lib.data.readers_common.layout_error` for this reader (``folder`` defaults to ``root``)."""
        return layout_error(self.dataset_name, self.root if folder is None else folder, expected, found)

    def _require_folder(self) -> None:
        """Refuse a ``root`` that is not a folder (missing, a file, a broken link) with a
        :class:`~dfmvr_lib.data.readers_common.DatasetLayoutError`."""
        if not self.root.is_dir():
            raise self._layout_error("a dataset folder")


class MultiViewReader(DatasetReader):
    """Base of the multi-view readers (Pixel-Face, Bosphorus, Multi-PIE): one
    :class:`~dfmvr_lib.data.sample.MultiViewSample` per entry of :attr:`entries`.

    The constructor checks the shared options and records them, with the reader's own ``options`` (keyword
    arguments of its constructor other than ``root`` and ``subjects``), so that :meth:`split` can build readers of
    the same class with the same settings. Subclasses scan ``root`` into ``self.entries`` after calling it, keeping
    the subjects for which :meth:`_wanted` is true, and implement ``__getitem__`` with :meth:`_load_views` and
    :meth:`_build_sample`.

    Attributes:
        landmark_provider, parse_provider, parse_from_landmarks: see :mod:`dfmvr_lib.data.readers_common`.
        subjects: the subject ids asked for (a set of strings), or None for all.
        entries: the samples found (their type is the subclass's).
    """

    def __init__(self, root: str | os.PathLike, *, image_size: int | None,
                 landmark_provider: LandmarkProvider | None, parse_provider: ParseProvider | None,
                 parse_from_landmarks: bool, subjects: Iterable[str] | None, **options: Any):
        name = self.dataset_name
        super().__init__(root, image_size=image_size)
        self.landmark_provider = check_callable(landmark_provider, "landmark_provider", name)
        self.parse_provider = check_callable(parse_provider, "parse_provider", name)
        self.parse_from_landmarks = check_flag(parse_from_landmarks, "parse_from_landmarks", name)
        self.subjects = check_ids(subjects, "subjects", name)
        self.entries: list = []
        self._options = dict(image_size=self.image_size, landmark_provider=self.landmark_provider,
                             parse_provider=self.parse_provider, parse_from_landmarks=self.parse_from_landmarks,
                             **options)

    def _wanted(self, subject: str) -> bool:
        """Whether samples of ``subject`` are kept (the ``subjects`` option)."""
        return self.subjects is None or subject in self.subjects

    @staticmethod
    def _entry_subject(entry) -> str:
        """The subject id of one entry (entries are dicts with a ``"subject"`` key unless a subclass says
        otherwise)."""
        return entry["subject"]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def subject_ids(self) -> list[str]:
        """The distinct subject ids of the entries, sorted."""
        return sorted({self._entry_subject(entry) for entry in self.entries})

    def split(self: ReaderT, train_fraction: float = 0.8, seed: int = 0) -> tuple[ReaderT, ReaderT]:
        """(train, validation) readers split by subject (:func:`~dfmvr_lib.data.readers_common.split_subjects`),
        of the same class and options."""
        train, val = split_subjects(self.subject_ids, train_fraction, seed)
        return (type(self)(self.root, subjects=train, **self._options),
                type(self)(self.root, subjects=val, **self._options))

    @staticmethod
    def _load_views(paths: Sequence[Path | None]) -> list[torch.Tensor | None]:
        """The view images (A, B, C) as ``(3, H, W)`` float tensors in [0, 1]; None for a missing view."""
        return [load_image_rgb(path) if path is not None else None for path in paths]

    @staticmethod
    def _view_paths(paths: Sequence[Path | None]) -> list[str | None]:
        """The view files as strings for ``extras["view_paths"]`` (None for a missing view)."""
        return [str(path) if path else None for path in paths]

    def _build_sample(self, images: Sequence[torch.Tensor | None], *, subject_id: str, sample_id: str, source: str,
                      **fields: Any) -> MultiViewSample:
        """:func:`~dfmvr_lib.data.readers_common.build_multiview_sample` with this reader's ``image_size`` and
        providers; ``fields``: ``landmarks_3d``, ``mesh_vertices``, ``mesh_triangles``, ``extras``."""
        return build_multiview_sample(
            images, subject_id=subject_id, sample_id=sample_id, image_size=self.image_size, source=source,
            landmark_provider=self.landmark_provider, parse_provider=self.parse_provider,
            parse_from_landmarks=self.parse_from_landmarks, **fields)


__all__ = ["DatasetReader", "MultiViewReader", "ReaderOptionError", "check_callable", "check_choice", "check_flag",
           "check_ids", "check_image_size"]
