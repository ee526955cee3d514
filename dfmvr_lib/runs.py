"""Run directories shared by every training loop of the workbook (parser pretraining, reconstruction training).

A run directory is keyed by a hash of what the run depends on (:func:`run_hash`), so a notebook re-run reuses a
finished run instead of training again. Everything in it is written atomically (:func:`save_torch`,
:func:`write_csv`, :func:`write_json`): an interruption leaves the previous version of each file, never half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from .provenance import atomic_path


def run_hash(key: Any) -> str:
    """Short stable hash (12 hex digits) of a JSON-serialisable key (dicts are sorted)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def write_csv(rows: Sequence[dict], path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Write ``rows`` as a CSV atomically and return them as a DataFrame."""
    frame = pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
    return frame


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


def read_dataset_settings(dataset_root: str | os.PathLike) -> Any:
    """The generator settings recorded in a synthetic benchmark's ``settings.json`` (None for other datasets, whose
    identity is their path)."""
    settings_file = Path(dataset_root) / "settings.json"
    if settings_file.is_file():
        return json.loads(settings_file.read_text()).get("settings")
    return None


__all__ = ["read_dataset_settings", "run_hash", "save_torch", "write_csv", "write_json"]
