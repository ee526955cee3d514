"""Run directories shared by every training loop of the workbook (parser pretraining, reconstruction training).

A run directory is keyed by a hash of what the run depends on (:func:`run_hash`), so a notebook re-run reuses a
finished run instead of training again. Everything in it is written atomically (:func:`save_torch`,
:func:`write_csv`, :func:`write_json`): an interruption leaves the previous version of each file, never half a file.

Traceability: a finished run's ``done.json`` records the git commit(s) that trained it (:func:`training_commits`,
``git_commit`` / ``git_commits``); every table row made from runs carries :func:`run_columns`: the runs' folders
relative to the data folder (``runs/reconstruction/<hash>``), the parser run they were trained with, and the
commit(s) that trained them (``"unknown"`` for runs finished before commits were recorded).
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


def run_label(run_dir: str | os.PathLike | None) -> str:
    """How a table names a run directory: relative to the data folder, ``runs/<kind>/<hash>``, when it lives there
    (:func:`dfmvr_lib.workbook.runs_dir`), else its absolute path; ``""`` for None."""
    if run_dir is None or str(run_dir) == "":
        return ""
    parts = Path(run_dir).parts
    if len(parts) >= 3 and parts[-3] == "runs":
        return "/".join(parts[-3:])
    return str(Path(run_dir).resolve())


def training_commits(commits: Sequence[str] | None, resumed: bool) -> list[str]:
    """The commits that trained a run, in order, after this call starts training: ``commits`` saved in the
    checkpoint (``["unknown"]`` when it resumes a checkpoint written before commits were recorded) plus the
    current one (:func:`dfmvr_lib.provenance.git_commit`) unless it is already the last."""
    from .provenance import git_commit

    history = list(commits) if commits else (["unknown"] if resumed else [])
    current = git_commit()
    if not history or history[-1] != current:
        history.append(current)
    return history


def done_record(steps: int, seconds: float, commits: Sequence[str]) -> dict:
    """What ``done.json`` holds: steps, training seconds, the commit that finished the run (``git_commit``) and
    every commit that trained part of it, in order (``git_commits``)."""
    return {"steps": steps, "seconds": seconds, "git_commit": commits[-1] if commits else "unknown",
            "git_commits": list(commits)}


def trained_at_commit(run_dir: str | os.PathLike) -> str:
    """The commit(s) that trained a finished run, from its ``done.json``: one commit, or ``first>...>last`` for a
    run resumed at other commits; ``"unknown"`` when the run does not record it (finished before commits were
    recorded, or not finished)."""
    done = Path(run_dir) / "done.json"
    try:
        record = json.loads(done.read_text())
    except (OSError, ValueError):
        return "unknown"
    commits = record.get("git_commits") or ([record["git_commit"]] if record.get("git_commit") else [])
    return ">".join(commits) if commits else "unknown"


def _parser_of(run_dir: Path) -> str:
    """The parser run a reconstruction run was trained with, from its ``run.json`` (``""`` when none)."""
    try:
        name = json.loads((run_dir / "run.json").read_text()).get("parser_run")
    except (OSError, ValueError, AttributeError):
        return ""
    if not name:
        return ""
    parent = run_dir.parent.parent / "parser" / name      # the workbook's layout: <data>/runs/{parser,reconstruction}
    return run_label(parent) if parent.is_dir() else str(name)


def run_columns(run_dirs: Sequence[str | os.PathLike]) -> dict[str, str]:
    """The columns naming the runs a table row came from, the one way every row gets them:

    - ``run_dir``: the run directories (:func:`run_label`, space-separated in the order given, e.g. one per seed);
    - ``parser_run_dir``: the parser run(s) they were trained with (from their ``run.json``; ``""`` when none, e.g.
      for a parser run itself or a method without the mask loss and parser masks);
    - ``trained_at_commit``: the commit(s) that trained each run (:func:`trained_at_commit`), in the same order;
      :func:`dfmvr_lib.provenance.write_table` puts it beside ``git_commit``.

    An empty ``run_dirs`` (rows that no trained run made: the mean face, the ceiling) gives empty strings."""
    dirs = [Path(d) for d in run_dirs]
    parsers = list(dict.fromkeys(p for p in (_parser_of(d) for d in dirs) if p))
    return {"run_dir": " ".join(run_label(d) for d in dirs), "parser_run_dir": " ".join(parsers),
            "trained_at_commit": " ".join(trained_at_commit(d) for d in dirs)}


def settle_thread_pools() -> None:
    """Start numba's threading layer now and keep torch's intra-op thread count as it was.

    numba's OpenMP threading layer starts on its first parallel launch (the renderer's) and resets the OpenMP thread
    count that torch reads to ``NUMBA_NUM_THREADS`` (the number of cores): with ``OMP_NUM_THREADS=1`` torch runs
    one thread until the first render and two after it. A training that renders would then run the first step of
    a process (part of it on one thread) differently from the later ones, and a run resumed from a checkpoint
    would differ from an uninterrupted one in the last bits. Called at the start of a training, so that every
    step, the first included, runs with the same threads."""
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(numba.get_num_threads())      # starts the threading layer (a no-op once started)
    torch.set_num_threads(threads)


def read_dataset_settings(dataset_root: str | os.PathLike) -> Any:
    """The generator settings recorded in a synthetic benchmark's ``settings.json`` (None for other datasets, whose
    identity is their path)."""
    settings_file = Path(dataset_root) / "settings.json"
    if settings_file.is_file():
        return json.loads(settings_file.read_text()).get("settings")
    return None


__all__ = ["done_record", "read_dataset_settings", "run_columns", "run_hash", "run_label", "save_torch",
           "settle_thread_pools", "trained_at_commit", "training_commits", "write_csv", "write_json"]
