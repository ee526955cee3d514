"""Training the runs of the experiment tables: one method and seed into its keyed run directory, or many of them
side by side (in worker processes, inline, or through submitit: :mod:`dfmvr_lib.experiments.executors`), finished
runs reused, interrupted ones resumed; and the parser's input masks a benchmark's trainings share."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from ..config import ExperimentConfig, get_config
from ..training import train_reconstruction
from ..training.data import synthetic_triplets
from ..training.input_masks import parser_parse_maps
from ..training.loop import needs_parser
from .executors import RunJob, describe, executor_settings, out_of_process, submit_runs, validate_settings
from .methods import method_config


def train_method(profile: str, method: str, dataset_root: str | os.PathLike, parser_run_dir, seed: int,
                 runs_root: str | os.PathLike, overrides: dict[str, Any] | None = None, progress: bool = True):
    """Train (or reuse) ``method`` with ``seed`` into its keyed run directory under ``runs_root``
    (:func:`dfmvr_lib.training.loop.reconstruction_run_dir`, what :meth:`RunJob.run_dir
    <dfmvr_lib.experiments.executors.RunJob.run_dir>` names); returns the :class:`~dfmvr_lib.training.TrainingRun`."""
    config = method_config(profile, method, seed, overrides)
    return train_reconstruction(config, dataset_root, mask_parser(config, parser_run_dir), runs_root=runs_root,
                                progress=progress, description=f"{method} seed {seed}")


def mask_parser(config, parser_run_dir):
    """The parser run a method trains with: ``parser_run_dir`` when its mask loss or its input masks need it
    (:func:`dfmvr_lib.training.loop.needs_parser`), else None."""
    return parser_run_dir if needs_parser(config) else None


def train_methods(jobs: Sequence[tuple], *, profile: str, dataset_root, parser_run_dir, runs_root, workers: int = 1,
                  progress: bool = True, executor: str | ExperimentConfig | None = None) -> list[str]:
    """Train (or reuse) several ``(method, seed, overrides)`` runs, ``workers`` at a time in separate processes.

    A job may name its own benchmark as a fourth item, ``(method, seed, overrides, dataset_root)`` (default the
    ``dataset_root`` argument), so that one call trains the runs of several tables side by side. Each worker
    process uses ``torch.get_num_threads() // workers`` threads (at least one): on 2 cores two one-thread
    trainings side by side do 1.75x the steps of one two-thread training (results/benchmarks/learning.md), so
    the cpu profile trains two at a time. Runs already finished are reused without starting a process; an
    interrupted run resumes from its checkpoint as usual. Returns the run directories in ``jobs`` order.

    ``executor``: where the missing runs train (:mod:`dfmvr_lib.experiments.executors`): ``"processes"``
    (``workers`` processes; in this process when ``workers`` is 1 or one run is missing), ``"inline"``,
    ``"slurm"`` (a submitit job array with the profile's ``experiments.slurm`` settings) or ``"local"``
    (submitit's local executor), or a whole ``experiments`` section (:class:`dfmvr_lib.config.ExperimentConfig`,
    its executor and SLURM settings). Default: the profile's ``experiments.executor`` and ``experiments.slurm``
    with the environment's overrides (``DFMVR_EXECUTOR``, ``DFMVR_SLURM_<FIELD>``:
    :func:`dfmvr_lib.experiments.executors.executor_settings`). The executor is not part of any run key.
    """
    if isinstance(executor, ExperimentConfig):
        settings = executor
    else:
        settings = executor_settings(get_config(profile).experiments)
        if executor is not None:
            settings = dataclasses.replace(settings, executor=executor)
    settings = validate_settings(dataclasses.replace(settings, parallel_trainings=workers))

    parser = str(parser_run_dir) if parser_run_dir is not None else None

    def run_job(job) -> RunJob:
        method, seed, overrides, *rest = job
        return RunJob(profile, method, seed, overrides, str(rest[0] if rest else dataset_root), parser,
                      str(runs_root))

    jobs = [run_job(job) for job in jobs]
    todo = [job for job in {(job.method, job.seed, tuple(sorted((job.overrides or {}).items())),
                             job.dataset_root): job for job in jobs}.values() if not job.finished()]
    todo = [dataclasses.replace(job, overrides=dict(job.overrides or {}) or None) for job in todo]
    if todo:
        print(f"training {len(todo)} runs ({describe(settings, len(todo), runs_root)}): "
              + ", ".join(job.label for job in todo), flush=True)
    if out_of_process(settings, len(todo)) and parser_run_dir is not None:
        for root in dict.fromkeys(job.dataset_root for job in todo):     # once here, not in each worker
            prepare_parser_masks(root, parser_run_dir, progress)
    submit_runs(todo, settings, progress=progress)
    return [str(job.run_dir()) for job in jobs]


def prepare_parser_masks(dataset_root, parser_run_dir, progress: bool = True) -> None:
    """Compute (or find cached) the parser's input masks of a benchmark's train and validation splits
    (:func:`dfmvr_lib.training.input_masks.parser_parse_maps`)."""
    for split in ("train", "validation"):
        try:
            data = synthetic_triplets(dataset_root, split, progress=False)
        except ValueError:                      # an empty split
            continue
        parser_parse_maps(data, dataset_root, split, parser_run_dir, progress)


__all__ = ["mask_parser", "prepare_parser_masks", "train_method", "train_methods"]
