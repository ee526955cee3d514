"""Run directories shared by every training loop of the workbook (parser pretraining, reconstruction training):
where they live, how they are named, and the one lifecycle that fills them.

Layout under a data folder (``data_dir``, ``../data`` from the notebooks)::

    <data_dir>/synthetic_<profile>_<preset>/     a benchmark (:func:`dataset_dir`)
    <data_dir>/runs/<kind>/<hash>/               a run of kind "parser", "reconstruction", ... (:data:`RUN_KINDS`,
                                                 :func:`runs_dir`, :func:`keyed_run_dir`)

A run directory is keyed by a hash of what the run depends on (:func:`run_hash` of the run's key dict:
:func:`dfmvr_lib.parsing.training.run_key`, :func:`dfmvr_lib.training.loop.run_key`), so a notebook re-run reuses a
finished run instead of training again. Its files (names defined here, once):

- ``run.json`` (:data:`RUN_INFO`): the key the hash was computed from;
- ``checkpoint.pt`` (:data:`CHECKPOINT`): the training state, rewritten every ``checkpoint_every`` steps;
- ``metrics.csv`` (:data:`METRICS`), ``validation.csv`` (:data:`VALIDATION`): the tables so far;
- ``final.pt`` (:data:`FINAL`) and ``done.json`` (:data:`DONE`): written at the end; a run holding both
  (:data:`FINISHED_FILES`, :func:`is_finished`) is finished and reused as is.

:class:`ResumableRun` is the lifecycle both training loops go through: open the keyed directory, reuse it when
finished, else write ``run.json`` and resume from ``checkpoint.pt`` when there is one, save checkpoints, save the
final state with ``done.json``. Everything is written atomically (:func:`save_torch`, :func:`write_csv`,
:func:`write_json`): an interruption leaves the previous version of each file, never half a file; on several
processes (:mod:`dfmvr_lib.distributed`) rank 0 alone writes and the others wait at a barrier. Checkpoints are read
with ``torch.load(weights_only=True)`` (:func:`load_checkpoint_file`): tensors and plain containers only, never
pickled code (:class:`UnsafeCheckpointError`), a corrupt file named (:class:`CheckpointFileError`).

Traceability: a finished run's ``done.json`` records the git commit(s) that trained it (:func:`training_commits`,
``git_commit`` / ``git_commits``); every table row made from runs carries :func:`run_columns`: the runs' folders
relative to the data folder (``runs/reconstruction/<hash>``), the parser run they were trained with, and the
commit(s) that trained them (``"unknown"`` for runs finished before commits were recorded).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd
import torch

from . import provenance
from .distributed import barrier, rank_and_world
from .provenance import atomic_path

RUN_INFO = "run.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
VALIDATION = "validation.csv"
FINAL = "final.pt"
DONE = "done.json"
FINISHED_FILES = (FINAL, DONE)
"""The files a finished run holds (:func:`is_finished`)."""
RUN_KINDS = ("parser", "reconstruction", "learning")
"""The kinds of run folders under ``<data_dir>/runs`` (``learning``: the learning-curve runs of
``benchmarks/bench_learning.py``)."""
MAIN_PRESET = "pixelface-like"
"""The benchmark preset the parser and the notebook 03 runs train on."""


# ---------------------------------------------------------------------------------------------- where runs live


def dataset_dir(data_dir: str | os.PathLike, profile: str, preset: str = MAIN_PRESET) -> Path:
    """``<data_dir>/synthetic_<profile>_<preset>``: where a profile's benchmark of ``preset`` lives (the one way to
    name a benchmark folder)."""
    return Path(data_dir) / f"synthetic_{profile}_{preset}"


def runs_dir(data_dir: str | os.PathLike, kind: str) -> Path:
    """``<data_dir>/runs/<kind>`` (``kind`` one of :data:`RUN_KINDS`): the parent of the keyed run folders."""
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}; choose one of {RUN_KINDS}")
    return Path(data_dir) / "runs" / kind


def run_hash(key: Any) -> str:
    """Short stable hash (12 hex digits) of a JSON-serialisable key (dicts are sorted)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def keyed_run_dir(runs_root: str | os.PathLike, key: Any) -> Path:
    """``<runs_root>/<run_hash(key)>``: the run directory of ``key`` (the one way to name one; with
    ``runs_root = runs_dir(data_dir, kind)`` it is ``<data_dir>/runs/<kind>/<hash>``)."""
    return Path(runs_root) / run_hash(key)


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` holds a finished run (every file of :data:`FINISHED_FILES`)."""
    return all((Path(run_dir) / name).is_file() for name in FINISHED_FILES)


# ------------------------------------------------------------------------------------------ safe checkpoint files


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be loaded (corrupt, truncated, not a checkpoint of the expected kind):
    ``path`` and a one-line ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())          # one line
        super().__init__(f"{self.path}: {self.reason}")


class UnsafeCheckpointError(CheckpointFileError):
    """A checkpoint that holds pickled Python objects besides tensors and plain containers (numbers, strings,
    lists, dicts): unpickling it could execute code, so it is refused without being run (``torch.load`` with
    ``weights_only=True``)."""


@contextmanager
def checkpoint_errors(path: str | os.PathLike, kind: str = "checkpoint") -> Iterator[None]:
    """Turn what loading the checkpoint file ``path`` can raise into :class:`CheckpointFileError` naming it
    (:class:`UnsafeCheckpointError` for pickled code); ``kind`` says what the file should have been (e.g.
    ``"reconstruction run's final.pt"``). torch's warnings about the file's pickle protocol are silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            named = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
            raise UnsafeCheckpointError(
                path, "refused: not a plain state dict (tensors, numbers, strings, lists, dicts): the file holds "
                      "pickled Python objects" + (f" ({named[1]})" if named else "") + " that may execute code "
                      f"when loaded; only load {kind} files you trust, re-saved as plain state dicts") from None
        raise CheckpointFileError(path, f"not a readable {kind} (corrupt pickle: {error})") from None
    except (RuntimeError, EOFError, KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, CheckpointFileError):
            raise
        text = " ".join(str(error).split())
        text = text[:300] + " ..." if len(text) > 300 else text
        details = f"{type(error).__name__}: {text}" if text else type(error).__name__
        raise CheckpointFileError(path, f"not a readable {kind} ({details}); the file is corrupt, truncated or of "
                                        "another kind") from None


def load_checkpoint_file(path: str | os.PathLike, map_location="cpu", kind: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` (tensors and plain containers only, never pickled code) with the
    errors of :func:`checkpoint_errors`."""
    with checkpoint_errors(path, kind):
        return torch.load(path, map_location=map_location, weights_only=True)


# ------------------------------------------------------------------------------------------------ atomic writes


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


# ------------------------------------------------------------------------------------------------ the lifecycle


Tables = Mapping[str, tuple[Sequence[dict], Sequence[str] | None]]
"""A run's tables: file name (e.g. :data:`METRICS`) -> (rows, columns or None). A table without rows and without
columns is not written (e.g. ``validation.csv`` before the first validation pass)."""


@dataclass
class ResumableRun:
    """One keyed run directory through its lifecycle (what :func:`dfmvr_lib.parsing.pretrain_parser` and
    :func:`dfmvr_lib.training.train_reconstruction` both do)::

        run = ResumableRun.open(key, runs_root, run_dir, kind="parser")   # <runs_root>/<run_hash(key)>, made
        if run.finished:                      # final.pt and done.json: reuse, train nothing
            state, metrics = run.load(FINAL), run.read_table(METRICS)
        state = run.start(device)             # writes run.json; the checkpoint's state (resume) or None (fresh)
        ... run.save_checkpoint({"model": ..., "step": step, ...}, {METRICS: (rows, METRIC_COLUMNS)})
        frames = run.finish({"model": ...}, {METRICS: (rows, METRIC_COLUMNS)}, steps, seconds)   # + done.json

    ``run_dir``: the directory; ``key``: what identifies the run (written to ``run.json``); ``kind``: the run's kind
    in error messages (``"parser"``, ``"reconstruction"``); ``main``: whether this process writes the files (rank
    0; the others only wait at the barriers, :mod:`dfmvr_lib.distributed`); ``commits``: the git commits that
    trained the run so far, this one included once :meth:`start` ran (saved in every checkpoint, written to
    ``done.json``, :func:`training_commits`); ``resumed_from``: the step of the checkpoint :meth:`start` resumed
    from (0 for a fresh run).
    """

    run_dir: Path
    key: Any
    kind: str = "training"
    main: bool = True
    commits: list[str] = field(default_factory=list)
    resumed_from: int = 0

    @classmethod
    def open(cls, key: Any, runs_root: str | os.PathLike, run_dir: str | os.PathLike | None = None,
             kind: str = "training") -> ResumableRun:
        """The run of ``key``: ``run_dir`` when given, else :func:`keyed_run_dir` ``(runs_root, key)``; the
        directory is created; ``main`` is rank 0 (:func:`dfmvr_lib.distributed.rank_and_world`)."""
        path = Path(run_dir) if run_dir is not None else keyed_run_dir(runs_root, key)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, key, kind=kind, main=rank_and_world()[0] == 0)

    @property
    def finished(self) -> bool:
        """Whether the directory holds a finished run (:func:`is_finished`)."""
        return is_finished(self.run_dir)

    def load(self, name: str, map_location="cpu") -> Any:
        """A torch file of the run (:data:`FINAL`, :data:`CHECKPOINT`) read safely (:func:`load_checkpoint_file`;
        :class:`CheckpointFileError` names the file when it is corrupt)."""
        return load_checkpoint_file(self.run_dir / name, map_location, f"{self.kind} run's {name}")

    def read_table(self, name: str) -> pd.DataFrame:
        """A CSV table of the run (:data:`METRICS`, :data:`VALIDATION`); empty when it was never written."""
        path = self.run_dir / name
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def start(self, map_location="cpu") -> dict | None:
        """Begin training: rank 0 writes ``run.json`` (the key); the state saved in ``checkpoint.pt`` when there is
        one (the caller restores its model, optimiser, ...; :attr:`resumed_from` is its ``step``), else None.
        Sets :attr:`commits` (the checkpoint's commits plus this one)."""
        if self.main:
            write_json(self.key, self.run_dir / RUN_INFO)
        state = self.load(CHECKPOINT, map_location) if (self.run_dir / CHECKPOINT).is_file() else None
        self.resumed_from = int(state["step"]) if state is not None else 0
        self.commits = training_commits(state.get("git_commits") if state else None, resumed=state is not None)
        return state

    def _write_tables(self, tables: Tables) -> dict[str, pd.DataFrame]:
        frames = {}
        for name, (rows, columns) in tables.items():
            if not rows and columns is None:
                frames[name] = pd.DataFrame()
            elif self.main:
                frames[name] = write_csv(rows, self.run_dir / name, columns)
            else:
                frames[name] = pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)
        return frames

    def save_checkpoint(self, state: dict, tables: Tables) -> None:
        """Rank 0 writes ``checkpoint.pt`` (``state`` plus ``git_commits``) and the tables so far, atomically; every
        rank then waits at a barrier."""
        if self.main:
            save_torch({**state, "git_commits": self.commits}, self.run_dir / CHECKPOINT)
            self._write_tables(tables)
        barrier()

    def finish(self, state: dict, tables: Tables, steps: int, seconds: float) -> dict[str, pd.DataFrame]:
        """Rank 0 writes ``final.pt`` (``state``), the tables and ``done.json`` (:func:`done_record` of ``steps``,
        the training ``seconds`` and :attr:`commits`), in that order (``done.json`` last: a run is finished only
        once everything else is written); every rank then waits at a barrier. Returns the tables as DataFrames."""
        if self.main:
            save_torch(state, self.run_dir / FINAL)
        frames = self._write_tables(tables)
        if self.main:
            write_json(done_record(steps, seconds, self.commits), self.run_dir / DONE)
        barrier()
        return frames


# ------------------------------------------------------------------------------------------------ traceability


def run_label(run_dir: str | os.PathLike | None) -> str:
    """How a table names a run directory: relative to the data folder, ``runs/<kind>/<hash>``, when it lives there
    (:func:`runs_dir`), else its absolute path; ``""`` for None."""
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
    history = list(commits) if commits else (["unknown"] if resumed else [])
    current = provenance.git_commit()
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
    done = Path(run_dir) / DONE
    try:
        record = json.loads(done.read_text())
    except (OSError, ValueError):
        return "unknown"
    commits = record.get("git_commits") or ([record["git_commit"]] if record.get("git_commit") else [])
    return ">".join(commits) if commits else "unknown"


def read_run_info(run_dir: str | os.PathLike) -> Any:
    """The key a run recorded in its ``run.json``; :class:`CheckpointFileError` when the file is unreadable,
    FileNotFoundError when there is none."""
    info = Path(run_dir) / RUN_INFO
    try:
        return json.loads(info.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise CheckpointFileError(info, f"not a readable run record ({type(error).__name__}: {error})") from None


def parser_run_name(run_dir: str | os.PathLike) -> str | None:
    """The name (hash) of the parser run a reconstruction run was trained with, from its ``run.json`` (None when
    it recorded none; :func:`read_run_info`'s errors)."""
    recorded = read_run_info(run_dir)
    return (recorded.get("parser_run") if isinstance(recorded, dict) else None) or None


def parser_run_candidates(run_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Where the parser run ``name`` of the reconstruction run ``run_dir`` is looked for: ``<runs>/parser/<name>``
    beside ``<runs>/reconstruction/`` (the workbook's layout) and ``<run_dir>/../parser/<name>``."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent / "parser" / name, run_dir.parent / "parser" / name


def _parser_of(run_dir: Path) -> str:
    """The parser run a reconstruction run was trained with, from its ``run.json`` (``""`` when none)."""
    try:
        name = parser_run_name(run_dir)
    except (OSError, ValueError):
        return ""
    if not name:
        return ""
    parent = parser_run_candidates(run_dir, name)[0]
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


# ------------------------------------------------------------------------------------------- training processes


def settle_thread_pools() -> None:
    """Start numba's threading layer now and keep torch's intra-op thread count as it was.

    numba's OpenMP threading layer starts on its first parallel launch (the renderer's) and resets the OpenMP thread
    count that torch reads to ``NUMBA_NUM_THREADS`` (the number of cores): with ``OMP_NUM_THREADS=1`` torch runs
    one thread until the first render and two after it. A training that renders would then run the first step of
    a process (part of it on one thread) differently from the later ones, and a run resumed from a checkpoint
    would differ from an uninterrupted one in the last bits. Called at the start of a training, so that every
    step, the first included, runs with the same threads."""
    import numba       # here: a costly import (LLVM), only needed by a process that trains

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


__all__ = ["CHECKPOINT", "CheckpointFileError", "DONE", "FINAL", "FINISHED_FILES", "MAIN_PRESET", "METRICS",
           "RUN_INFO", "RUN_KINDS", "ResumableRun", "Tables", "UnsafeCheckpointError", "VALIDATION",
           "checkpoint_errors", "dataset_dir", "done_record", "is_finished", "keyed_run_dir", "load_checkpoint_file",
           "parser_run_candidates", "parser_run_name", "read_dataset_settings", "read_run_info", "run_columns",
           "run_hash", "run_label", "runs_dir", "save_torch", "settle_thread_pools", "trained_at_commit",
           "training_commits", "write_csv", "write_json"]
