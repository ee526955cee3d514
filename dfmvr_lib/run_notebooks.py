"""Run the workbook's numbered notebooks headlessly with papermill, in order.

    python -m dfmvr_lib.run_notebooks --profile cpu            # the main job
    python -m dfmvr_lib.run_notebooks --profile smoke --only 00 --output-dir /tmp/nb

Each notebook gets the parameters ``profile`` and ``results_dir`` (and ``data_dir`` with ``--data-dir``, for the
notebooks that have that parameter); executed copies are written to ``--output-dir`` (default
``results/notebooks``) so they sit next to the results they made. A notebook is executed into a temporary file
beside its executed copy and moved onto it only when every cell ran: a failing notebook leaves the previous good
copy as it was and its own executed copy, with the error, in ``NAME.failed.ipynb``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import PROFILE_NAMES
from .provenance import REPOSITORY_ROOT, atomic_path

NOTEBOOK_DIR = REPOSITORY_ROOT / "notebooks"


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


def numbered_notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks named ``NN_*.ipynb`` in order, optionally only those whose number is in ``only``."""
    notebooks = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if p.name[:2] in only]
    return notebooks


def run_notebook(notebook: Path, output_dir: Path, profile: str, results_dir: Path,
                 extra_parameters: dict | None = None, kernel_name: str = "python3") -> Path:
    """Execute one notebook with papermill; returns the executed copy's path (``output_dir / notebook.name``).

    The notebook runs into a temporary file in ``output_dir`` (:func:`dfmvr_lib.provenance.atomic_path`) that
    replaces the executed copy only when every cell ran. On a failing cell (or any other error, an interruption
    included) the previous executed copy is left as it was, the failing run's copy is moved to
    ``NAME.failed.ipynb`` (:func:`failed_copy_path`) and :class:`NotebookFailed` is raised naming both. A
    successful run deletes a ``NAME.failed.ipynb`` left by an earlier failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    failed = failed_copy_path(executed)
    parameters = {"profile": profile, "results_dir": str(results_dir), **(extra_parameters or {})}
    with atomic_path(executed) as temporary:
        try:
            papermill.execute_notebook(str(notebook), str(temporary), parameters=parameters,
                                       kernel_name=kernel_name, cwd=str(NOTEBOOK_DIR), progress_bar=False)
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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

    notebooks = numbered_notebooks(args.only)
    if not notebooks:
        print(f"no notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    from .precision import precision_note

    data_dir = (args.data_dir or REPOSITORY_ROOT / "data").resolve()
    from_scratch = not data_dir.exists() or not any(data_dir.iterdir())
    precision = precision_note("auto")
    print(f"[run_notebooks] {len(notebooks)} notebooks, profile {args.profile}, {precision}, "
          f"{'from scratch (data/ empty)' if from_scratch else 'reusing what data/ holds'}", flush=True)
    started = time.perf_counter()
    timings = []
    for notebook in notebooks:
        t0 = time.perf_counter()
        print(f"[run_notebooks] {notebook.name} (profile {args.profile}) ...", flush=True)
        extra = {"data_dir": str(data_dir)} if args.data_dir and "data_dir" in notebook_parameters(notebook) else None
        try:
            run_notebook(notebook, args.output_dir, args.profile, args.results_dir.resolve(), extra)
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
        from .readme_tables import update_readme

        update_readme(REPOSITORY_ROOT / "README.md", args.results_dir / "tables")
        print("[run_notebooks] README.md headline results regenerated from results/tables")
    return 0


def write_timing(timings: list[dict], profile: str, results_dir: Path, from_scratch: bool = False,
                 precision: str = "") -> Path:
    """Write the wall-clock seconds per notebook of this invocation to ``results/tables/run_notebooks_timing.csv``
    (with provenance, whether ``data/`` was empty when the job started, and the precision the trainings ran in)
    and return its path."""
    import pandas as pd

    from .provenance import write_table

    frame = pd.DataFrame(timings)
    frame.insert(0, "profile", profile)
    frame["from_scratch"] = from_scratch
    frame["precision"] = precision
    return write_table(frame, Path(results_dir) / "tables" / "run_notebooks_timing.csv")


if __name__ == "__main__":
    sys.exit(main())
