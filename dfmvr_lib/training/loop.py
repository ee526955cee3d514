"""Training of the DF-MVR reconstruction network with a resumable, reusable run directory.

:func:`train_reconstruction` trains :func:`dfmvr_lib.networks.build_network` for ``config`` on a synthetic benchmark
(or any preloaded :class:`~dfmvr_lib.training.data.TripletTensors`): Adam, learning rate constant for
``constant_fraction`` of the steps then cosine-annealed to ``final_learning_rate``, the losses of
:mod:`dfmvr_lib.losses` with the frozen face parser in the mask loss.

Run directory ``<runs_root>/<key>/`` (default ``<repository>/runs/reconstruction``; :func:`reconstruction_run_dir`),
``key`` = hash of the configuration sections the run depends on, the dataset's generator settings and the parser
run; it goes through the one run lifecycle of the workbook, :class:`dfmvr_lib.runs.ResumableRun` (which also names
its files):

- ``run.json``: what the key was computed from;
- ``checkpoint.pt``: model, optimiser, scheduler, step, metric rows and RNG state, written atomically every
  ``checkpoint_every`` steps; an interrupted run (even ``kill -9``) resumes from it;
- ``metrics.csv``: per step ``step, total, photo, mask, landmark_2d, landmark_3d, regularisation, reflectance,
  lighting, consistency, cross_view, lr, seconds``;
- ``validation.csv``: ``step, network_mm, mean_face_mm, ...`` of the validation passes;
- ``final.pt`` (model state + config; its batch-norm statistics recomputed over the last training batches,
  :mod:`dfmvr_lib.training.batch_norm`) and ``done.json`` at the end (steps, training seconds and the git commit(s)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..camera import PerspectiveCamera
from ..config import WorkbookConfig
from ..distributed import all_finite, local_slice, mean_over_ranks, rank_and_world, sync_batch_norm, wrap_model
from ..face_model.base import MorphableModel
from ..face_model.factory import load_face_model
from ..networks import build_network, per_view_faces
from ..parsing import frozen_parser, load_run_model
from ..precision import autocast, precision_note, resolve_precision
from ..provenance import REPOSITORY_ROOT
from ..runs import (FINAL, METRICS, VALIDATION, ResumableRun, Tables, keyed_run_dir, load_checkpoint_file,
                    read_dataset_settings, runs_dir, settle_thread_pools)
from .batch_norm import batch_norm_state, recompute_batch_norm_statistics, restore_batch_norm_state
from .data import (TrainingBatch, TripletTensors, batch_indices, make_batch, step_generator, synthetic_meshes,
                   synthetic_triplets)
from .forward import batch_loss, reconstruct
from .input_masks import with_input_masks
from .landmark_noise import with_landmark_noise
from .validation import summarise_vertex_errors, vertex_error_table

LOSS_COLUMNS = ("total", "photo", "mask", "landmark_2d", "landmark_3d", "regularisation", "reflectance", "lighting",
                "consistency", "cross_view")
METRIC_COLUMNS = ("step",) + LOSS_COLUMNS + ("lr", "seconds")
PRECISE_BN_BATCHES = 32
"""Training batches a validation pass recomputes the batch-norm statistics over (:func:`_validate`)."""


def default_runs_root() -> Path:
    """``<repository>/runs/reconstruction``: where :func:`train_reconstruction` keys its runs when given no
    ``runs_root``."""
    return runs_dir(REPOSITORY_ROOT, "reconstruction")


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
            device_type: str = "cpu", *, dataset_settings: Any = None) -> dict:
    """What identifies a run: the config sections it depends on, the dataset (its generator settings:
    ``dataset_settings`` when given, e.g. recomputed from the configuration when the benchmark folder is gone, else
    read from ``dataset_root``; its resolved path for a dataset without settings), the parser run, and the
    precision the network trains in on ``device_type`` (:func:`dfmvr_lib.precision.resolve_precision`)."""
    settings = dataset_settings if dataset_settings is not None else read_dataset_settings(dataset_root)
    return {
        "precision": resolve_precision(config.training.precision, device_type),
        "image_size": config.image_size, "seed": config.seed,
        **{name: dataclasses.asdict(getattr(config, name))
           for name in ("face_model", "camera", "network", "losses", "training")},
        "dataset": settings if settings is not None else str(Path(dataset_root).resolve()),
        "parser_run": Path(parser_run_dir).name if parser_run_dir else None,
    }


def reconstruction_run_dir(config: WorkbookConfig, dataset_root: str | os.PathLike,
                           parser_run_dir: str | os.PathLike | None, runs_root: str | os.PathLike | None = None,
                           device_type: str = "cpu", *, dataset_settings: Any = None) -> Path:
    """The keyed run directory :func:`train_reconstruction` trains ``config`` into on ``device_type``
    (``<runs_root>/<run_hash(run_key)>``, :func:`dfmvr_lib.runs.keyed_run_dir`; default ``runs_root``
    :func:`default_runs_root`); computed, nothing read besides the benchmark's ``settings.json``."""
    key = run_key(config, dataset_root, parser_run_dir, device_type, dataset_settings=dataset_settings)
    return keyed_run_dir(runs_root if runs_root is not None else default_runs_root(), key)


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
    if network.pose_start != "rig" or per_view_faces(network) or network.initial_view_yaws_degrees:
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
    """``(network in eval mode, config)`` of a finished run directory (``final.pt`` read with
    :func:`dfmvr_lib.runs.load_checkpoint_file`)."""
    state = load_checkpoint_file(Path(run_dir) / FINAL, device, f"reconstruction run's {FINAL}")
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
    return frozen_parser(load_run_model(parser_run_dir).to(device))


@dataclass
class _Training:
    """What one :func:`train_reconstruction` call trains with: the config (pose start resolved), the face model and
    camera, the network (``trained``: it, or DistributedDataParallel around it), the frozen parser (or None), the
    optimiser and its scheduler, this rank's chunk of each global batch (None in one process), the precision, the
    device and the progress label."""

    config: WorkbookConfig
    model: MorphableModel
    camera: PerspectiveCamera
    network: torch.nn.Module
    trained: torch.nn.Module
    parser: torch.nn.Module | None
    optimiser: torch.optim.Optimizer
    scheduler: Any
    part: slice | None
    precision: str
    device: str | torch.device
    description: str


@dataclass
class _Log:
    """The rows of one call (per-step ``rows``, ``validation_rows``; both resumed from the checkpoint) and its
    training-time clock: ``seconds_before`` (the checkpoint's), started at ``began``, less the ``paused`` seconds
    of the validation passes."""

    rows: list[dict] = field(default_factory=list)
    validation_rows: list[dict] = field(default_factory=list)
    seconds_before: float = 0.0
    began: float = 0.0
    paused: float = 0.0

    def seconds(self) -> float:
        """Training seconds of the run so far (validation passes excluded)."""
        return self.seconds_before + time.perf_counter() - self.began - self.paused

    def tables(self) -> Tables:
        """The run's CSV tables (:class:`dfmvr_lib.runs.ResumableRun`): metrics always, validation once it has a
        row."""
        return {METRICS: (self.rows, METRIC_COLUMNS), VALIDATION: (self.validation_rows, None)}


@dataclass
class _Validation:
    """The validation split of one call: its triplets and ground-truth meshes (``data`` None: no passes)."""

    data: TripletTensors | None = None
    meshes: list | None = None


def _reused_run(run: ResumableRun, steps: int, device) -> TrainingRun:
    """The :class:`TrainingRun` of a finished run directory (nothing trained)."""
    network, saved_config = load_trained_network(run.run_dir, device)
    return TrainingRun(run.run_dir, network, saved_config, run.read_table(METRICS), run.read_table(VALIDATION),
                       reused=True, resumed_from=steps, seconds=0.0)


def _build_training(config: WorkbookConfig, run: ResumableRun, parser_run_dir, part: slice | None, device,
                    description: str) -> tuple[_Training, _Log]:
    """Build the face model, camera, network (seeded by ``config.seed``), parser, optimiser and scheduler; start
    ``run`` (``run.json``; restore the checkpoint's network, optimiser, scheduler, RNG state and rows when it
    resumes); wrap the network for several processes."""
    training = config.training
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
    state, log = run.start(device), _Log()
    if state is not None:
        network.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        log = _Log(state["metrics"], state["validation"], state["metrics"][-1]["seconds"] if state["metrics"] else 0.0)
    trained = wrap_model(network, device)       # DistributedDataParallel around the network on several processes
    return _Training(config, model, camera, network, trained, parser, optimiser, scheduler, part, run.key["precision"],
                     device, description), log


def _training_data(config: WorkbookConfig, dataset_root, parser_run_dir, train_data: TripletTensors | None,
                   validation_split: str | None, progress: bool) -> tuple[TripletTensors, _Validation]:
    """The training triplets (``train_data`` or the benchmark's train split) with the configured input masks and
    landmark noise, and the validation split (empty when it is None or has no ground-truth meshes)."""
    training = config.training
    data = train_data if train_data is not None else synthetic_triplets(dataset_root, "train", progress)
    data = with_input_masks(data, training.input_masks, dataset_root, "train", parser_run_dir, progress)
    data = with_landmark_noise(data, training.landmark_noise_nme)
    if validation_split is None:
        return data, _Validation()
    try:
        meshes = synthetic_meshes(dataset_root, validation_split)
        validation_data = synthetic_triplets(dataset_root, validation_split, progress)
    except (FileNotFoundError, ValueError, KeyError):
        return data, _Validation()
    validation_data = with_input_masks(validation_data, training.input_masks, dataset_root, validation_split,
                                       parser_run_dir, progress)
    return data, _Validation(validation_data, meshes)


def _train_step(training: _Training, data: TripletTensors, step: int, mask_active: bool) -> tuple[dict, float]:
    """One optimiser and scheduler step at ``step`` (0-based) on the batch of (seed, step) (this rank's chunk of
    it); returns (the loss terms averaged over the ranks, the learning rate of the step)."""
    config = training.config
    generator = step_generator(config.seed, step)
    indices = batch_indices(len(data), config.training.batch_size, step, config.seed)
    options = dict(colour_augment=config.training.colour_augment, single_view_mode=config.training.single_view_mode)
    if training.part is None:
        batch = make_batch(data, indices, generator, **options, device=training.device)
    else:       # the global batch with its draws as in one process, then this rank's chunk
        batch = _chunk(make_batch(data, indices, generator, **options), training.part, training.device)
    lr = training.optimiser.param_groups[0]["lr"]
    prediction = reconstruct(training.trained, training.model, training.camera, batch.network_images,
                             batch.network_parse_maps, precision=training.precision)
    terms = batch_loss(config.losses, prediction, batch, training.model, training.parser, mask_active=mask_active,
                       camera=training.camera)
    if not all_finite(terms.total):
        raise FloatingPointError(f"{training.description}: non-finite loss at step {step + 1}: {terms.values()}")
    training.optimiser.zero_grad(set_to_none=True)
    terms.total.backward()
    training.optimiser.step()
    training.scheduler.step()
    return mean_over_ranks(terms.values()), lr


def _population_statistics(training: _Training, data: TripletTensors, step: int) -> int:
    """Recompute the network's batch-norm statistics over the batches of the last (up to)
    :data:`PRECISE_BN_BATCHES` steps before ``step`` (the same draws as in training; the global batch in one
    process); returns the number of batches used. Skipped (0) with SyncBatchNorm on several processes, whose
    training-mode forward would wait for the other ranks."""
    config = training.config
    if rank_and_world()[1] > 1 and any(isinstance(m, torch.nn.SyncBatchNorm) for m in training.network.modules()):
        return 0
    options = dict(colour_augment=config.training.colour_augment, single_view_mode=config.training.single_view_mode)
    steps = range(max(0, step - PRECISE_BN_BATCHES), step)
    batches = (make_batch(data, batch_indices(len(data), config.training.batch_size, s, config.seed),
                          step_generator(config.seed, s), **options, device=training.device) for s in steps)

    def forward(network, batch):
        with autocast(training.precision, torch.device(training.device).type):
            network(batch.network_images, batch.network_parse_maps)
    return recompute_batch_norm_statistics(training.network, batches, forward)


def _validate(training: _Training, validation: _Validation, log: _Log, step: int, main: bool,
              data: TripletTensors, final: bool) -> None:
    """A validation pass after ``step`` steps (rank 0, when there is a validation split): a row of
    :func:`summarise_vertex_errors` in ``log.validation_rows``; its seconds are not training time.

    The pass evaluates with population batch-norm statistics (:mod:`dfmvr_lib.training.batch_norm`, over the last
    :data:`PRECISE_BN_BATCHES` training batches): in the middle of training they are put back afterwards (the
    training, its checkpoints and a resume see the running averages as before); after the last step (``final``)
    they stay, so the saved network is the one the last validation row measured (also without a validation
    split: the saved network always carries population statistics)."""
    if not main:
        return
    if validation.data is None:
        if final:
            _population_statistics(training, data, step)
        return
    started = time.perf_counter()
    saved = batch_norm_state(training.network)
    _population_statistics(training, data, step)
    table = vertex_error_table(training.network, training.model, training.camera, validation.data, validation.meshes,
                               batch_size=training.config.training.batch_size, precision=training.precision,
                               limit=training.config.training.validation_samples)
    if not final:
        restore_batch_norm_state(training.network, saved)
    took = time.perf_counter() - started
    log.paused += took
    log.validation_rows.append({"step": step, "seconds": log.seconds(), "validation_seconds": took,
                                **summarise_vertex_errors(table)})


def _checkpoint(training: _Training, run: ResumableRun, log: _Log, step: int) -> None:
    """Save ``checkpoint.pt`` after ``step`` steps: network, optimiser, scheduler, step, rows and RNG state."""
    run.save_checkpoint({"model": training.network.state_dict(), "optimiser": training.optimiser.state_dict(),
                         "scheduler": training.scheduler.state_dict(), "step": step, "metrics": log.rows,
                         "validation": log.validation_rows, "rng": torch.get_rng_state()}, log.tables())


def _run_steps(training: _Training, run: ResumableRun, log: _Log, data: TripletTensors, validation: _Validation,
               progress: bool, stop_after: int | None) -> bool:
    """Train from the run's resumed step to ``training.steps`` with the validation passes and checkpoints; False
    when ``stop_after`` steps of this call stopped it first."""
    config, schedule, start = training.config, training.config.training, run.resumed_from
    steps = schedule.steps
    mask_start = int(round(config.losses.mask_start_fraction * steps))
    training.network.train()
    log.began = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=training.description,
               disable=not (progress and run.main))
    for done_here, step in enumerate(bar):
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            return False
        values, lr = _train_step(training, data, step, step >= mask_start)
        log.rows.append({"step": step + 1, **values, "lr": lr, "seconds": log.seconds()})
        bar.set_postfix({name: f"{values[name]:.3g}" for name in ("total", "photo", "mask", "landmark_2d",
                                                                   "landmark_3d")})
        finished_step = step + 1
        if schedule.validate_every and finished_step % schedule.validate_every == 0 and finished_step < steps:
            _validate(training, validation, log, finished_step, run.main, data, final=False)
        if finished_step % schedule.checkpoint_every == 0 or finished_step == steps:
            if finished_step == steps:
                _validate(training, validation, log, finished_step, run.main, data, final=True)
            _checkpoint(training, run, log, finished_step)
    bar.close()
    return True


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
    training = config.training
    settle_thread_pools()       # before anything runs: the same threads for every step (resume = uninterrupted)
    if needs_parser(config) and parser_run_dir is None:
        raise ValueError("train_reconstruction: the mask loss (losses.use_mask) or the parser's input masks "
                         "(training.input_masks='parser') need a finished parser run; pass parser_run_dir, or set "
                         "losses.use_mask=False and training.input_masks='ground_truth' (an oracle)")
    run = ResumableRun.open(run_key(config, dataset_root, parser_run_dir, torch.device(device).type),
                            runs_root if runs_root is not None else default_runs_root(), run_dir,
                            kind="reconstruction")
    if run.finished:
        return _reused_run(run, training.steps, device)
    part = local_slice(training.batch_size) if rank_and_world()[1] > 1 else None
    config = resolve_pose_start(config, dataset_root)
    if progress and run.main:
        print(f"{description}: {precision_note(training.precision, torch.device(device).type)}")
    setup, log = _build_training(config, run, parser_run_dir, part, device, description)
    data, validation = _training_data(config, dataset_root, parser_run_dir, train_data, validation_split, progress)
    if not _run_steps(setup, run, log, data, validation, progress, stop_after):
        return TrainingRun(run.run_dir, setup.network.eval(), config, pd.DataFrame(log.rows),
                           pd.DataFrame(log.validation_rows), reused=False, resumed_from=run.resumed_from,
                           seconds=time.perf_counter() - log.began, finished=False)
    if not log.validation_rows or log.validation_rows[-1]["step"] != training.steps:
        _validate(setup, validation, log, training.steps, run.main, data, final=True)
    setup.network.eval()
    tables = run.finish({"model": setup.network.state_dict(), "config": config.to_dict()}, log.tables(),
                        training.steps, log.rows[-1]["seconds"] if log.rows else 0.0)
    return TrainingRun(run.run_dir, setup.network, config, tables[METRICS], tables[VALIDATION], reused=False,
                       resumed_from=run.resumed_from, seconds=time.perf_counter() - log.began)


__all__ = ["LOSS_COLUMNS", "METRIC_COLUMNS", "TrainingRun", "default_runs_root", "learning_rate_factor",
           "load_trained_network", "needs_parser", "reconstruction_run_dir", "resolve_pose_start", "rig_view_yaws",
           "run_key", "train_reconstruction"]
