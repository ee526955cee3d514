"""Training of the DF-MVR reconstruction network with a resumable, reusable run directory.

:func:`train_reconstruction` trains :func:`dfmvr_lib.networks.build_network` for ``config`` on a synthetic benchmark
(or any preloaded :class:`~dfmvr_lib.training.data.TripletTensors`): Adam, learning rate constant for
``constant_fraction`` of the steps then cosine-annealed to ``final_learning_rate``, the losses of
:mod:`dfmvr_lib.losses` with the frozen face parser in the mask loss.

Run directory ``<runs_root>/<key>/`` (default ``<repository>/runs/reconstruction``), ``key`` = hash of the
configuration sections the run depends on, the dataset's generator settings and the parser run:

- ``run.json``: what the key was computed from;
- ``checkpoint.pt``: model, optimiser, scheduler, step, metric rows and RNG state, written atomically every
  ``checkpoint_every`` steps; an interrupted run (even ``kill -9``) resumes from it;
- ``metrics.csv``: per step ``step, total, photo, mask, landmark_2d, landmark_3d, regularisation, reflectance,
  lighting, consistency, cross_view, lr, seconds``;
- ``validation.csv``: ``step, network_mm, mean_face_mm, ...`` of the validation passes;
- ``final.pt`` (model state + config) and ``done.json`` at the end (steps, training seconds and the git commit(s)
  that trained the run, :func:`dfmvr_lib.runs.done_record`); a finished run is reused as is.

Batches, augmentation and view dropping are drawn from generators seeded by (seed, step) and the data position is
the step, so a resumed run takes the same batches as an uninterrupted one.

Several processes (torchrun, :mod:`dfmvr_lib.distributed`): each step's global batch (``training.batch_size``,
divisible by the world size) is made as in one process and rank r trains on its chunk r; the network is wrapped in
DistributedDataParallel (SyncBatchNorm on CUDA); losses logged are the mean over the ranks; rank 0 alone writes the
run files, the same files in the same run folder as a one-process run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..camera import PerspectiveCamera
from ..config import WorkbookConfig
from ..distributed import (all_finite, barrier, local_slice, mean_over_ranks, rank_and_world, sync_batch_norm,
                           wrap_model)
from ..face_model.factory import load_face_model
from ..precision import precision_note, resolve_precision
from ..provenance import REPOSITORY_ROOT
from ..runs import (done_record, read_dataset_settings, run_hash, save_torch, settle_thread_pools, training_commits,
                    write_csv, write_json)
from .data import (TrainingBatch, TripletTensors, batch_indices, make_batch, step_generator, synthetic_meshes,
                   synthetic_triplets)
from .forward import batch_loss, reconstruct
from .input_masks import with_input_masks
from .landmark_noise import with_landmark_noise
from .validation import summarise_vertex_errors, vertex_error_table

CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"
METRICS = "metrics.csv"
VALIDATION = "validation.csv"
DONE = "done.json"
RUN_INFO = "run.json"
LOSS_COLUMNS = ("total", "photo", "mask", "landmark_2d", "landmark_3d", "regularisation", "reflectance", "lighting",
                "consistency", "cross_view")
METRIC_COLUMNS = ("step",) + LOSS_COLUMNS + ("lr", "seconds")


def default_runs_root() -> Path:
    return REPOSITORY_ROOT / "runs" / "reconstruction"


@dataclass
class TrainingRun:
    """A reconstruction training run: directory, trained network (eval mode), config, per-step metrics, validation
    passes, whether it was reused, the step it resumed from (0 = fresh), the seconds of this call, and whether it
    finished (False after ``stop_after``)."""

    run_dir: Path
    network: torch.nn.Module
    config: WorkbookConfig
    metrics: pd.DataFrame
    validation: pd.DataFrame
    reused: bool
    resumed_from: int
    seconds: float
    finished: bool = True


def run_key(config: WorkbookConfig, dataset_root: str | os.PathLike, parser_run_dir: str | os.PathLike | None,
            device_type: str = "cpu") -> dict:
    """What identifies a run: the config sections it depends on, the dataset, the parser run, and the precision
    the network trains in on ``device_type`` (:func:`dfmvr_lib.precision.resolve_precision`)."""
    settings = read_dataset_settings(dataset_root)
    return {
        "precision": resolve_precision(config.training.precision, device_type),
        "image_size": config.image_size, "seed": config.seed,
        **{name: dataclasses.asdict(getattr(config, name))
           for name in ("face_model", "camera", "network", "losses", "training")},
        "dataset": settings if settings is not None else str(Path(dataset_root).resolve()),
        "parser_run": Path(parser_run_dir).name if parser_run_dir else None,
    }


def rig_view_yaws(dataset_root: str | os.PathLike) -> tuple[float, float, float] | None:
    """The nominal camera yaws (degrees, views A, B, C) of a dataset's capture rig, from a synthetic benchmark's
    generator settings: (-left, 0, +side) when its side views are at fixed yaws; None when the dataset does not
    record a fixed rig."""
    settings = read_dataset_settings(dataset_root)
    if not isinstance(settings, dict) or settings.get("yaw_mode") != "fixed":
        return None
    side = float(settings["side_yaw_degrees"])
    left_mode = settings.get("left_yaw_mode", "mirror")
    if left_mode == "mirror":
        return (-side, 0.0, side)
    if left_mode == "fixed":
        return (-float(settings["left_yaw_degrees"]), 0.0, side)
    return None


def resolve_pose_start(config: WorkbookConfig, dataset_root: str | os.PathLike) -> WorkbookConfig:
    """``config`` with ``network.initial_view_yaws_degrees`` filled from the dataset's rig when
    ``network.pose_start == "rig"`` (multi-view networks only; unchanged when the dataset records no fixed rig)."""
    network = config.network
    if network.pose_start not in ("frontal", "rig"):
        raise ValueError(f"network.pose_start must be 'frontal' or 'rig', got {network.pose_start!r}")
    if network.pose_start != "rig" or network.backbone == "single_image" or network.initial_view_yaws_degrees:
        return config
    yaws = rig_view_yaws(dataset_root)
    if yaws is None:
        return config
    return dataclasses.replace(config, network=dataclasses.replace(network, initial_view_yaws_degrees=yaws))


def needs_parser(config: WorkbookConfig) -> bool:
    """Whether training ``config`` needs the face parser: for the mask loss, or for the input masks (the paper's
    inputs, ``training.input_masks == "parser"``)."""
    return (config.losses.use_mask and config.losses.mask > 0) or config.training.input_masks == "parser"


def learning_rate_factor(training, step: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): a linear warm-up from 1 / ``warmup_steps`` to 1
    over the first ``warmup_steps``, 1 until ``constant_fraction`` of the steps, then a cosine from 1 down to
    ``final_learning_rate / learning_rate`` at the last step."""
    if step < training.warmup_steps:
        return (step + 1) / training.warmup_steps
    constant = max(int(round(training.constant_fraction * training.steps)), training.warmup_steps)
    floor = training.final_learning_rate / training.learning_rate
    if step < constant:
        return 1.0
    progress = (step - constant) / max(1, training.steps - constant - 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def load_trained_network(run_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """``(network in eval mode, config)`` of a finished run directory."""
    from ..networks import build_network

    state = torch.load(Path(run_dir) / FINAL, map_location=device, weights_only=True)
    config = WorkbookConfig.from_dict(state["config"])
    network = build_network(config).to(device)
    network.load_state_dict(state["model"])
    return network.eval(), config


def _chunk(batch: TrainingBatch, part: slice, device) -> TrainingBatch:
    """Samples ``part`` of ``batch`` on ``device``."""
    return TrainingBatch(**{field.name: None if getattr(batch, field.name) is None
                            else getattr(batch, field.name)[part].to(device)
                            for field in dataclasses.fields(TrainingBatch)})


def _load_parser(parser_run_dir: str | os.PathLike | None, device) -> torch.nn.Module | None:
    if parser_run_dir is None:
        return None
    from ..parsing import frozen_parser, load_run_model

    return frozen_parser(load_run_model(parser_run_dir).to(device))


def train_reconstruction(config: WorkbookConfig, dataset_root: str | os.PathLike,
                         parser_run_dir: str | os.PathLike | None, *, run_dir: str | os.PathLike | None = None,
                         runs_root: str | os.PathLike | None = None, progress: bool = True,
                         stop_after: int | None = None, train_data: TripletTensors | None = None,
                         validation_split: str | None = "validation", device: str | torch.device = "cpu",
                         description: str = "training") -> TrainingRun:
    """Train (or reuse / resume) the reconstruction network for ``config`` on the benchmark at ``dataset_root``.

    Args:
        config: the workbook config (network, losses, training, face model, camera, image size, seed).
        dataset_root: a generated synthetic benchmark (train split for training, ``validation_split`` for the
            validation passes when its ground-truth meshes exist).
        parser_run_dir: a finished parser run (:func:`dfmvr_lib.parsing.pretrain_parser`) for the mask loss;
            None trains without the mask loss.
        run_dir: explicit run directory; default ``<runs_root>/<hash>/``.
        runs_root: parent of the hashed run directories (default ``<repository>/runs/reconstruction``).
        progress: tqdm bar with the loss terms.
        stop_after: stop after this many steps of this call without finishing (what the last checkpoint saved is
            what survives; simulates an interruption).
        train_data: preloaded training triplets (default: the benchmark's train split).
        validation_split: split for validation passes, or None.
        device: training device.
        description: label of the progress bar.
    """
    from tqdm.auto import tqdm

    from ..networks import build_network

    training = config.training
    settle_thread_pools()       # before anything runs: the same threads for every step (resume = uninterrupted)
    if needs_parser(config) and parser_run_dir is None:
        raise ValueError("train_reconstruction: the mask loss (losses.use_mask) or the parser's input masks "
                         "(training.input_masks='parser') need a finished parser run; pass parser_run_dir, or set "
                         "losses.use_mask=False and training.input_masks='ground_truth' (an oracle)")
    key = run_key(config, dataset_root, parser_run_dir, torch.device(device).type)
    if run_dir is None:
        run_dir = (Path(runs_root) if runs_root is not None else default_runs_root()) / run_hash(key)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / DONE).is_file() and (run_dir / FINAL).is_file():
        network, saved_config = load_trained_network(run_dir, device)
        read = lambda name: pd.read_csv(run_dir / name) if (run_dir / name).is_file() else pd.DataFrame()  # noqa
        return TrainingRun(run_dir, network, saved_config, read(METRICS), read(VALIDATION), reused=True,
                           resumed_from=training.steps, seconds=0.0)
    rank, world = rank_and_world()
    part = local_slice(training.batch_size) if world > 1 else None
    main = rank == 0
    if main:
        write_json(key, run_dir / RUN_INFO)

    precision = key["precision"]
    config = resolve_pose_start(config, dataset_root)
    if progress and main:
        print(f"{description}: {precision_note(training.precision, torch.device(device).type)}")
    torch.manual_seed(config.seed)
    model = load_face_model(config.face_model).to(device)
    camera = PerspectiveCamera.from_config(config)
    network = build_network(config).to(device)
    if training.channels_last:
        network = network.to(memory_format=torch.channels_last)
    network = sync_batch_norm(network, device)
    parser = _load_parser(parser_run_dir, device)
    optimiser = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: learning_rate_factor(training, step))
    start, rows, validation_rows, seconds_before, state = 0, [], [], 0.0, None
    if (run_dir / CHECKPOINT).is_file():
        state = torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=True)
        network.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, rows, validation_rows = state["step"], state["metrics"], state["validation"]
        seconds_before = rows[-1]["seconds"] if rows else 0.0
    commits = training_commits(state.get("git_commits") if state else None, resumed=state is not None)
    trained = wrap_model(network, device)       # DistributedDataParallel around the network on several processes

    data = train_data if train_data is not None else synthetic_triplets(dataset_root, "train", progress)
    data = with_input_masks(data, training.input_masks, dataset_root, "train", parser_run_dir, progress)
    data = with_landmark_noise(data, training.landmark_noise_nme)
    validation_data = meshes = None
    if validation_split is not None:
        try:
            meshes = synthetic_meshes(dataset_root, validation_split)
            validation_data = synthetic_triplets(dataset_root, validation_split, progress)
        except (FileNotFoundError, ValueError, KeyError):
            validation_data = meshes = None
        if validation_data is not None:
            validation_data = with_input_masks(validation_data, training.input_masks, dataset_root,
                                               validation_split, parser_run_dir, progress)

    paused = [0.0]          # seconds of this call spent in validation passes (not counted as training time)

    def train_seconds() -> float:
        return seconds_before + time.perf_counter() - began - paused[0]

    def validate(step: int) -> None:
        if validation_data is None or not main:
            return
        started = time.perf_counter()
        table = vertex_error_table(network, model, camera, validation_data, meshes, batch_size=training.batch_size,
                                   precision=precision, limit=training.validation_samples)
        took = time.perf_counter() - started
        paused[0] += took
        validation_rows.append({"step": step, "seconds": train_seconds(), "validation_seconds": took,
                                **summarise_vertex_errors(table)})

    def checkpoint(step: int) -> None:
        if not main:
            barrier()
            return
        save_torch({"model": network.state_dict(), "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "step": step, "metrics": rows,
                    "validation": validation_rows, "rng": torch.get_rng_state(), "git_commits": commits},
                   run_dir / CHECKPOINT)
        write_csv(rows, run_dir / METRICS, METRIC_COLUMNS)
        if validation_rows:
            write_csv(validation_rows, run_dir / VALIDATION)
        barrier()

    mask_start = int(round(config.losses.mask_start_fraction * training.steps))
    network.train()
    began = time.perf_counter()
    bar = tqdm(range(start, training.steps), initial=start, total=training.steps, desc=description,
               disable=not (progress and main))
    done_here = 0
    for step in bar:
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            return TrainingRun(run_dir, network.eval(), config, pd.DataFrame(rows), pd.DataFrame(validation_rows),
                               reused=False, resumed_from=start, seconds=time.perf_counter() - began, finished=False)
        generator = step_generator(config.seed, step)
        indices = batch_indices(len(data), training.batch_size, step, config.seed)
        if part is None:
            batch = make_batch(data, indices, generator, colour_augment=training.colour_augment,
                               single_view_mode=training.single_view_mode, device=device)
        else:       # the global batch with its draws as in one process, then this rank's chunk
            batch = _chunk(make_batch(data, indices, generator, colour_augment=training.colour_augment,
                                      single_view_mode=training.single_view_mode), part, device)
        lr = optimiser.param_groups[0]["lr"]
        prediction = reconstruct(trained, model, camera, batch.network_images, batch.network_parse_maps,
                                 precision=precision)
        terms = batch_loss(config.losses, prediction, batch, model, parser, mask_active=step >= mask_start,
                           camera=camera)
        if not all_finite(terms.total):
            raise FloatingPointError(f"{description}: non-finite loss at step {step + 1}: {terms.values()}")
        optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        optimiser.step()
        scheduler.step()
        done_here += 1
        values = mean_over_ranks(terms.values())
        rows.append({"step": step + 1, **values, "lr": lr, "seconds": train_seconds()})
        bar.set_postfix({name: f"{values[name]:.3g}" for name in ("total", "photo", "mask", "landmark_2d",
                                                                   "landmark_3d")})
        finished_step = step + 1
        if training.validate_every and finished_step % training.validate_every == 0 and finished_step < training.steps:
            validate(finished_step)
        if finished_step % training.checkpoint_every == 0 or finished_step == training.steps:
            if finished_step == training.steps:
                validate(finished_step)
            checkpoint(finished_step)
    bar.close()
    if not validation_rows or validation_rows[-1]["step"] != training.steps:
        validate(training.steps)
    network.eval()
    if main:
        save_torch({"model": network.state_dict(), "config": config.to_dict()}, run_dir / FINAL)
        metrics = write_csv(rows, run_dir / METRICS, METRIC_COLUMNS)
        validation = write_csv(validation_rows, run_dir / VALIDATION) if validation_rows else pd.DataFrame()
        write_json(done_record(training.steps, rows[-1]["seconds"] if rows else 0.0, commits), run_dir / DONE)
    else:
        metrics = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
        validation = pd.DataFrame(validation_rows)
    barrier()
    return TrainingRun(run_dir, network, config, metrics, validation, reused=False, resumed_from=start,
                       seconds=time.perf_counter() - began)


__all__ = ["TrainingRun", "default_runs_root", "learning_rate_factor", "load_trained_network", "needs_parser", "resolve_pose_start",
           "rig_view_yaws", "run_key",
           "train_reconstruction"]
