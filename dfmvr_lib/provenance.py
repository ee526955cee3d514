"""Provenance and atomic result files: every table in results/ says which code, profile and date made it.

Files are written to a temporary sibling and moved into place with ``os.replace``, so an interrupted run never
leaves a half-written result or checkpoint.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically, else delete it.

    >>> with atomic_path("table.csv") as tmp:      # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def git_commit(short: bool = True) -> str:
    """The repository's current commit (``"unknown"`` outside a git checkout), with ``+dirty`` for local changes
    outside ``results/``."""
    try:
        arguments = ["git", "rev-parse", "--short", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(arguments, cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        # results/ is what the notebooks write: rewriting it does not make the code that wrote it dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=REPOSITORY_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(config=None) -> dict[str, str]:
    """Columns stamped on every result row: profile, config hash, git commit, date (UTC), host summary."""
    row = {
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": f"{platform.machine()} {os.cpu_count()} cpu",
    }
    if config is not None:
        row = {"profile": config.profile, "config_hash": config.hash(), **row}
    return row


def results_paths(results_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(figures, tables)``: the folders a notebook writes under ``results_dir``."""
    return Path(results_dir) / "figures", Path(results_dir) / "tables"


def write_table(frame, path: str | os.PathLike, config=None):
    """Write a pandas DataFrame as CSV atomically, adding the :func:`provenance` columns. Returns the path."""
    frame = frame.copy()
    for key, value in provenance(config).items():
        frame[key] = value
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
    return Path(path)
