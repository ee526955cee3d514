"""Run the workbook's numbered notebooks headlessly with papermill, in order.

    python -m dfmvr_lib.run_notebooks --profile cpu            # the main job
    python -m dfmvr_lib.run_notebooks --profile smoke --only 00 --output-dir /tmp/nb

Each notebook gets the parameters ``profile`` and ``results_dir``; executed copies are written to
``--output-dir`` (default ``results/notebooks``) so they sit next to the results they made.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import PROFILE_NAMES
from .provenance import REPOSITORY_ROOT

NOTEBOOK_DIR = REPOSITORY_ROOT / "notebooks"


def numbered_notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks named ``NN_*.ipynb`` in order, optionally only those whose number is in ``only``."""
    notebooks = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if p.name[:2] in only]
    return notebooks


def run_notebook(notebook: Path, output_dir: Path, profile: str, results_dir: Path,
                 extra_parameters: dict | None = None, kernel_name: str = "python3") -> Path:
    """Execute one notebook with papermill; returns the executed copy's path. Raises on a failing cell."""
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / notebook.name
    parameters = {"profile": profile, "results_dir": str(results_dir), **(extra_parameters or {})}
    papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel_name,
                               cwd=str(NOTEBOOK_DIR), progress_bar=False)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    parser.add_argument("--only", nargs="*", help="notebook numbers to run, e.g. 00 03")
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY_ROOT / "results" / "notebooks")
    parser.add_argument("--results-dir", type=Path, default=REPOSITORY_ROOT / "results")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not regenerate the README's headline results after a full cpu-profile run")
    args = parser.parse_args(argv)

    notebooks = numbered_notebooks(args.only)
    if not notebooks:
        print(f"no notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    from .precision import precision_note

    data_dir = REPOSITORY_ROOT / "data"
    from_scratch = not data_dir.exists() or not any(data_dir.iterdir())
    precision = precision_note("auto")
    print(f"[run_notebooks] {len(notebooks)} notebooks, profile {args.profile}, {precision}, "
          f"{'from scratch (data/ empty)' if from_scratch else 'reusing what data/ holds'}", flush=True)
    started = time.perf_counter()
    timings = []
    for notebook in notebooks:
        t0 = time.perf_counter()
        print(f"[run_notebooks] {notebook.name} (profile {args.profile}) ...", flush=True)
        run_notebook(notebook, args.output_dir, args.profile, args.results_dir.resolve())
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
