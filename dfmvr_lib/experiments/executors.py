"""Where a table's missing training runs are trained: the executors behind
:func:`dfmvr_lib.experiments.training_runs.train_methods` (and so :func:`~dfmvr_lib.experiments.tables.run_table`).

One interface, :func:`submit_runs` ``(jobs, settings) -> run directories``, four implementations chosen by the
setting ``experiments.executor`` (:class:`dfmvr_lib.config.ExperimentConfig`):

- ``"processes"`` (the default): ``experiments.parallel_trainings`` spawned worker processes side by side, each with
  an equal share of the torch threads; in this process when that is 1 or when one run is missing (the behaviour
  before executors existed);
- ``"inline"``: in this process, one run after the other;
- ``"slurm"``: a SLURM job array through ``submitit`` (one run per job) with the ``experiments.slurm`` settings
  (:class:`dfmvr_lib.config.SlurmConfig`); submitit's job files and logs go to ``experiments.slurm.folder``
  (default ``<runs_root>/../submitit``: ``<job id>_<task>_log.out`` / ``.err`` per job). A job stopped at its
  time limit or pre-empted is requeued (up to three times) and resumes from its run's last checkpoint;
- ``"local"``: the same submitit path with submitit's local executor (jobs are local subprocesses, all started at
  once, the torch threads shared among them): what the tests run.

Whatever the executor, a run is trained by :func:`dfmvr_lib.experiments.training_runs.train_method` into the run
directory its key names (``<runs_root>/<run_hash(run_key)>``; the executor is not part of the key). The submitit
executors wait for every job, raise :class:`RunFailedError` naming each failed run with the path of its submitit log,
and return the run directories found by key, each checked for its ``done.json``: a job's return value is not trusted
beyond that. The caller then reads the results from the keyed run directories as before.

The environment overrides the profile's settings (:func:`executor_settings`), so that a notebook runs its tables
on SLURM without being edited::

    DFMVR_EXECUTOR=slurm DFMVR_SLURM_PARTITION=gpu DFMVR_SLURM_GPUS_PER_JOB=1 make notebooks

``DFMVR_EXECUTOR`` sets ``experiments.executor``, ``DFMVR_SLURM_<FIELD>`` each field of ``experiments.slurm``
(``FOLDER``, ``PARTITION``, ``GPUS_PER_JOB``, ``CPUS_PER_TASK``, ``TIMEOUT_MINUTES``, ``MEM_GB``, ``EXTRA_PARAMETERS``
as a JSON object). In JupyterLab: start ``make lab`` with them set, or run ``%env DFMVR_EXECUTOR=slurm`` in a
cell before the tables.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numba
import submitit
import torch
from tqdm.auto import tqdm

from ..config import ExperimentConfig, SlurmConfig
from ..runs import DONE, is_finished
from ..training.loop import needs_parser, reconstruction_run_dir
from .methods import method_config

EXECUTORS = ("processes", "inline", "slurm", "local")
"""The values of ``experiments.executor``."""

ENV_EXECUTOR = "DFMVR_EXECUTOR"
ENV_SLURM_PREFIX = "DFMVR_SLURM_"
SUBMITIT_FOLDER = "submitit"
"""Default submitit folder: ``<runs_root>/../submitit``."""


class RunFailedError(RuntimeError):
    """One or more training runs submitted through submitit did not finish; the message names each run, its run
    directory, its submitit job and log."""


@dataclass
class RunJob:
    """One training run to train: ``method`` with ``seed`` and extra config ``overrides`` in ``profile``, on the
    benchmark at ``dataset_root``, with the parser run ``parser_run_dir`` (used when the method needs it), into the
    keyed run directory under ``runs_root``."""

    profile: str
    method: str
    seed: int
    overrides: dict[str, Any] | None
    dataset_root: str
    parser_run_dir: str | None
    runs_root: str

    @property
    def label(self) -> str:
        """``"dfmvr seed 0"`` (with the overrides when there are some)."""
        return f"{self.method} seed {self.seed}" + (f" {self.overrides}" if self.overrides else "")

    def run_dir(self) -> Path:
        """The run directory its key names (:func:`dfmvr_lib.training.loop.reconstruction_run_dir`, as
        :func:`dfmvr_lib.training.train_reconstruction` trains it on the CPU)."""
        config = method_config(self.profile, self.method, self.seed, self.overrides)
        parser = self.parser_run_dir if needs_parser(config) else None
        return reconstruction_run_dir(config, self.dataset_root, parser, self.runs_root)

    def finished(self) -> bool:
        """Whether its run directory holds a finished run (:func:`dfmvr_lib.runs.is_finished`)."""
        return is_finished(self.run_dir())


def train_run(job: RunJob, threads: int | None = None, progress: bool = False) -> str:
    """Train (or reuse / resume) ``job``'s run, with ``threads`` torch (and numba) threads when given; returns its
    run directory. What every executor runs for one job (``progress``: the training's bar, in-process only)."""
    from .training_runs import train_method      # here: training_runs imports this module (a cycle)

    if threads is not None:
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))     # the renderer's parallel kernels
    run = train_method(job.profile, job.method, job.dataset_root, job.parser_run_dir, job.seed, job.runs_root,
                       job.overrides, progress=progress)
    return str(run.run_dir)


def _pool_job(item: tuple[RunJob, int]) -> str:
    """Worker of the ``"processes"`` executor."""
    return train_run(*item)


class _SubmititTraining:
    """The callable a submitit job runs: :func:`train_run`; checkpointable (submitit requeues a job stopped at its
    time limit or pre-empted, and the training resumes from its run's checkpoint)."""

    def __init__(self, threads: int):
        self.threads = threads

    def __call__(self, job: RunJob) -> str:
        return train_run(job, self.threads)

    def checkpoint(self, job: RunJob):
        return submitit.helpers.DelayedSubmission(self, job)     # the run's own checkpoint holds the state


def _field_error(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"{name} must be {expected}, got {value!r}")


def validate_settings(settings: ExperimentConfig) -> ExperimentConfig:
    """Check the executor settings; a bad value raises ``ValueError`` naming the field (e.g.
    ``experiments.slurm.gpus_per_job``). Returns ``settings``."""
    if settings.executor not in EXECUTORS:
        raise _field_error("experiments.executor", settings.executor, f"one of {EXECUTORS}")
    workers = settings.parallel_trainings
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise _field_error("experiments.parallel_trainings", workers, "an integer >= 1")
    slurm = settings.slurm
    if not isinstance(slurm, SlurmConfig):
        raise _field_error("experiments.slurm", slurm, "a SlurmConfig")
    for name in ("folder", "partition"):
        value = getattr(slurm, name)
        if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value).strip()):
            raise _field_error(f"experiments.slurm.{name}", value, "None or a non-empty string")
    for name, least in (("gpus_per_job", 0), ("cpus_per_task", 1), ("timeout_minutes", 1), ("mem_gb", 1)):
        value = getattr(slurm, name)
        if value is None and name == "mem_gb":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise _field_error(f"experiments.slurm.{name}", value, f"an integer >= {least}"
                               + (" or None" if name == "mem_gb" else ""))
    extra = slurm.extra_parameters
    if not isinstance(extra, Mapping) or not all(isinstance(key, str) and key for key in extra):
        raise _field_error("experiments.slurm.extra_parameters", extra, "a dict with string keys (#SBATCH options)")
    return settings


def _parse_environment(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "optional_int":
            return None if text.strip().lower() in ("", "none") else int(text)
        if kind == "optional_str":
            return None if text.strip().lower() in ("", "none") else text
        if kind == "json_object":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
    except ValueError as error:
        raise ValueError(f"environment variable {name}={text!r} is not valid ({kind.replace('_', ' ')}): "
                         f"{error}") from None
    return text


_SLURM_KINDS = {"folder": "optional_str", "partition": "optional_str", "gpus_per_job": "int",
                "cpus_per_task": "int", "timeout_minutes": "int", "mem_gb": "optional_int",
                "extra_parameters": "json_object"}


def executor_settings(settings: ExperimentConfig, environ: Mapping[str, str] | None = None) -> ExperimentConfig:
    """``settings`` (a profile's ``experiments`` section) with the environment's overrides, validated
    (:func:`validate_settings`).

    ``DFMVR_EXECUTOR`` -> ``experiments.executor``; ``DFMVR_SLURM_<FIELD>`` -> ``experiments.slurm.<field>``
    (``DFMVR_SLURM_PARTITION``, ``..._GPUS_PER_JOB``, ``..._CPUS_PER_TASK``, ``..._TIMEOUT_MINUTES``, ``..._MEM_GB``,
    ``..._FOLDER``, ``..._EXTRA_PARAMETERS`` as a JSON object; ``none`` for None). A value that does not parse
    raises ``ValueError`` naming the variable."""
    environ = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    if environ.get(ENV_EXECUTOR, "").strip():
        changes["executor"] = environ[ENV_EXECUTOR].strip().lower()
    slurm = {name: _parse_environment(ENV_SLURM_PREFIX + name.upper(), environ[ENV_SLURM_PREFIX + name.upper()],
                                      kind)
             for name, kind in _SLURM_KINDS.items() if ENV_SLURM_PREFIX + name.upper() in environ}
    unknown = sorted(key for key in environ if key.startswith(ENV_SLURM_PREFIX)
                     and key[len(ENV_SLURM_PREFIX):].lower() not in _SLURM_KINDS)
    if unknown:
        raise ValueError(f"unknown environment variable(s) {unknown}: the SLURM settings are "
                         f"{[ENV_SLURM_PREFIX + name.upper() for name in _SLURM_KINDS]}")
    if slurm:
        changes["slurm"] = dataclasses.replace(settings.slurm, **slurm)
    return validate_settings(dataclasses.replace(settings, **changes) if changes else settings)


def out_of_process(settings: ExperimentConfig, count: int) -> bool:
    """Whether :func:`submit_runs` trains ``count`` runs outside this process (then the parser's input masks are
    computed once beforehand, not in each job)."""
    if settings.executor == "processes":
        return settings.parallel_trainings > 1 and count > 1
    return settings.executor in ("slurm", "local") and count > 0


def submitit_folder(settings: ExperimentConfig, runs_root: str | os.PathLike) -> Path:
    """Where submitit writes job files and logs: ``experiments.slurm.folder``, default ``<runs_root>/../submitit``."""
    folder = settings.slurm.folder
    return Path(folder) if folder is not None else Path(runs_root).resolve().parent / SUBMITIT_FOLDER


def _threads(settings: ExperimentConfig, count: int) -> int:
    if settings.executor == "slurm":
        return settings.slurm.cpus_per_task
    if settings.executor == "local":          # submitit's local jobs all run at once
        return max(1, torch.get_num_threads() // max(1, count))
    return max(1, torch.get_num_threads() // max(1, settings.parallel_trainings))


def describe(settings: ExperimentConfig, count: int, runs_root: str | os.PathLike | None = None) -> str:
    """How ``count`` runs will be trained, e.g. ``"2 side by side, 1 thread(s) each"``."""
    if settings.executor == "slurm":
        slurm = settings.slurm
        where = f", logs in {submitit_folder(settings, runs_root)}" if runs_root is not None else ""
        return (f"a SLURM job array of {count} job(s), partition {slurm.partition or '(default)'}, "
                f"{slurm.gpus_per_job} GPU(s) and {slurm.cpus_per_task} CPU(s) per job, "
                f"{slurm.timeout_minutes} min" + (f", {slurm.mem_gb} GB" if slurm.mem_gb else "") + where)
    if settings.executor == "local":
        return f"{count} submitit local job(s), {_threads(settings, count)} thread(s) each"
    if settings.executor == "inline":
        return "in this process, one after the other"
    return f"{settings.parallel_trainings} side by side, {_threads(settings, count)} thread(s) each"


def make_submitit_executor(settings: ExperimentConfig, runs_root: str | os.PathLike, count: int = 1):
    """The submitit executor of the ``"slurm"`` or ``"local"`` setting, its parameters set from
    ``experiments.slurm`` (one task on one node per job; ``slurm_array_parallelism`` = ``count``)."""
    validate_settings(settings)
    if settings.executor not in ("slurm", "local"):
        raise ValueError(f"experiments.executor must be 'slurm' or 'local' for a submitit executor, "
                         f"got {settings.executor!r}")
    slurm = settings.slurm
    executor = submitit.AutoExecutor(folder=submitit_folder(settings, runs_root),
                                     cluster="slurm" if settings.executor == "slurm" else "local")
    parameters: dict[str, Any] = dict(name="dfmvr-train", timeout_min=slurm.timeout_minutes, nodes=1,
                                      tasks_per_node=1, cpus_per_task=slurm.cpus_per_task,
                                      slurm_array_parallelism=max(1, count))
    if slurm.gpus_per_job and settings.executor == "slurm":     # no --gpus-per-node=0 line; no GPUs locally
        parameters["gpus_per_node"] = slurm.gpus_per_job
    if slurm.mem_gb is not None:
        parameters["mem_gb"] = slurm.mem_gb
    if slurm.partition is not None:
        parameters["slurm_partition"] = slurm.partition
    if slurm.extra_parameters:
        parameters["slurm_additional_parameters"] = dict(slurm.extra_parameters)
    executor.update_parameters(**parameters)
    return executor


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n      ".join(text[-lines:])


def _submit_submitit(jobs: Sequence[RunJob], settings: ExperimentConfig, progress: bool) -> None:
    runs_root = jobs[0].runs_root
    executor = make_submitit_executor(settings, runs_root, len(jobs))
    submitted = executor.map_array(_SubmititTraining(_threads(settings, len(jobs))), list(jobs))
    by_job = {id(job): run for job, run in zip(submitted, jobs)}
    failures = []
    poll = 15.0 if settings.executor == "slurm" else 0.5       # seconds between looks at the jobs' states
    for job in tqdm(submitit.helpers.as_completed(submitted, poll_frequency=poll), total=len(submitted),
                    disable=not progress,
                    desc=f"training {len(jobs)} runs ({settings.executor} jobs)"):
        run = by_job[id(job)]
        try:
            job.result()
        except Exception as error:      # noqa: BLE001 - every failure is reported below, with its log
            failures.append((run, job, error))
            continue
        if not run.finished():
            failures.append((run, job, RuntimeError(f"the job returned but {run.run_dir()} holds no {DONE}")))
    if failures:
        lines = []
        for run, job, error in failures:
            last = [line for line in str(error).strip().splitlines() if line.strip()]
            tail = _log_tail(Path(job.paths.stderr))
            lines.append(f"  {run.label} (run dir {run.run_dir()}): submitit job {job.job_id} failed: "
                         f"{type(error).__name__}: {last[-1].strip() if last else ''}\n"
                         f"    log: {job.paths.stderr}" + (f"\n    last lines:\n      {tail}" if tail else ""))
        raise RunFailedError(f"{len(failures)} of {len(jobs)} training run(s) failed "
                             f"({settings.executor} executor):\n" + "\n".join(lines))


def submit_runs(jobs: Sequence[RunJob], settings: ExperimentConfig, *, progress: bool = True) -> list[str]:
    """Train ``jobs`` with the executor of ``settings`` (``experiments.executor``, see the module docstring) and
    return their keyed run directories in ``jobs`` order.

    ``settings.parallel_trainings``: worker processes of the ``"processes"`` executor. The submitit executors
    (``"slurm"``, ``"local"``) wait for every job, then raise :class:`RunFailedError` naming each failed run (its
    run directory, its submitit job and log, the log's last lines); a job that returned without its run's
    ``done.json`` counts as failed. ``"inline"`` and ``"processes"`` let a training's own exception through, as
    before. Bad settings raise ``ValueError`` naming the field."""
    validate_settings(settings)
    jobs = list(jobs)
    if jobs:
        if settings.executor in ("slurm", "local"):
            _submit_submitit(jobs, settings, progress)
        elif settings.executor == "processes" and out_of_process(settings, len(jobs)):
            threads = _threads(settings, len(jobs))
            context = multiprocessing.get_context("spawn")     # fresh interpreters: no forked OpenMP / numba state
            with context.Pool(min(settings.parallel_trainings, len(jobs))) as pool:
                for _ in tqdm(pool.imap_unordered(_pool_job, [(job, threads) for job in jobs]), total=len(jobs),
                              disable=not progress,
                              desc=f"training {len(jobs)} runs, {settings.parallel_trainings} at a time"):
                    pass
        else:
            for job in jobs:
                train_run(job, progress=progress)
    return [str(job.run_dir()) for job in jobs]


__all__ = ["EXECUTORS", "RunFailedError", "RunJob", "describe", "executor_settings", "make_submitit_executor",
           "out_of_process", "submit_runs", "submitit_folder", "train_run", "validate_settings"]
