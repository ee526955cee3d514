"""Learning-efficiency study of the cpu profile: validation error against training minutes on 2 CPU cores.

Each variant is the ``cpu`` profile with a few settings changed (image size, backbone and regressor widths, batch
size, learning rate and warm-up, normalisation, loss balance, data size, pose-head start, the paper's inputs
against oracle inputs). It trains DF-MVR (or DF-MVR w/o L_3d, for the variants that study the runs without 3D
landmarks) for ``--steps`` steps with a validation pass every ``--every`` steps on the first 80 validation
triplets: mean vertex error after a similarity alignment (:func:`dfmvr_lib.training.vertex_error_table`, with the
batch-norm statistics recomputed over the last training batches, :mod:`dfmvr_lib.training.batch_norm`),
against the two lines that frame it, the mean face (every network's start) and the ceiling (the least-squares fit
of the model's identity and expression to each ground-truth mesh, :mod:`dfmvr_lib.evaluation.ceiling`).
``gap_closed`` = (mean face - network) / (mean face - ceiling) makes variants with other validation sets (another
data size) comparable. Each run's learning rate follows its own cosine schedule to ``--steps``, so a curve's
middle is a network still at a high learning rate (it is not what a shorter run would reach); the last point of
each curve is the comparable one.

A plain run trains :data:`DEFAULT_VARIANTS` (the profile and the changes it was chosen over, about 35 minutes);
the study the previous profile (300 x 4 subjects, L_3d weight 1) was chosen from is kept in
``results/benchmarks/learning_previous_profile.md`` / ``.csv``. The committed ``learning.*`` holds rows of several
runs of the study, each with its commit (``--keep-others``): the first ones when the profile trained 4 triplets per
step (the profile took their "batch 8"), then "spatial pool 8" (the profile took it), then the current profile's
"cpu profile" and "w/o L_3d" rows (warm-up over 100 steps, mask loss from half-way; "spatial pool 8" is the same
profile without those two).

Timing: two variants train side by side, one torch / numba thread each, as the cpu profile trains the tables
(``experiments.parallel_trainings = 2``); ``minutes`` is a run's own training wall-clock without its validation
passes. Precision: fp32 everywhere (``DFMVR_PRECISION=fp32`` is set here), the precision of CPUs without native bf16.

Runs are keyed run directories under ``data/runs/learning/`` (a finished variant is reused; the datasets and parsers
a variant needs are generated / pretrained once under ``data/learning/``).

Usage: ``.venv/bin/python benchmarks/bench_learning.py [--steps 800] [--every 100] [--only NAME ...]``.
Writes ``results/benchmarks/learning.csv``, ``learning.md`` and ``learning.png``.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import multiprocessing
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DFMVR_PRECISION", "fp32")

import numba  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from dfmvr_lib import workbook  # noqa: E402
from dfmvr_lib.config import get_config  # noqa: E402
from dfmvr_lib.data.synthetic import generate_benchmark  # noqa: E402
from dfmvr_lib.evaluation.ceiling import best_fit_shapes  # noqa: E402
from dfmvr_lib.experiments.methods import METHODS  # noqa: E402
from dfmvr_lib.face_model.factory import load_face_model  # noqa: E402
from dfmvr_lib.parsing import pretrain_parser  # noqa: E402
from dfmvr_lib.plots import save_figure  # noqa: E402
from dfmvr_lib.precision import precision_note  # noqa: E402
from dfmvr_lib.provenance import atomic_path, git_commit, write_table  # noqa: E402
from dfmvr_lib.runs import MAIN_PRESET, VALIDATION, run_columns, runs_dir  # noqa: E402
from dfmvr_lib.training import aligned_vertex_error_mm, synthetic_meshes, train_reconstruction  # noqa: E402
from dfmvr_lib.training.figures import learning_figure  # noqa: E402

# name -> (what it changes, overrides of the cpu profile)
NO_L3D = {"losses.use_landmark_3d": False}
PREVIOUS_DATA = {"data.train_subjects": 300, "data.samples_per_subject": 4, "data.validation_subjects": 20,
                 "data.test_subjects": 40}
VARIANTS: dict[str, tuple[str, dict]] = {
    "cpu profile": ("the chosen cpu profile (DF-MVR)", {}),
    "L_3d weight 1 (paper)": ("3D landmark weight 1, the paper's (the profile: 10)", {"losses.landmark_3d": 1.0}),
    "data 300 x 4": ("300 train subjects with four samples each (the previous profile's data)", PREVIOUS_DATA),
    "w/o L_3d": ("DF-MVR w/o L_3d", NO_L3D),
    "batch 4": ("4 triplets per step (the profile before this study)", {"training.batch_size": 4}),
    "batch 8": ("8 triplets per step (the profile's batch since this study)", {"training.batch_size": 8}),
    "oracle inputs": ("ground-truth masks and exact landmarks (oracle)",
                      {"training.input_masks": "ground_truth", "training.landmark_noise_nme": 0.0}),
    "regularisation 3e-4 (paper)": ("coefficient prior weight 3e-4, the paper's", {"losses.regularisation": 3e-4}),
    "w/o L_3d, regularisation 1e-2": ("DF-MVR w/o L_3d, prior weight 1e-2", {**NO_L3D, "losses.regularisation": 1e-2}),
    "frontal start": ("pose heads start frontal (the paper)", {"network.pose_start": "frontal"}),
    "112 px": ("image size 112", {"image_size": 112}),
    "widths 16 / 0.25": ("Tri-UNet base width 16, regressor width 0.25", {"network.base_width": 16,
                                                                          "network.regressor_width": 0.25}),
    "lr 3e-3 + warm-up": ("learning rate 3e-3 after 50 warm-up steps",
                          {"training.learning_rate": 3e-3, "training.warmup_steps": 50}),
    "group norm": ("group norm instead of batch norm", {"network.normalization": "group"}),
    "spatial pool 8": ("the regressor's feature also holds its input map pooled to 8 x 8",
                       {"network.spatial_pool": 8}),
    "L_3d weight 30": ("3D landmark weight 30 (the profile: 10)", {"losses.landmark_3d": 30.0}),
    "spatial pool 16": ("the regressor's feature holds its input map pooled to 16 x 16 (the profile: 8 x 8)",
                        {"network.spatial_pool": 16}),
    "batch 16": ("16 triplets per step (the profile: 8)", {"training.batch_size": 16}),
    "L_2d weight 1": ("2D landmark weight 1 (the profile and the paper: 0.02)", {"losses.landmark_2d": 1.0}),
    "no warm-up": ("no learning-rate warm-up (the profile: 100 steps)", {"training.warmup_steps": 0}),
    "mask from the start": ("the mask loss from the first step (the profile: from half-way)",
                            {"losses.mask_start_fraction": 0.0}),
    "lr 3e-4": ("learning rate 3e-4 (the profile: 1e-3)", {"training.learning_rate": 3e-4}),
    "w/o L_3d, no warm-up, mask from the start": ("DF-MVR w/o L_3d, no warm-up, the mask loss from the first step",
                                                  {**NO_L3D, "training.warmup_steps": 0,
                                                   "losses.mask_start_fraction": 0.0}),
    "w/o L_3d, L_2d weight 0.2": ("DF-MVR w/o L_3d, 2D landmark weight 0.2 (the paper: 0.02)",
                                  {**NO_L3D, "losses.landmark_2d": 0.2}),
    "w/o L_3d, lr 3e-4": ("DF-MVR w/o L_3d, learning rate 3e-4 (the profile: 1e-3)",
                          {**NO_L3D, "training.learning_rate": 3e-4}),
    "w/o L_3d, oracle inputs": ("DF-MVR w/o L_3d, ground-truth masks and exact landmarks (oracle)",
                                {**NO_L3D, "training.input_masks": "ground_truth", "training.landmark_noise_nme": 0.0}),
    "Deng et al.": ("the Deng et al. baseline of the tables (single-image regressor, no L_3d)", METHODS["deng"]),
    "Deng et al., no warm-up": ("the Deng et al. baseline without the learning-rate warm-up",
                                {**METHODS["deng"], "training.warmup_steps": 0}),
    "w/o L_3d, spatial pool 8": ("DF-MVR w/o L_3d, input map pooled to 8 x 8",
                                 {**NO_L3D, "network.spatial_pool": 8}),
    "w/o L_3d, spatial pool 8, regularisation 1e-2": ("DF-MVR w/o L_3d, input map pooled to 8 x 8, prior weight 1e-2",
                                                      {**NO_L3D, "network.spatial_pool": 8,
                                                       "losses.regularisation": 1e-2}),
    "w/o L_3d, spatial pool 8, regularisation 3e-2": ("DF-MVR w/o L_3d, input map pooled to 8 x 8, prior weight 3e-2",
                                                      {**NO_L3D, "network.spatial_pool": 8,
                                                       "losses.regularisation": 3e-2}),
}
DEFAULT_VARIANTS = ("cpu profile", "L_3d weight 1 (paper)", "data 300 x 4", "w/o L_3d", "batch 4", "oracle inputs")
"""What a plain run trains (about 35 minutes on 2 cores); the others with ``--only``."""


VALIDATION_TRIPLETS = 80


def dataset_and_parser(config, data_dir: Path):
    """The pixelface-like benchmark and the parser run a variant's config needs. A variant with the profile's
    benchmark settings (data, face model, camera, image size, parser) uses the main job's benchmark and parser
    (``data/synthetic_cpu_pixelface-like``, ``data/runs/parser``: made by notebooks 01-02, or here if missing);
    the others get theirs under ``data_dir`` (made once per setting)."""
    profile = get_config("cpu")
    shared = ("data", "face_model", "camera", "parser")
    if config.hash(*shared) == profile.hash(*shared) and config.image_size == profile.image_size:
        return (workbook.benchmark(config, ROOT / "data", progress=False),
                workbook.parser_run(config, ROOT / "data", progress=False).run_dir)
    data = config.data
    name = (f"synthetic_{config.image_size}px_{data.train_subjects}x{data.samples_per_subject}"
            f"_v{data.validation_subjects}_t{data.test_subjects}")
    root = generate_benchmark(data_dir / name, config, MAIN_PRESET, progress=False)
    parser = pretrain_parser(config, root, runs_root=data_dir / "parser", progress=False)
    return root, parser.run_dir


def train_variant(job: tuple) -> str:
    """Train one variant (worker process, one thread); returns its run directory."""
    name, overrides, steps, every, data_dir, runs_root = job
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    config = study_config(overrides, steps, every)
    root, parser = dataset_and_parser(config, Path(data_dir))
    run = train_reconstruction(config, root, parser, runs_root=runs_root, progress=False, description=name)
    return str(run.run_dir)


def study_config(overrides: dict, steps: int, every: int):
    return get_config("cpu", {**overrides, "training.steps": steps, "training.validate_every": every,
                              "training.validation_samples": VALIDATION_TRIPLETS,
                              "training.checkpoint_every": every})


@functools.lru_cache(maxsize=None)
def references(root: Path, face_model) -> dict:
    """Mean-face and ceiling vertex errors on the first :data:`VALIDATION_TRIPLETS` validation triplets of the
    dataset at ``root`` (computed once per dataset: most variants share one)."""
    model = load_face_model(face_model)
    meshes = torch.stack(synthetic_meshes(root, "validation")[:VALIDATION_TRIPLETS]).to(model.mean_shape)
    region = model.evaluation_region
    fit = best_fit_shapes(model, meshes)
    return {"mean_face_mm": float(aligned_vertex_error_mm(model.mean_shape.expand_as(meshes), meshes, region).mean()),
            "ceiling_mm": float(aligned_vertex_error_mm(fit.vertices, meshes, region).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--only", nargs="*", help=f"variant names (default {list(DEFAULT_VARIANTS)})")
    parser.add_argument("--data-dir", default=str(ROOT / "data" / "learning"))
    parser.add_argument("--output", default=str(ROOT / "results" / "benchmarks"))
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the rows of the variants not run from the existing learning.csv (each row says "
                             "its commit and steps)")
    args = parser.parse_args()

    names = args.only or list(DEFAULT_VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    data_dir, runs_root = Path(args.data_dir), runs_dir(ROOT / "data", "learning")
    for name in names:                              # datasets and parsers first, in this process
        dataset_and_parser(study_config(VARIANTS[name][1], args.steps, args.every), data_dir)
    jobs = [(name, VARIANTS[name][1], args.steps, args.every, str(data_dir), str(runs_root)) for name in names]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        run_dirs = dict(zip(names, pool.map(train_variant, jobs, chunksize=1)))

    frames = []
    for name in names:
        config = study_config(VARIANTS[name][1], args.steps, args.every)
        validation = pd.read_csv(Path(run_dirs[name]) / VALIDATION)
        refs = references(dataset_and_parser(config, data_dir)[0], config.face_model)
        frame = pd.DataFrame({"variant": name, "change": VARIANTS[name][0], "step": validation["step"],
                              "minutes": validation["seconds"] / 60.0, "network_mm": validation["network_mm"],
                              **refs, **run_columns([run_dirs[name]])})
        frame["gap_closed"] = (frame["mean_face_mm"] - frame["network_mm"]) / (frame["mean_face_mm"]
                                                                               - frame["ceiling_mm"])
        frames.append(frame)
    curves = pd.concat(frames, ignore_index=True)
    curves["steps"] = args.steps
    output = Path(args.output)
    previous = output / "learning.csv"
    if args.keep_others and previous.is_file():          # the other variants' rows as they were measured
        kept = pd.read_csv(previous)
        if "steps" not in kept.columns:
            kept["steps"] = kept.groupby("variant")["step"].transform("max")
        curves = pd.concat([kept[~kept["variant"].isin(names)], curves], ignore_index=True)
    write_table(curves, output / "learning.csv")
    save_figure(learning_figure(curves, validation_triplets=VALIDATION_TRIPLETS), output / "learning.png")
    last = curves.groupby("variant", sort=False).tail(1)
    lines = [f"# Learning efficiency of the cpu profile ({datetime.date.today()}, commit {git_commit()}, "
             f"{precision_note('auto')}, validation every {args.every} steps)", "",
             f"Validation vertex error (first {VALIDATION_TRIPLETS} pixelface-like validation triplets) after the "
             "last step of each "
             "variant; `minutes` = its training wall-clock (1 thread, two runs side by side on 2 cores); `commit` = "
             "where the variant was trained (rows kept from earlier runs of the study say theirs). "
             "Curves: `learning.png`, `learning.csv`. Produced by `benchmarks/bench_learning.py`.", "",
             "| variant | change | steps | minutes | network mm | mean face mm | ceiling mm | gap closed | commit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for _, row in last.iterrows():
        lines.append(f"| {row['variant']} | {row['change']} | {int(row['steps'])} | {row['minutes']:.1f} | "
                     f"{row['network_mm']:.3f} | {row['mean_face_mm']:.3f} | {row['ceiling_mm']:.3f} | "
                     f"{row['gap_closed']:.3f} | {row['trained_at_commit']} |")
    with atomic_path(output / "learning.md") as temporary:
        Path(temporary).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
