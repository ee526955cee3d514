"""Provenance and atomic result files: every table in results/ says which code, profile and date made it.

Files are written to a temporary sibling and moved into place with ``os.replace``, so an interrupted run never
leaves a half-written result or checkpoint. A temporary sibling is named ``.<name>.<pid>.<random><suffix>``: one
that a killed writer left behind (``kill -9`` between creating and renaming it) is deleted the next time the same
file is written, once no process with that pid is alive.
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


def _process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):     # no such process (or a number no pid can be)
        return False
    except PermissionError:                         # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary siblings of ``path`` that :func:`atomic_path` writers left behind when they were killed
    (their pid, part of the name, is no longer alive); returns what was deleted. Temporaries of live writers are
    kept."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    if not path.parent.is_dir():
        return removed
    for sibling in path.parent.iterdir():
        name = sibling.name
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        try:
            sibling.unlink()
            removed.append(sibling)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically, else delete it.

    Temporaries of ``path`` left by killed writers are deleted first (:func:`remove_stale_temporaries`).

    >>> with atomic_path("table.csv") as tmp:      # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=path.suffix or ".tmp",
                                         dir=path.parent)
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


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8); returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def git_commit(short: bool = True) -> str:
    """The repository's current commit (``"unknown"`` outside a git checkout), with ``+dirty`` for local changes
    outside ``results/``."""
    try:
        arguments = ["git", "rev-parse", "--short", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(arguments, cwd=REPOSITORY_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
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
    """Write a pandas DataFrame as CSV atomically, adding the :func:`provenance` columns. Returns the path.

    A ``trained_at_commit`` column (the commit that trained each row's runs, :func:`dfmvr_lib.runs.run_columns`)
    is moved next to ``git_commit`` (the commit that wrote the table), so a row from a run trained at another
    commit shows it beside the table's own commit."""
    frame = frame.copy()
    for key, value in provenance(config).items():
        frame[key] = value
    if "trained_at_commit" in frame.columns:
        columns = [c for c in frame.columns if c != "trained_at_commit"]
        columns.insert(columns.index("git_commit") + 1, "trained_at_commit")
        frame = frame[columns]
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
    return Path(path)


#: Columns of a result table that are labels, not numbers: a commit such as ``0086589``, a config hash of digits
#: only, a seed list ``"0 1"``; pandas would read an all-digit value as an integer and drop its leading zeros.
TEXT_COLUMNS = ("git_commit", "trained_at_commit", "config_hash", "seeds", "run_dir", "run_dirs", "parser_run_dir")


def read_table(path: str | os.PathLike):
    """A result table written by :func:`write_table`, as a pandas DataFrame with the :data:`TEXT_COLUMNS` kept as
    text (``pandas.read_csv(path, dtype={"git_commit": str, ...})`` does the same). Empty cells stay NaN."""
    import pandas as pd

    return pd.read_csv(path, dtype={name: str for name in TEXT_COLUMNS})
