"""Benchmark of the multi-view test-time refinement (``dfmvr reconstruct --refine``): its speed, and what it does to
the reconstruction error on the synthetic test split.

(a) Timing: ``refine_reconstruction`` of one triplet (3 views) at 224 px with the default number of steps, for the
``paper`` profile (its face model and full-width parser) and for the ``cpu`` profile's face model and parser at
224 px, plus the ``cpu`` profile at its own 112 px (what the default checkpoint runs at). Random parser weights
(speed does not depend on them); the targets are a rendered random face with its exact part labels and landmarks.
Target: under 20 s for 3 views at 224 px on 2 CPU cores.

(b) Accuracy: the trained run of ``--profile`` (default: the cpu run of notebooks 02-03, found by its run key; or
``--checkpoint``) on the first ``--triplets`` test triplets of its synthetic benchmark: the mean vertex error (mm,
front face, after a similarity alignment: :func:`dfmvr_lib.training.aligned_vertex_error_mm`) and the paper's
scan protocol rmse (crop, 7-landmark similarity, ICP, point-to-plane: :func:`dfmvr_lib.experiments.evaluate_vertices`)
of the network's prediction and of the refined one, beside the mean face, and the fitting loss before and after.

Usage: ``.venv/bin/python benchmarks/bench_refine.py [--steps N] [--repeats 3] [--triplets 8] [--threads 2]
[--parts timing accuracy]``. Prints the tables and writes ``results/benchmarks/refine.csv`` (+ ``refine.md``).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfmvr_lib.camera import PerspectiveCamera, view_yaws  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.face_model.factory import load_face_model  # noqa: E402
from dfmvr_lib.parsing import build_parser, frozen_parser  # noqa: E402
from dfmvr_lib.provenance import git_commit  # noqa: E402
from dfmvr_lib.reconstruction.defaults import DEFAULT_REFINE_STEPS  # noqa: E402
from dfmvr_lib.reconstruction.fitting import refine_reconstruction  # noqa: E402
from dfmvr_lib.runs import write_csv  # noqa: E402
from dfmvr_lib.scene import FaceCoefficients, random_coefficients, render_faces  # noqa: E402
from dfmvr_lib.training.data import TrainingBatch  # noqa: E402

TIMING_CASES = (("paper", 224), ("cpu", 224), ("cpu", 112))


def rendered_targets(model, camera, seed: int = 0) -> TrainingBatch:
    """One triplet rendered from random coefficients at +-30 degrees: images, exact part labels and landmarks."""
    truth = random_coefficients(model, 1, view_yaws(math.radians(30)), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        rendered = render_faces(model, truth, camera, background=(0.4, 0.4, 0.45))
    images = rendered.views("image").clamp(0, 1)
    parse = rendered.views("part_labels")
    return TrainingBatch(images=images, parse_maps=parse, network_images=images, network_parse_maps=parse,
                         landmarks_2d=rendered.landmarks_2d, landmark_visibility=rendered.landmark_visibility(),
                         view_weight=torch.ones(1, 3), landmarks_3d=None)


def time_refinement(profile: str, image_size: int, steps: int, repeats: int) -> dict:
    """Median / minimum seconds of a whole refinement of one triplet (after a 1-step warm-up)."""
    config = get_config(profile, {"image_size": image_size})
    model = load_face_model(config.face_model)
    camera = PerspectiveCamera.from_config(config)
    parser = frozen_parser(build_parser(config.parser))
    targets = rendered_targets(model, camera)
    start = FaceCoefficients.neutral(model, 1, yaws=view_yaws(math.radians(30)))
    refine_reconstruction(model, camera, start, targets, config.losses, parser, steps=1)    # warm-up: numba, allocator
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        refine_reconstruction(model, camera, start, targets, config.losses, parser, steps=steps)
        times.append(time.perf_counter() - began)
    return {"vertices": model.num_vertices, "seconds": statistics.median(times), "min_seconds": min(times)}


def refinement_accuracy(profile: str, checkpoint: Path | None, data_dir: Path | None, triplets: int,
                        steps: int) -> tuple[dict, list[dict]] | None:
    """Errors of the network and of the refined prediction on the first ``triplets`` test triplets, or None when
    no trained run is available."""
    from dfmvr_lib.experiments import evaluate_vertices, load_synthetic_test_set
    from dfmvr_lib.reconstruction.checkpoints import CheckpointNotFound, default_checkpoint, default_runs
    from dfmvr_lib.reconstruction.checkpoints import load_reconstructor
    from dfmvr_lib.reconstruction.pipeline import reconstruct_triplet
    from dfmvr_lib.training import aligned_vertex_error_mm, make_batch

    try:
        run_dir = checkpoint if checkpoint is not None else default_checkpoint(profile, data_dir)
    except CheckpointNotFound as error:
        print(f"accuracy part skipped: {error}")
        return None
    reconstructor = load_reconstructor(run_dir)
    config, model = reconstructor.config, reconstructor.model
    dataset_root = default_runs(config.profile, data_dir).dataset_root
    if not (dataset_root / "manifest.csv").is_file():
        print(f"accuracy part skipped: the {config.profile} benchmark is not at {dataset_root} (run notebook 01)")
        return None
    test = load_synthetic_test_set(dataset_root, model, limit=triplets)
    targets = make_batch(test.data, torch.arange(len(test)))
    began = time.perf_counter()
    result = reconstruct_triplet(reconstructor, targets, steps)
    seconds = time.perf_counter() - began
    with torch.no_grad():
        network_vertices, _ = model(result.network_coefficients.identity, result.network_coefficients.expression)
    truth = torch.stack(test.vertices)
    region = model.evaluation_region
    mean_face = model.mean_shape.expand_as(truth)
    candidates = {"mean face": mean_face, "network": network_vertices, "refined": result.vertices.detach()}
    per_sample = []
    for label, vertices in candidates.items():
        errors = aligned_vertex_error_mm(vertices, truth, region)
        scan = evaluate_vertices(vertices[:, None], model, test)
        for index, (error, rmse) in enumerate(zip(errors.tolist(), scan["rmse_mm"])):
            per_sample.append({"sample": test.sample_ids[index], "reconstruction": label,
                               "vertex_error_mm": error, "scan_rmse_mm": float(rmse)})
    losses = result.fit.losses["total"]
    summary = {"run": reconstructor.run_dir.name, "profile": config.profile, "image_size": config.image_size,
               "vertices": model.num_vertices, "triplets": len(test), "steps": steps,
               "fitting_loss_network": float(losses.iloc[0]), "fitting_loss_refined": float(losses.iloc[-1]),
               "refine_seconds_all_triplets": seconds}
    return summary, per_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_REFINE_STEPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--triplets", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", default="cpu", help="whose trained run the accuracy part uses")
    parser.add_argument("--checkpoint", type=Path, help="a finished reconstruction run (default: the profile's)")
    parser.add_argument("--data-dir", type=Path, help="where the notebooks keep data and runs (default: data/)")
    parser.add_argument("--parts", nargs="+", choices=("timing", "accuracy"), default=["timing", "accuracy"])
    parser.add_argument("--timing-cases", nargs="+", metavar="PROFILE@SIZE",
                        default=[f"{p}@{s}" for p, s in TIMING_CASES])
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "benchmarks" / "refine.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = round(os.getloadavg()[0], 1)
    base = {"date": datetime.date.today().isoformat(), "git_commit": git_commit(), "torch": torch.__version__,
            "threads": args.threads, "load_average_1min": load_before}
    rows = []
    timing_lines, accuracy_lines = [], []
    if "timing" in args.parts:
        timing_lines = ["| profile | image | vertices | views | steps | seconds (median) | seconds (min) | "
                        "seconds per step | under 20 s |", "|---|---|---|---|---|---|---|---|---|"]
        for case in args.timing_cases:
            profile, size = case.split("@")
            timed = time_refinement(profile, int(size), args.steps, args.repeats)
            per_step = timed["seconds"] / max(1, args.steps)
            rows.append({**base, "part": "timing", "profile": profile, "image_size": int(size),
                         "vertices": timed["vertices"], "triplets": 1, "steps": args.steps,
                         "measure": "refine_seconds_median", "value": round(timed["seconds"], 3), "unit": "s"})
            rows.append({**base, "part": "timing", "profile": profile, "image_size": int(size),
                         "vertices": timed["vertices"], "triplets": 1, "steps": args.steps,
                         "measure": "refine_seconds_min", "value": round(timed["min_seconds"], 3), "unit": "s"})
            timing_lines.append(f"| {profile} | {size} | {timed['vertices']} | 3 | {args.steps} | "
                                f"{timed['seconds']:.2f} | {timed['min_seconds']:.2f} | {per_step:.3f} | "
                                f"{('yes' if timed['seconds'] < 20 else 'no') if int(size) == 224 else '-'} |")
    if "accuracy" in args.parts:
        outcome = refinement_accuracy(args.profile, args.checkpoint, args.data_dir, args.triplets, args.steps)
        if outcome is not None:
            summary, per_sample = outcome
            import pandas as pd

            table = pd.DataFrame(per_sample).groupby("reconstruction", sort=False)[
                ["vertex_error_mm", "scan_rmse_mm"]].agg(["mean", "std"])
            common = {**base, "part": "accuracy", "profile": summary["profile"], "image_size": summary["image_size"],
                      "vertices": summary["vertices"], "triplets": summary["triplets"], "steps": summary["steps"]}
            seconds = summary["refine_seconds_all_triplets"]
            accuracy_lines = [f"Run `{summary['run']}` ({summary['profile']} profile, {summary['image_size']} px), "
                              f"first {summary['triplets']} test triplets of its synthetic benchmark, "
                              f"{summary['steps']} refinement steps (all triplets refined together in {seconds:.1f} s). "
                              f"Fitting loss {summary['fitting_loss_network']:.4f} (network) -> "
                              f"{summary['fitting_loss_refined']:.4f} (refined).", "",
                              "| reconstruction | vertex error mm (mean) | (std) | scan rmse mm (mean) | (std) |",
                              "|---|---|---|---|---|"]
            for label, values in table.iterrows():
                cells = [values[(measure, statistic)] for measure in ("vertex_error_mm", "scan_rmse_mm")
                         for statistic in ("mean", "std")]
                accuracy_lines.append(f"| {label} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
                for measure in ("vertex_error_mm", "scan_rmse_mm"):
                    rows.append({**common, "measure": f"{measure}_{label.replace(' ', '_')}",
                                 "value": round(float(values[(measure, 'mean')]), 4), "unit": "mm"})
            for key in ("fitting_loss_network", "fitting_loss_refined"):
                rows.append({**common, "measure": key, "value": round(summary[key], 5), "unit": "weighted sum"})
    load_after = round(os.getloadavg()[0], 1)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.csv)
    lines = [f"# Refinement benchmark ({base['date']}, commit {base['git_commit']}, {args.threads} threads, "
             f"torch {torch.__version__})", "",
             f"Multi-view test-time refinement (`dfmvr reconstruct --refine`, "
             f"`dfmvr_lib.reconstruction.fitting.refine_reconstruction`): Adam on the coefficients and per-view poses "
             f"with the training losses (photo, mask through the frozen parser, 2D landmarks, regularisation). "
             f"1-minute load average {load_before} before and {load_after} after the runs (2 cpu; other processes "
             f"on the machine inflate the timings). Produced by `benchmarks/bench_refine.py`.", ""]
    if timing_lines:
        lines += [f"## Speed: one triplet, {args.steps} steps (median of {args.repeats} after a warm-up; random "
                  "parser weights; target < 20 s at 224 px)", "", *timing_lines, ""]
    if accuracy_lines:
        lines += ["## Error before and after refinement (synthetic test split)", "", *accuracy_lines, ""]
    text = "\n".join(lines)
    args.csv.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
