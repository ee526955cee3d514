"""Benchmark of the multi-view test-time refinement (``dfmvr reconstruct --refine``): its speed, and what it does to
the reconstruction error on the synthetic test split.

(a) Timing: ``refine_reconstruction`` of one triplet (3 views) at 224 px with the default number of steps, for the
``paper`` profile (its face model and full-width parser) and for the ``cpu`` profile's face model and parser at
224 px, plus the ``cpu`` profile at 112 px. Random parser weights
(speed does not depend on them); the targets are a rendered random face with its exact part labels and landmarks.
Target: under 20 s for 3 views at 224 px on 2 CPU cores.

(b) Accuracy: the trained run of ``--profile`` (default: the cpu run of notebooks 02-03, found by its run key; or
``--checkpoint``) on the first ``--triplets`` test triplets of its synthetic benchmark: the mean vertex error (mm,
front face, after a similarity alignment: :func:`dfmvr_lib.training.aligned_vertex_error_mm`) and the paper's
scan protocol rmse (crop, 7-landmark similarity, ICP, point-to-plane: :func:`dfmvr_lib.experiments.evaluate_vertices`)
of the network's prediction and of the refined one, beside the mean face, and the fitting loss before and after.

(c) Held-out-view landmark error (:mod:`dfmvr_lib.reconstruction.held_out`): each view held out in turn, the shape
refined on the other two (from the network's prediction and from the mean face; 40 and 200 steps), only the held-out
view's pose fitted to its landmarks, the inner-landmark residual in pixels at 224 px; on the real triplets of
``--photos`` (the development fixtures ``../shared/fixtures/real_multiview`` by default; skipped when absent) and
on ``--held-out-triplets`` synthetic test triplets (parser masks, detector-noise landmarks), where it is compared
with the true vertex error of the same shapes (correlation).

(d) Ablation: the variants of :data:`ABLATIONS` (one setting of ``RefinementSettings`` changed each) with the same
measures on the real triplets and on synthetic VALIDATION triplets (the split the defaults were chosen on).

Usage: ``.venv/bin/python benchmarks/bench_refine.py [--steps N] [--repeats 3] [--triplets 8] [--threads 2]
[--parts timing accuracy held_out ablation] [--held-out-triplets 8] [--photos DIR]``. Prints the tables and writes
``results/benchmarks/refine.csv`` (+ ``refine.md``, ``refine_held_out.csv``, ``refine_ablation.csv``).
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
from dfmvr_lib.provenance import atomic_path, git_commit  # noqa: E402
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


def trained_reconstructor(profile: str, checkpoint: Path | None, data_dir: Path | None, part: str):
    """The trained run of ``--checkpoint`` (or the profile's default run) loaded with its parser, or None (with a
    message naming ``part``) when there is none."""
    from dfmvr_lib.reconstruction.reconstructor import CheckpointNotFound, default_checkpoint, load_reconstructor

    try:
        return load_reconstructor(checkpoint if checkpoint is not None else default_checkpoint(profile, data_dir))
    except CheckpointNotFound as error:
        print(f"{part} part skipped: {error}")
        return None


ACCURACY_INPUTS = {
    "oracle": "oracle inputs: exact 2D landmarks and ground-truth parse maps",
    "paper": "the paper's inputs: parser masks and 2D landmarks with the detector's error (NME 0.028)",
}
"""The two kinds of input of the accuracy part (the refinement and the network see the same)."""


def refinement_accuracy(profile: str, checkpoint: Path | None, data_dir: Path | None, triplets: int,
                        steps: int, inputs: str = "paper") -> tuple[dict, list[dict]] | None:
    """Errors of the network and of the refined prediction on the first ``triplets`` test triplets, or None when
    no trained run is available. ``inputs`` (:data:`ACCURACY_INPUTS`): ``"oracle"`` gives the network and the
    refinement the exact landmarks and ground-truth parse maps, ``"paper"`` the frozen parser's masks and
    landmarks perturbed to the detector's error, as a photo would."""
    from dfmvr_lib.experiments import evaluate_vertices, load_synthetic_test_set
    from dfmvr_lib.reconstruction.reconstructor import default_runs
    from dfmvr_lib.reconstruction.pipeline import reconstruct_triplet
    from dfmvr_lib.training import aligned_vertex_error_mm, make_batch
    from dfmvr_lib.training.landmark_noise import with_landmark_noise

    if inputs not in ACCURACY_INPUTS:
        raise ValueError(f"inputs must be one of {sorted(ACCURACY_INPUTS)}, got {inputs!r}")
    reconstructor = trained_reconstructor(profile, checkpoint, data_dir, "accuracy")
    if reconstructor is None:
        return None
    config, model = reconstructor.config, reconstructor.model
    dataset_root = default_runs(config.profile, data_dir).dataset_root
    if not (dataset_root / "manifest.csv").is_file():
        print(f"accuracy part skipped: the {config.profile} benchmark is not at {dataset_root} (run notebook 01)")
        return None
    test = load_synthetic_test_set(dataset_root, model, limit=triplets)
    data = test.data
    if inputs == "paper":
        data = with_landmark_noise(test.network_data("parser", reconstructor.parser_run_dir),
                                   config.training.landmark_noise_nme, seed=1)
    targets = make_batch(data, torch.arange(len(test)))
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
    summary = {"run": reconstructor.run_dir.name, "inputs": inputs, "profile": config.profile,
               "image_size": config.image_size,
               "vertices": model.num_vertices, "triplets": len(test), "steps": steps,
               "fitting_loss_network": float(losses.iloc[0]), "fitting_loss_refined": float(losses.iloc[-1]),
               "refine_seconds_all_triplets": seconds}
    return summary, per_sample


def held_out_synthetic(profile: str, checkpoint: Path | None, data_dir: Path | None, triplets: int,
                       refine_steps: tuple[int, ...], split: str = "test", settings=None,
                       starts: tuple[str, ...] = ("network", "mean face")):
    """The held-out-view landmark error (:mod:`dfmvr_lib.reconstruction.held_out`) on the first ``triplets`` synthetic
    test triplets, beside the true vertex error of the same reconstructions (the shape refined on the two other
    views): the network's inputs with the parser's masks, landmarks with the detector's error (NME 0.028). Returns
    the per-(triplet, held-out view, reconstruction) table or None when no trained run is available."""

    from dfmvr_lib.experiments import load_synthetic_test_set
    from dfmvr_lib.reconstruction.reconstructor import default_runs
    from dfmvr_lib.reconstruction.held_out import held_out_view_errors
    from dfmvr_lib.training import aligned_vertex_error_mm, make_batch, reconstruct
    from dfmvr_lib.training.landmark_noise import with_landmark_noise

    reconstructor = trained_reconstructor(profile, checkpoint, data_dir, "held-out")
    if reconstructor is None:
        return None
    config, model, camera = reconstructor.config, reconstructor.model, reconstructor.camera
    dataset_root = default_runs(config.profile, data_dir).dataset_root
    test = load_synthetic_test_set(dataset_root, model, split=split, limit=triplets)
    data = with_landmark_noise(test.network_data("parser", reconstructor.parser_run_dir),
                               config.training.landmark_noise_nme, seed=1)
    targets = make_batch(data, torch.arange(len(test)))
    with torch.no_grad():
        network = reconstruct(reconstructor.network, model, camera, targets.network_images,
                              targets.network_parse_maps).coefficients
    table = held_out_view_errors(model, camera, network, targets, config.losses, reconstructor.parser,
                                 refine_steps=refine_steps, keep_coefficients=True, settings=settings,
                                 starts=starts)
    truth = torch.stack(test.vertices)
    errors = []
    for _, row in table.iterrows():
        coefficients = row["coefficients"]
        with torch.no_grad():
            vertices = model.shape(coefficients.identity[row["sample"]:row["sample"] + 1],
                                   coefficients.expression[row["sample"]:row["sample"] + 1])
        errors.append(float(aligned_vertex_error_mm(vertices, truth[row["sample"]:row["sample"] + 1],
                                                    model.evaluation_region)[0]))
    table = table.drop(columns="coefficients").assign(vertex_error_mm=errors, run=reconstructor.run_dir.name,
                                                      sample_id=[test.sample_ids[i] for i in table["sample"]])
    return table


def accuracy_report(base: dict, rows: list[dict], summary: dict, per_sample: list[dict], description: str
                    ) -> list[str]:
    """Markdown lines of one accuracy run (its ``inputs`` named in the heading) and its rows appended to ``rows``."""
    import pandas as pd

    table = pd.DataFrame(per_sample).groupby("reconstruction", sort=False)[
        ["vertex_error_mm", "scan_rmse_mm"]].agg(["mean", "std"])
    common = {**base, "part": "accuracy", "inputs": summary["inputs"], "profile": summary["profile"],
              "image_size": summary["image_size"], "vertices": summary["vertices"], "triplets": summary["triplets"],
              "steps": summary["steps"]}
    seconds = summary["refine_seconds_all_triplets"]
    lines = [f"### {description[0].upper()}{description[1:]}", "",
             f"Run `{summary['run']}` ({summary['profile']} profile, {summary['image_size']} px), "
             f"first {summary['triplets']} test triplets of its synthetic benchmark, "
             f"{summary['steps']} refinement steps (all triplets refined together in {seconds:.1f} s). "
             f"Fitting loss {summary['fitting_loss_network']:.4f} (network) -> "
             f"{summary['fitting_loss_refined']:.4f} (refined).", "",
             "| reconstruction | inputs | vertex error mm (mean) | (std) | scan rmse mm (mean) | (std) |",
             "|---|---|---|---|---|---|"]
    label_of_inputs = "oracle" if summary["inputs"] == "oracle" else "parser masks, detector-noise landmarks"
    for label, values in table.iterrows():
        cells = [values[(measure, statistic)] for measure in ("vertex_error_mm", "scan_rmse_mm")
                 for statistic in ("mean", "std")]
        used = "none (no input used)" if label == "mean face" else label_of_inputs
        lines.append(f"| {label} | {used} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
        for measure in ("vertex_error_mm", "scan_rmse_mm"):
            rows.append({**common, "measure": f"{measure}_{label.replace(' ', '_')}",
                         "value": round(float(values[(measure, 'mean')]), 4), "unit": "mm"})
    for key in ("fitting_loss_network", "fitting_loss_refined"):
        rows.append({**common, "measure": key, "value": round(summary[key], 5), "unit": "weighted sum"})
    return lines + [""]


def settings_summary() -> str:
    """The default fitting objective in words, from :class:`RefinementSettings` itself (so the text cannot drift)."""
    from dfmvr_lib.reconstruction.fitting import RefinementSettings

    d = RefinementSettings()
    heavy = ("all of one weight" if d.heavy_landmark_weight == 1.0 else
             "the training's nose / inner-mouth weight" if d.heavy_landmark_weight is None else
             f"nose / inner mouth x{d.heavy_landmark_weight:g}")
    jaw = {(False, False): ", without the jaw line", (True, False): ", the jaw line in the side views only",
           (False, True): ", the jaw line in the frontal view only", (True, True): ""}
    parts = [f"defaults: photo x{d.photo_scale:g}, 2D landmarks {heavy} at {d.landmark_scale:g}x the training's "
             "L_2d weight" + jaw[(d.jaw_in_side_views, d.jaw_in_front_views)],
             f"the coefficient prior x{d.prior_scale:g} (expression x{d.expression_prior_scale:g} of that)",
             f"albedo within +-{d.albedo_bound:g} sd" if d.albedo_bound is not None else "albedo unbounded",
             "the mask loss through the parser off" if d.mask_weight == 0 else "the mask loss on"]
    return "; ".join(parts)


def held_out_report(args, base: dict, rows: list[dict]) -> list[str]:
    """The held-out-view part: real triplets of ``args.photos`` and synthetic test triplets; writes
    ``refine_held_out.csv`` beside ``args.csv`` (one row per triplet, held-out view and reconstruction), appends
    summary rows to ``rows`` and returns the Markdown lines."""
    import pandas as pd
    from scipy import stats

    from dfmvr_lib.provenance import write_table
    from dfmvr_lib.reconstruction.held_out import held_out_photo_errors, summarise_held_out
    from dfmvr_lib.reconstruction.photo_inputs import photo_triplets
    from dfmvr_lib.reconstruction.pipeline import photo_preparer

    steps = tuple(args.held_out_steps)
    lines = ["## Held-out-view landmark error (`dfmvr_lib.reconstruction.held_out`)", "",
             "Each view is held out in turn: the shape comes from the other two (the network sees all three, it was "
             "trained on full triplets; the refinement fits only the two), then only the held-out view's pose is "
             "fitted to its landmarks; the value is the mean distance of the 51 inner landmarks (iBUG 17-67), in "
             "pixels of a 224-px crop. Lower is better; the mean face uses no photo.", ""]
    frames = []
    if args.photos is not None and args.photos.is_dir():
        reconstructor = trained_reconstructor(args.profile, args.checkpoint, args.data_dir, "held-out (photos)")
        if reconstructor is not None:
            real = held_out_photo_errors(reconstructor, photo_triplets(args.photos), photo_preparer(reconstructor),
                                         refine_steps=steps, progress=True, starts=("network", "mean face"))
            frames.append(real.assign(source="real photos", run=reconstructor.run_dir.name))
            per_triplet = real.groupby(["triplet", "reconstruction"], sort=False)["held_out_px"].mean().unstack()
            lines += [f"### Real triplets ({args.photos.name}/, run `{reconstructor.run_dir.name}`, "
                      f"{reconstructor.image_size} px)", "",
                      "| triplet | " + " | ".join(per_triplet.columns) + " |",
                      "|---|" + "---:|" * len(per_triplet.columns)]
            for triplet, values in per_triplet.iterrows():
                lines.append(f"| {triplet} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
            summary = summarise_held_out(real)
            lines.append("| **mean** | " + " | ".join(f"**{v:.2f}**" for v in summary["held_out_px"]) + " |")
            lines.append("")
            for _, row in summary.iterrows():
                rows.append({**base, "part": "held_out_real", "profile": reconstructor.config.profile,
                             "image_size": reconstructor.image_size, "triplets": real["triplet"].nunique(),
                             "steps": max(steps), "measure": f"held_out_px_{row['reconstruction'].replace(' ', '_')}",
                             "value": round(float(row["held_out_px"]), 4), "unit": "px at 224"})
    synthetic = held_out_synthetic(args.profile, args.checkpoint, args.data_dir, args.held_out_triplets, steps)
    if synthetic is not None:
        frames.append(synthetic.assign(source="synthetic test split"))
        summary = synthetic.groupby("reconstruction", sort=False)[["held_out_px", "vertex_error_mm"]].mean()
        pearson = stats.pearsonr(synthetic["held_out_px"], synthetic["vertex_error_mm"])
        spearman = stats.spearmanr(synthetic["held_out_px"], synthetic["vertex_error_mm"])
        # do they move together: change of each measure from the mean face, per triplet and held-out view
        keyed = synthetic.set_index(["sample", "held_out_view", "reconstruction"])[["held_out_px", "vertex_error_mm"]]
        base_rows = keyed.xs("mean face", level="reconstruction")
        changes = (keyed.drop(index="mean face", level="reconstruction") - base_rows).dropna()
        change_r = stats.pearsonr(changes["held_out_px"], changes["vertex_error_mm"])
        lines += [f"### Synthetic test triplets (first {synthetic['sample'].nunique()}, parser masks, landmarks with "
                  "the detector's error NME 0.028), against the true vertex error", "",
                  "| reconstruction | held-out px | vertex error mm |", "|---|---:|---:|"]
        for name, values in summary.iterrows():
            lines.append(f"| {name} | {values['held_out_px']:.2f} | {values['vertex_error_mm']:.3f} |")
        lines += ["", f"Correlation over {len(synthetic)} (triplet, held-out view, reconstruction) rows: Pearson "
                  f"r = {pearson.statistic:.2f} (p = {pearson.pvalue:.1e}), Spearman rho = {spearman.statistic:.2f}. "
                  f"Changes from the mean face (network and refinements, per triplet and view): Pearson r = "
                  f"{change_r.statistic:.2f} (p = {change_r.pvalue:.1e}, {len(changes)} rows).", ""]
        for name, values in summary.iterrows():
            for measure in ("held_out_px", "vertex_error_mm"):
                rows.append({**base, "part": "held_out_synthetic", "profile": args.profile, "image_size": None,
                             "triplets": synthetic["sample"].nunique(), "steps": max(steps),
                             "measure": f"{measure}_{name.replace(' ', '_')}",
                             "value": round(float(values[measure]), 4),
                             "unit": "px at 224" if measure == "held_out_px" else "mm"})
        rows.append({**base, "part": "held_out_synthetic", "profile": args.profile, "image_size": None,
                     "triplets": synthetic["sample"].nunique(), "steps": max(steps),
                     "measure": "pearson_held_out_vs_vertex_error", "value": round(float(pearson.statistic), 4),
                     "unit": "r"})
    if frames:
        write_table(pd.concat(frames, ignore_index=True), args.csv.with_name("refine_held_out.csv"))
    return lines


ABLATIONS = {
    "fitting defaults": {},
    "+ mask loss (training weight 3)": {"mask_weight": None},
    "+ jaw landmarks in the frontal view": {"jaw_in_front_views": True},
    "+ jaw landmarks in every view": {"jaw_in_front_views": True, "jaw_in_side_views": True},
    "photo term off": {"photo_scale": 0.0},
    "photo term x 0.25": {"photo_scale": 0.25},
    "prior x 10 (the training's weight)": {"prior_scale": 10.0},
    "prior x 0.3": {"prior_scale": 0.3},
    "expression prior x 3": {"expression_prior_scale": 3.0},
}
"""Variants of the refinement, each a change of :class:`RefinementSettings` from its defaults (a ``*_scale`` value
multiplies the default's)."""


def ablation_report(args, base: dict, rows: list[dict]) -> list[str]:
    """Each of :data:`ABLATIONS` on the real triplets of ``args.photos`` (held-out-view error) and on synthetic
    validation triplets (held-out-view and true vertex error), refinement from the network's prediction; writes
    ``refine_ablation.csv`` beside ``args.csv`` and returns the Markdown lines."""
    import dataclasses

    import pandas as pd

    from dfmvr_lib.provenance import write_table
    from dfmvr_lib.reconstruction.fitting import RefinementSettings
    from dfmvr_lib.reconstruction.held_out import held_out_photo_errors
    from dfmvr_lib.reconstruction.photo_inputs import photo_triplets
    from dfmvr_lib.reconstruction.pipeline import photo_preparer

    steps = tuple(args.held_out_steps)
    defaults = RefinementSettings()
    reconstructor = None
    if args.photos is not None and args.photos.is_dir():
        reconstructor = trained_reconstructor(args.profile, args.checkpoint, args.data_dir, "ablation (photos)")
    frames = []
    for name, change in ABLATIONS.items():
        settings = dataclasses.replace(defaults, **{key: (value * getattr(defaults, key) if key.endswith("_scale")
                                                          else value) for key, value in change.items()})
        if reconstructor is not None:
            real = held_out_photo_errors(reconstructor, photo_triplets(args.photos), photo_preparer(reconstructor),
                                         refine_steps=steps, settings=settings)
            frames.append(real.assign(variant=name, source="real photos"))
        synthetic = held_out_synthetic(args.profile, args.checkpoint, args.data_dir, args.held_out_triplets, steps,
                                       split="validation", settings=settings, starts=("network",))
        if synthetic is not None:
            frames.append(synthetic.assign(variant=name, source="synthetic validation split"))
        print(f"ablation: {name} done", flush=True)
    if not frames:
        return []
    table = pd.concat(frames, ignore_index=True)
    write_table(table, args.csv.with_name("refine_ablation.csv"))
    refined = table[table["reconstruction"].str.startswith("refined")]
    columns = []
    real_rows = refined[refined["source"] == "real photos"]
    synthetic_rows = refined[refined["source"] == "synthetic validation split"]
    summary = {}
    for label, frame, measure in (("real held-out px", real_rows, "held_out_px"),
                                  ("synthetic held-out px", synthetic_rows, "held_out_px"),
                                  ("synthetic vertex mm", synthetic_rows, "vertex_error_mm")):
        if len(frame):
            pivot = frame.groupby(["variant", "steps"], sort=False)[measure].mean().unstack()
            for step in pivot.columns:
                summary[f"{label}, {step} steps"] = pivot[step]
                columns.append(f"{label}, {step} steps")
    summary = pd.DataFrame(summary).reindex(list(ABLATIONS))
    references = table[table["reconstruction"].isin(["mean face", "network"])]
    reference_text = "; ".join(
        f"{source}: " + ", ".join(f"{rec} {value:.3f}" for rec, value in
                                 frame.groupby("reconstruction", sort=False)["held_out_px"].mean().items())
        for source, frame in references[references["variant"] == "fitting defaults"].groupby("source", sort=False))
    lines = ["### Ablation of the fitting objective (refinement from the network's prediction)", "",
             "Held-out-view error (px at 224) on the real triplets and on the first "
             f"{args.held_out_triplets} synthetic "
             "validation triplets, and the true vertex error (mm) of the synthetic ones; each row changes one setting "
             "of `RefinementSettings` from its defaults (`dfmvr_lib/reconstruction/fitting.py`). References, held-out "
             f"px: {reference_text}.", "",
             "| variant | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, values in summary.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in columns) + " |")
        for column in columns:
            rows.append({**base, "part": "ablation", "profile": args.profile, "image_size": None, "triplets": None,
                         "steps": None, "measure": f"{name}: {column}", "value": round(float(values[column]), 4),
                         "unit": "mm" if "mm" in column else "px at 224"})
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_REFINE_STEPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--triplets", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", default="cpu", help="whose trained run the accuracy part uses")
    parser.add_argument("--checkpoint", type=Path, help="a finished reconstruction run (default: the profile's)")
    parser.add_argument("--data-dir", type=Path, help="where the notebooks keep data and runs (default: data/)")
    parser.add_argument("--parts", nargs="+", choices=("timing", "accuracy", "held_out", "ablation"),
                        default=["timing", "accuracy", "held_out", "ablation"])
    parser.add_argument("--held-out-triplets", type=int, default=8,
                        help="synthetic test triplets of the held-out-view part")
    parser.add_argument("--held-out-steps", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "fixtures" / "real_multiview",
                        help="a folder of real triplets for the held-out-view part (skipped when absent)")
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
        for inputs, description in ACCURACY_INPUTS.items():
            outcome = refinement_accuracy(args.profile, args.checkpoint, args.data_dir, args.triplets, args.steps,
                                          inputs)
            if outcome is not None:
                accuracy_lines += accuracy_report(base, rows, *outcome, description)
    held_out_lines = []
    if "held_out" in args.parts:
        held_out_lines = held_out_report(args, base, rows)
    if "ablation" in args.parts:
        held_out_lines += ablation_report(args, base, rows)
    load_after = round(os.getloadavg()[0], 1)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.csv)
    lines = [f"# Refinement benchmark ({base['date']}, commit {base['git_commit']}, {args.threads} threads, "
             f"torch {torch.__version__})", "",
             f"Multi-view test-time refinement (`dfmvr reconstruct --refine`, "
             f"`dfmvr_lib.reconstruction.fitting.refine_reconstruction`): Adam on the coefficients and per-view poses "
             f"with the losses of `RefinementSettings` ({settings_summary()}). "
             f"1-minute load average {load_before} before and {load_after} after the runs (2 cpu; other processes "
             f"on the machine inflate the timings). Produced by `benchmarks/bench_refine.py`.", ""]
    if timing_lines:
        lines += [f"## Speed: one triplet, {args.steps} steps (median of {args.repeats} after a warm-up; random "
                  "parser weights; target < 20 s at 224 px)", "", *timing_lines, ""]
    if accuracy_lines:
        lines += ["## Error before and after refinement (synthetic test split)", "", *accuracy_lines, ""]
    if held_out_lines:
        lines += held_out_lines
    text = "\n".join(lines)
    with atomic_path(args.csv.with_suffix(".md")) as temporary:
        temporary.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
