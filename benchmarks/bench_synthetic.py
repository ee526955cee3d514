"""Benchmark of the synthetic benchmark generator: triplets (three rendered views + all files) per second.

Generates ``--triplets`` samples (default 300: 75 subjects x 4, 60 train / 5 validation / 10 test subjects, so 20 %
of the samples also write a PLY mesh, about the ``cpu`` profile's share) of the ``pixelface-like`` preset at
``--size`` pixels with the ``cpu`` profile's face model (about 20k vertices, 120 ground-truth identity components)
into a temporary folder, once per ``--workers`` value. Reports the steady rate (samples after the first batch /
time after the first batch, so model building and worker start-up are excluded), the total wall time including
start-up, and the projected time for 5,000 triplets (start-up + 5,000 / steady rate).

Usage: ``.venv/bin/python benchmarks/bench_synthetic.py [--triplets 300] [--size 112] [--workers 1 2]``.
Prints a table and writes ``results/benchmarks/synthetic.csv`` (+ ``synthetic.md``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.data.synthetic import SyntheticSettings, generate_benchmark  # noqa: E402
from dfmvr_lib.provenance import atomic_path, provenance  # noqa: E402


def measure(triplets: int, size: int, workers: int, profile: str) -> dict:
    samples_per_subject = 4
    subjects = max(1, triplets // samples_per_subject)
    validation = max(1, subjects // 15)
    test = max(1, subjects * 2 // 15)
    config = get_config(profile, overrides={
        "image_size": size, "data.samples_per_subject": samples_per_subject,
        "data.train_subjects": subjects - validation - test, "data.validation_subjects": validation,
        "data.test_subjects": test})
    settings = SyntheticSettings.from_config(config, "pixelface-like")
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as folder:
        start = time.perf_counter()
        generate_benchmark(Path(folder) / "bench", settings, workers=workers, progress=False,
                           callback=lambda done: marks.append((time.perf_counter(), done)))
        total = time.perf_counter() - start
        disk_mb = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2 ** 20
    # steady rate: from the first completed batch to the end
    (first_time, first_done), (last_time, last_done) = marks[0], marks[-1]
    steady = (last_done - first_done) / max(last_time - first_time, 1e-9)
    startup = first_time - start - first_done / steady
    from dfmvr_lib.face_model import load_face_model

    vertices = load_face_model(settings.face_model).num_vertices
    return {
        "triplets": settings.num_samples, "image_size": size, "vertices": vertices,
        "identity_components_gt": settings.face_model.identity_components, "workers": workers,
        "batch_size": settings.batch_size, "triplets_per_s": round(steady, 1),
        "total_s": round(total, 1), "startup_s": round(max(startup, 0.0), 1),
        "projected_5000_s": round(max(startup, 0.0) + 5000 / steady, 0),
        "meshes_written": settings.num_samples - settings.train_subjects * settings.samples_per_subject,
        "disk_mb": round(disk_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=300)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", default="cpu", help="profile whose face model is used")
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "synthetic.csv")
    args = parser.parse_args()

    stamp = provenance()
    rows = []
    for workers in args.workers:
        row = measure(args.triplets, args.size, workers, args.profile)
        row.update({"date": stamp["date"], "git_commit": stamp["git_commit"], "host": stamp["host"]})
        rows.append(row)
        print(f"workers {workers}: {row['triplets_per_s']:6.1f} triplets/s steady, {row['total_s']:6.1f} s total "
              f"for {row['triplets']} ({row['startup_s']} s start-up), 5000 triplets ~{row['projected_5000_s']:.0f} s",
              flush=True)
    frame = pd.DataFrame(rows)
    with atomic_path(args.csv) as temporary:
        frame.to_csv(temporary, index=False)
    columns = ["workers", "image_size", "vertices", "triplets", "triplets_per_s", "total_s", "startup_s",
               "projected_5000_s", "disk_mb"]
    lines = [f"# Synthetic benchmark generator ({rows[0]['date']}, commit {rows[0]['git_commit']}, "
             f"{rows[0]['host']})", "",
             f"`generate_benchmark` with the `pixelface-like` preset and the `{args.profile}` profile's face model "
             f"({rows[0]['vertices']} vertices, {rows[0]['identity_components_gt']} ground-truth identity components), "
             f"{rows[0]['triplets']} triplets at {args.size} px, batches of {rows[0]['batch_size']} samples x 3 views, "
             "1 torch/numba thread per process; PNG (compress level 1), npz, and a PLY mesh for the validation and "
             f"test samples ({rows[0]['meshes_written']} of {rows[0]['triplets']}). `triplets_per_s` is the steady "
             "rate after the first batch (model build and worker start-up excluded, they are in `startup_s`); "
             "`projected_5000_s` = start-up + 5000 / rate. Target: >= 17 triplets/s (5,000 in under 5 minutes). "
             "Produced by `benchmarks/bench_synthetic.py`; other processes competing for the 2 cores slow it down.",
             "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    print("\n".join(lines[4:]))
    with atomic_path(args.csv.with_suffix(".md")) as temporary:
        temporary.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
