"""Save and load morphable models as ``.npz`` (the project's own cache format; any source, already in mm).

The file holds the fields of :class:`~dfmvr_lib.face_model.base.MorphableModelData` under their own names, plus
``name`` (0-d unicode) and ``format_version`` (0-d int). It is written atomically (temporary file in the same
folder, then ``os.replace``) and read without pickles; every problem names the file and the field.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..provenance import atomic_path
from .base import MorphableModel, MorphableModelData

FORMAT_VERSION = 1

_FLOAT_FIELDS = ("mean_shape", "identity_basis", "expression_basis", "mean_albedo", "albedo_basis")
_INT_FIELDS = ("triangles", "landmark_68", "landmark_101", "alignment_7", "part_labels")
_BOOL_FIELDS = ("evaluation_region",)
_ARRAY_FIELDS = _FLOAT_FIELDS + _INT_FIELDS + _BOOL_FIELDS
if {f.name for f in fields(MorphableModelData)} != set(_ARRAY_FIELDS) | {"name"}:  # keep in step with base.py
    raise ImportError("dfmvr_lib.face_model.io is out of date with MorphableModelData's fields")


def save_model(model_or_data: MorphableModel | MorphableModelData, path: str | os.PathLike) -> Path:
    """Write a model (or its data) to ``path`` (``.npz``, uncompressed) atomically; returns the path."""
    if isinstance(model_or_data, MorphableModel):
        data = model_or_data.to_data()
    elif isinstance(model_or_data, MorphableModelData):
        data = model_or_data
    else:
        raise TypeError(f"save_model expects a MorphableModel or MorphableModelData, got {type(model_or_data)}")
    path = Path(path)
    data.validate(f"model to save as {path}")
    arrays = {
        **{name: np.asarray(getattr(data, name), dtype=np.float32) for name in _FLOAT_FIELDS},
        **{name: np.asarray(getattr(data, name), dtype=np.int64) for name in _INT_FIELDS},
        **{name: np.asarray(getattr(data, name), dtype=bool) for name in _BOOL_FIELDS},
        "name": np.array(str(data.name)),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
    }
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
    return path


def load_model_data(path: str | os.PathLike) -> MorphableModelData:
    """Read and validate a file written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"morphable model file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz morphable model ({type(error).__name__}: {error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a .npz archive (a single .npy array?)")
    with archive:
        present = set(archive.files)
        values = {}
        for key in _ARRAY_FIELDS + ("name", "format_version"):
            if key not in present:
                raise ValueError(f"{path}: field {key!r} is missing (fields present: {sorted(present)})")
            try:
                values[key] = archive[key]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
                raise ValueError(f"{path}: field {key!r} cannot be read ({type(error).__name__}: {error})") from error
    version = values.pop("format_version")
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
        raise ValueError(f"{path}: field 'format_version' is {version!r}, expected {FORMAT_VERSION}")
    name = values.pop("name")
    if name.shape != () or name.dtype.kind != "U":
        raise ValueError(f"{path}: field 'name' must be a 0-d string, got dtype {name.dtype} shape {name.shape}")
    for key in _FLOAT_FIELDS:
        if values[key].dtype.kind != "f":
            raise ValueError(f"{path}: field {key!r} must be float, got dtype {values[key].dtype}")
    for key in _INT_FIELDS:
        if values[key].dtype.kind not in "iu":
            raise ValueError(f"{path}: field {key!r} must be integer, got dtype {values[key].dtype}")
    for key in _BOOL_FIELDS:
        if values[key].dtype.kind != "b":
            raise ValueError(f"{path}: field {key!r} must be bool, got dtype {values[key].dtype}")
    data = MorphableModelData(**values, name=str(name))
    data.validate(str(path))
    return data


def load_model(path: str | os.PathLike) -> MorphableModel:
    """Load a :class:`MorphableModel` saved by :func:`save_model`."""
    return MorphableModel(load_model_data(path))
