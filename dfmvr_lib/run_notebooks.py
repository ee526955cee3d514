"""Run the workbook's numbered notebooks headlessly with papermill, in order.

    python -m dfmvr_lib.run_notebooks --profile cpu            # the main job
    python -m dfmvr_lib.run_notebooks --profile smoke --only 00 --output-dir /tmp/nb

Each notebook gets the parameters ``profile`` and ``results_dir`` (and ``data_dir`` with ``--data-dir``, for the
notebooks that have that parameter); executed copies are written to ``--output-dir`` (default
``results/notebooks``) so they sit next to the results they made. A notebook is executed into a temporary file
beside its executed copy and moved onto it only when every cell ran: a failing notebook leaves the previous good
copy as it was and its own executed copy, with the error, in ``NAME.failed.ipynb``.

Progress, on stdout: before each notebook one line with its position in the job, the duration of its last run
and the time the job has left, both from the timing table of the last full run of the same profile
(``RESULTS_DIR/tables/run_notebooks_timing.csv``, :func:`write_timing`), e.g.

    [run_notebooks] [4/10] 03_training (profile cpu): last run 19.2 min; job: about 1 h 10 min left (7 notebooks)

and, while it runs, every ``--progress-interval`` seconds (default 60, 0: none) a heartbeat with the time it has
run, the time it has left by its last run and the cell it is executing, e.g.

    [run_notebooks]   03_training: 5.0 min elapsed, about 14 min left (last run 19.2 min), cell 12/31: run = train(
"""
from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
import threading
import time
from pathlib import Path

from .config import PROFILE_NAMES
from .provenance import REPOSITORY_ROOT, atomic_path, write_table

NOTEBOOK_DIR = REPOSITORY_ROOT / "notebooks"
TIMING_TABLE = "run_notebooks_timing.csv"
PROGRESS_ENGINE = "dfmvr_progress"
DEFAULT_PROGRESS_INTERVAL = 60.0


class NotebookFailed(RuntimeError):
    """A notebook stopped on an error; ``failed_copy`` is its executed copy with the error (or None)."""

    def __init__(self, message: str, failed_copy: Path | None):
        super().__init__(message)
        self.failed_copy = failed_copy


def failed_copy_path(executed: Path) -> Path:
    """``NAME.failed.ipynb`` beside ``NAME.ipynb``: where a failing run's executed copy is kept."""
    return executed.with_name(f"{executed.stem}.failed{executed.suffix}")


def notebook_parameters(notebook: Path) -> set[str]:
    """The names defined in a notebook's cell tagged ``parameters``."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def numbered_notebooks(only: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks named ``NN_*.ipynb`` in ``notebook_dir`` (default ``notebooks/``) in order, optionally only
    those whose number is in ``only``."""
    notebooks = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if p.name[:2] in only]
    return notebooks


# ---------------------------------------------------------------------------------------------------------------
# progress: the estimates from the last run's timing table, the start line and the heartbeat


def timing_table_path(results_dir: Path) -> Path:
    """Where :func:`write_timing` writes the timing table: ``results_dir / "tables" / TIMING_TABLE``."""
    return Path(results_dir) / "tables" / TIMING_TABLE


def last_timings(results_dir: Path, profile: str) -> dict[str, float]:
    """Seconds per notebook (by file name) of the last recorded run of ``profile``, read back from the table
    :func:`write_timing` wrote; empty when there is no table, it holds no row of ``profile`` or it cannot be read
    (an estimate is never worth stopping the job over)."""
    path = timing_table_path(results_dir)
    timings: dict[str, float] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("profile") == profile and row.get("notebook"):
                    try:
                        timings[row["notebook"]] = float(row["seconds"])
                    except (TypeError, ValueError):
                        continue
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return timings


def format_duration(seconds: float, whole_minutes: bool = False) -> str:
    """``"45 s"``, ``"5.0 min"`` (under an hour; ``"5 min"`` with ``whole_minutes``, what an estimate of the time
    left is worth) or ``"1 h 35 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min" if whole_minutes else f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def job_left_text(remaining: list[str], timings: dict[str, float]) -> str:
    """What the job has left, from the last timings of the ``remaining`` notebooks (the current one included):
    ``"about 1 h 10 min left (7 notebooks)"``, ``"at least 50 min left (2 of 7 notebooks without an earlier
    timing)"`` or ``"no earlier timing"``."""
    known = [timings[name] for name in remaining if name in timings]
    if not known:
        return "no earlier timing"
    unknown = len(remaining) - len(known)
    if unknown:
        return (f"at least {format_duration(sum(known), whole_minutes=True)} left ({unknown} of {len(remaining)} "
                "notebooks without an earlier timing)")
    plural = "s" if len(remaining) != 1 else ""
    return f"about {format_duration(sum(known), whole_minutes=True)} left ({len(remaining)} notebook{plural})"


def start_line(index: int, total: int, notebook: str, profile: str, estimate: float | None, job_left: str) -> str:
    """The line printed before a notebook: its position, its last run's duration and the job's time left, e.g.
    ``"[run_notebooks] [4/10] 03_training (profile cpu): last run 19.2 min; job: about 1 h 10 min left
    (7 notebooks)"``."""
    last = f"last run {format_duration(estimate)}" if estimate is not None else "no earlier timing"
    return f"[run_notebooks] [{index}/{total}] {Path(notebook).stem} (profile {profile}): {last}; job: {job_left}"


def _cell_summary(cell) -> str:
    """The first non-empty line of a cell's source, shortened to 50 characters."""
    source = cell.get("source", "") if hasattr(cell, "get") else ""
    if isinstance(source, list):
        source = "".join(source)
    first = next((line.strip() for line in str(source).splitlines() if line.strip()), "")
    return first if len(first) <= 50 else first[:47] + "..."


def heartbeat_line(notebook: str, elapsed: float, estimate: float | None,
                   cell: tuple[int, int, str] | None = None) -> str:
    """A heartbeat: the time the notebook has run, its time left by its last run (or ``"over the last run's
    time"``) and the cell it executes (``(position, count, first line)``, position from 1), e.g.
    ``"[run_notebooks]   03_training: 5.0 min elapsed, about 14 min left (last run 19.2 min), cell 12/31: run ="``.
    """
    text = f"[run_notebooks]   {Path(notebook).stem}: {format_duration(elapsed)} elapsed"
    if estimate is None:
        text += " (no earlier timing)"
    elif elapsed > estimate:
        text += f", over the last run's time (last run {format_duration(estimate)})"
    else:
        text += (f", about {format_duration(estimate - elapsed, whole_minutes=True)} left "
                 f"(last run {format_duration(estimate)})")
    if cell is not None:
        position, count, summary = cell
        text += f", cell {position}/{count}" + (f": {summary}" if summary else "")
    return text


class NotebookProgress:
    """The heartbeat of one running notebook: a daemon thread that prints :func:`heartbeat_line` to stdout every
    ``interval`` seconds, from :meth:`start` until :meth:`stop` (which returns once the thread has ended, so
    nothing is printed after it). The cell position comes from :meth:`cell_started`, called by the papermill
    engine :class:`_ProgressEngine` as each cell starts. A context manager: ``with progress: ...``."""

    def __init__(self, notebook: str, estimate: float | None, interval: float = DEFAULT_PROGRESS_INTERVAL):
        self.notebook = notebook
        self.estimate = estimate
        self.interval = float(interval)
        self.cell: tuple[int, int, str] | None = None
        self._started: float | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def cell_started(self, cell_index: int | None, cell_count: int, cell=None) -> None:
        """Record that cell ``cell_index`` (from 0) of ``cell_count`` started."""
        if cell_index is not None:
            self.cell = (cell_index + 1, cell_count, _cell_summary(cell) if cell is not None else "")

    def line(self) -> str:
        elapsed = time.perf_counter() - self._started if self._started is not None else 0.0
        return heartbeat_line(self.notebook, elapsed, self.estimate, self.cell)

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            print(self.line(), flush=True)

    def start(self) -> "NotebookProgress":
        self._started = time.perf_counter()
        self._stopped.clear()
        if self.interval > 0:
            self._thread = threading.Thread(target=self._beat, name=f"run_notebooks-progress-{self.notebook}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "NotebookProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@functools.lru_cache(maxsize=None)
def _register_progress_engine() -> str:
    """Register :class:`_ProgressEngine` with papermill under :data:`PROGRESS_ENGINE`; returns that name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class _ProgressEngine(NBClientEngine):
        """papermill's own nbclient engine, with the manager's ``cell_start`` hook wrapped to tell a
        :class:`NotebookProgress` (the engine keyword ``progress``) which cell starts."""

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, progress=None, **kwargs):
            if progress is not None:
                cell_start = nb_man.cell_start

                def observed_cell_start(cell, cell_index=None, **hook_kwargs):
                    try:
                        progress.cell_started(cell_index, len(nb_man.nb.cells), cell)
                    except Exception:                 # progress must never stop a notebook
                        pass
                    return cell_start(cell, cell_index, **hook_kwargs)

                nb_man.cell_start = observed_cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(PROGRESS_ENGINE, _ProgressEngine)
    return PROGRESS_ENGINE


# ---------------------------------------------------------------------------------------------------------------


def run_notebook(notebook: Path, output_dir: Path, profile: str, results_dir: Path,
                 extra_parameters: dict | None = None, kernel_name: str = "python3",
                 progress: NotebookProgress | None = None) -> Path:
    """Execute one notebook with papermill; returns the executed copy's path (``output_dir / notebook.name``).

    The notebook runs into a temporary file in ``output_dir`` (:func:`dfmvr_lib.provenance.atomic_path`) that
    replaces the executed copy only when every cell ran. On a failing cell (or any other error, an interruption
    included) the previous executed copy is left as it was, the failing run's copy is moved to
    ``NAME.failed.ipynb`` (:func:`failed_copy_path`) and :class:`NotebookFailed` is raised naming both. A
    successful run deletes a ``NAME.failed.ipynb`` left by an earlier failure.

    With ``progress`` (:class:`NotebookProgress`) its heartbeat runs while the notebook executes, with the cell
    position reported by a papermill engine that observes each cell's start; it stops when the notebook ends or
    fails, before the failure is handled."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    failed = failed_copy_path(executed)
    parameters = {"profile": profile, "results_dir": str(results_dir), **(extra_parameters or {})}
    with atomic_path(executed) as temporary:
        try:
            if progress is None:
                papermill.execute_notebook(str(notebook), str(temporary), parameters=parameters,
                                           kernel_name=kernel_name, cwd=str(NOTEBOOK_DIR), progress_bar=False)
            else:
                with progress:
                    papermill.execute_notebook(str(notebook), str(temporary), parameters=parameters,
                                               kernel_name=kernel_name, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                                               engine_name=_register_progress_engine(), progress=progress)
        except BaseException as error:
            kept = None
            if temporary.is_file() and temporary.stat().st_size > 0:
                os.replace(temporary, failed)
                kept = failed
            if not isinstance(error, Exception):      # KeyboardInterrupt, SystemExit: the copy is kept, as is
                raise
            if isinstance(error, PapermillExecutionError):
                what = f"cell {error.exec_count} raised {error.ename}: {error.evalue}"
            else:
                what = f"{type(error).__name__}: {error}"
            previous = (f"the previous executed copy {executed} is left as it was" if executed.is_file()
                        else f"no executed copy was written to {executed}")
            where = f"the failed run's executed copy, with the error, is {kept}" if kept else \
                "papermill wrote no executed copy"
            raise NotebookFailed(f"{notebook.name} failed ({what}); {previous}; {where}", kept) from error
    failed.unlink(missing_ok=True)
    return executed


def main(argv: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> int:
    """The command line (see the module's docstring); ``notebook_dir`` is where the numbered notebooks are
    (default ``notebooks/``). Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    parser.add_argument("--only", nargs="*", help="notebook numbers to run, e.g. 00 03")
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY_ROOT / "results" / "notebooks")
    parser.add_argument("--results-dir", type=Path, default=REPOSITORY_ROOT / "results")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the notebooks' data_dir (generated datasets and training runs); default their own, "
                             "../data from notebooks/, i.e. data/")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not regenerate the README's headline results after a full cpu-profile run")
    parser.add_argument("--progress-interval", type=float, default=DEFAULT_PROGRESS_INTERVAL, metavar="SECONDS",
                        help="seconds between the heartbeat lines while a notebook runs (time elapsed and left by "
                             "the last run, current cell); 0: no heartbeat (default %(default)g)")
    args = parser.parse_args(argv)
    if args.progress_interval < 0:
        parser.error("--progress-interval must be 0 (off) or positive")

    notebooks = numbered_notebooks(args.only, notebook_dir)
    if not notebooks:
        print(f"no notebooks found in {notebook_dir}", file=sys.stderr)
        return 2
    from .precision import precision_note   # loads torch (seconds): not for --help or an empty notebook folder

    data_dir = (args.data_dir or REPOSITORY_ROOT / "data").resolve()
    from_scratch = not data_dir.exists() or not any(data_dir.iterdir())
    precision = precision_note("auto")
    print(f"[run_notebooks] {len(notebooks)} notebooks, profile {args.profile}, {precision}, "
          f"{'from scratch (data/ empty)' if from_scratch else 'reusing what data/ holds'}", flush=True)
    started = time.perf_counter()
    timings = []
    last = last_timings(args.results_dir, args.profile)     # read before this run's table replaces it
    for index, notebook in enumerate(notebooks):
        t0 = time.perf_counter()
        estimate = last.get(notebook.name)
        print(start_line(index + 1, len(notebooks), notebook.name, args.profile, estimate,
                         job_left_text([p.name for p in notebooks[index:]], last)), flush=True)
        extra = {"data_dir": str(data_dir)} if args.data_dir and "data_dir" in notebook_parameters(notebook) else None
        progress = NotebookProgress(notebook.name, estimate, args.progress_interval) \
            if args.progress_interval > 0 else None
        try:
            run_notebook(notebook, args.output_dir, args.profile, args.results_dir.resolve(), extra,
                         progress=progress)
        except NotebookFailed as failure:
            print(f"[run_notebooks] {failure}", file=sys.stderr, flush=True)
            print(f"[run_notebooks] stopped after {len(timings)} of {len(notebooks)} notebooks; a rerun reuses "
                  "what finished (datasets, runs) and resumes interrupted trainings", file=sys.stderr, flush=True)
            return 1
        timings.append({"notebook": notebook.name, "seconds": time.perf_counter() - t0})
        print(f"[run_notebooks] {notebook.name} done in {timings[-1]['seconds']:.0f} s", flush=True)
    print(f"[run_notebooks] {len(notebooks)} notebooks in {time.perf_counter() - started:.0f} s")
    if not args.only:                 # the timing table describes a whole main job, not a partial re-run
        write_timing(timings, args.profile, args.results_dir, from_scratch=from_scratch, precision=precision)
    if not args.only and args.profile == "cpu" and not args.no_readme \
            and args.results_dir.resolve() == (REPOSITORY_ROOT / "results").resolve():
        from .readme_tables import update_readme   # loads the experiments package (torch): only after a full run

        update_readme(REPOSITORY_ROOT / "README.md", args.results_dir / "tables")
        print("[run_notebooks] README.md headline results regenerated from results/tables")
    return 0


def write_timing(timings: list[dict], profile: str, results_dir: Path, from_scratch: bool = False,
                 precision: str = "") -> Path:
    """Write the wall-clock seconds per notebook of this invocation to ``results/tables/run_notebooks_timing.csv``
    (with provenance, whether ``data/`` was empty when the job started, and the precision the trainings ran in)
    and return its path. The next run reads it back (:func:`last_timings`) for its progress estimates."""
    import pandas as pd


    frame = pd.DataFrame(timings)
    frame.insert(0, "profile", profile)
    frame["from_scratch"] = from_scratch
    frame["precision"] = precision
    return write_table(frame, timing_table_path(results_dir))


if __name__ == "__main__":
    sys.exit(main())
