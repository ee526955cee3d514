"""One training run on several processes (GPUs or nodes): torchrun + DistributedDataParallel.

A process started by ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) joins the process group with :func:`init_distributed` (NCCL on GPUs, gloo on CPU); without those
variables everything is one process, exactly as before. :func:`dfmvr_lib.training.train_reconstruction` and
:func:`dfmvr_lib.parsing.pretrain_parser` read the group (:func:`rank_and_world`):

- the batch of a step is the GLOBAL batch of the single-process run (same indices, same augmentation / view
  dropping draws, made for the whole batch), and rank r trains on its contiguous chunk r of ``world`` equal chunks
  (:func:`local_slice`; the batch size must be divisible by the world size);
- the model is wrapped in ``DistributedDataParallel`` (gradients averaged over ranks = the gradient of the mean over
  the global batch for per-sample-mean losses); on CUDA the batch norms become ``SyncBatchNorm`` (statistics over
  the global batch). On CPU (gloo) ``SyncBatchNorm`` is not supported by torch (2.13 raises "SyncBatchNorm expected
  input tensor to be on GPU ..."), so there batch-norm statistics are per rank: use ``network.normalization =
  "group"`` when CPU runs must match a single process;
- rank 0 alone writes the run files (run.json, checkpoint, csv, final.pt, done.json); the others wait at a barrier;
  every rank resumes from the same checkpoint; the run key (so the run folder) does not depend on the world size.

Command line (one process per GPU; ``--nnodes`` / ``--node_rank`` / ``--master_addr`` for several nodes)::

    torchrun --nproc_per_node=N -m dfmvr_lib.distributed pretrain-parser --profile paper --data-dir data
    torchrun --nproc_per_node=N -m dfmvr_lib.distributed train-reconstruction --profile paper --data-dir data --seed 0
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .config import PROFILE_NAMES, get_config

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = datetime.timedelta(minutes=60)
"""Collective timeout: rank 0's validation passes and checkpoint writes keep the other ranks waiting."""


@dataclass(frozen=True)
class DistributedContext:
    """rank, world size, local rank (GPU index on the node), training device, backend (None: one process)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the torchrun environment variables are all set."""
    return all(name in os.environ for name in ENV_VARS)


def distributed_context() -> DistributedContext:
    """The context of this process from the torchrun environment (rank 0 of 1 on cpu / cuda:0 without it)."""
    if not launched_by_torchrun():
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistributedContext(0, 1, 0, device, None)
    try:
        rank, world, local = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError as error:
        raise ValueError(f"distributed: RANK, WORLD_SIZE and LOCAL_RANK must be integers ({error})") from None
    if not 0 <= rank < world:
        raise ValueError(f"distributed: RANK={rank} is not in [0, WORLD_SIZE={world})")
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ValueError(f"distributed: LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPU(s);"
                             " use --nproc_per_node <= the GPU count")
        return DistributedContext(rank, world, local, torch.device("cuda", local), "nccl")
    return DistributedContext(rank, world, local, torch.device("cpu"), "gloo")


def init_distributed() -> DistributedContext:
    """Join the process group of a torchrun launch (no-op without one, or when already joined)."""
    context = distributed_context()
    if context.backend is not None and not dist.is_initialized():
        if context.device.type == "cuda":
            torch.cuda.set_device(context.device)
        dist.init_process_group(context.backend, timeout=TIMEOUT,
                                **({"device_id": context.device} if context.device.type == "cuda" else {}))
    return context


def teardown() -> None:
    """Leave the process group (no-op when not joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) when none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes run files."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def local_slice(batch_size: int, what: str = "training.batch_size") -> slice:
    """This rank's contiguous chunk of a global batch of ``batch_size`` samples (all of it in one process)."""
    rank, world = rank_and_world()
    if batch_size % world:
        raise ValueError(f"{what}={batch_size} is not divisible by the world size {world}: the global batch is split "
                         "in equal chunks, one per process")
    size = batch_size // world
    return slice(rank * size, (rank + 1) * size)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The per-rank ``values`` averaged over the ranks (for logging the global batch's losses); unchanged in one
    process. With equal chunks, the mean of the chunks' means is the mean over the global batch."""
    world = rank_and_world()[1]
    if world == 1:
        return values
    tensor = torch.tensor([values[name] for name in values], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return {name: float(value) / world for name, value in zip(values, tensor.tolist())}


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank (every rank gets the same answer, so all raise together)."""
    finite = bool(torch.isfinite(value).all())
    if rank_and_world()[1] == 1:
        return finite
    flag = torch.tensor([0.0 if finite else 1.0], device=_collective_device())
    dist.all_reduce(flag)
    return float(flag) == 0.0


def wrap_model(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``module`` for training: itself in one process; else DistributedDataParallel around it (device_ids on
    CUDA). Call :func:`sync_batch_norm` first (before loading a checkpoint or building the optimiser)."""
    if rank_and_world()[1] == 1:
        return module
    device = torch.device(device)
    if device.type == "cuda":
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index or 0],
                                                         output_device=device.index or 0)
    return torch.nn.parallel.DistributedDataParallel(module)


def sync_batch_norm(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """On several CUDA processes: ``module`` with its batch norms as ``SyncBatchNorm`` (statistics of the global
    batch; same parameter and buffer names, so checkpoints and ``final.pt`` load into the plain network). Unchanged
    in one process and on CPU, where torch has no SyncBatchNorm (batch-norm statistics are then per rank)."""
    if rank_and_world()[1] > 1 and torch.device(device).type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


# --------------------------------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m dfmvr_lib.distributed",
                                     description="Train the profile's parser or DF-MVR network on several processes.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("train-reconstruction", "DF-MVR training (notebook 03's run) on the profile's benchmark"),
                            ("pretrain-parser", "face-parser pretraining (notebook 02's run)")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--profile", required=True, help="smoke, cpu or paper")
        command.add_argument("--data-dir", required=True, help="the workbook's data folder (benchmarks and runs)")
        command.add_argument("--seed", type=int, default=None, help="the run's seed (default: the profile's)")
        command.add_argument("--celebamask-dir", default=None, help="CelebAMask-HQ folder mixed into the parser's data")
        command.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:

    args = _parser().parse_args(argv)
    if args.profile not in PROFILE_NAMES:
        print(f"error: unknown profile {args.profile!r}; choose one of {', '.join(PROFILE_NAMES)}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        print(f"error: --data-dir {data_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        context = init_distributed()
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return _run(args, context, data_dir, get_config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error (rank {context.rank}): {error}", file=sys.stderr)
        return 1
    finally:
        teardown()


def _run(args, context: DistributedContext, data_dir: Path, get_config) -> int:
    # here, not at the top: dfmvr_lib.runs and every training module import this module (a cycle)
    from . import workbook
    from .parsing import pretrain_parser
    from .parsing.training import run_key as parser_key
    from .runs import is_finished, keyed_run_dir, runs_dir
    from .training import train_reconstruction

    config = get_config(args.profile, {"seed": args.seed} if args.seed is not None else None)
    progress = not args.no_progress and is_main_process()
    per_process = "training.batch_size" if args.command == "train-reconstruction" else "parser.batch_size"
    batch = config.training.batch_size if args.command == "train-reconstruction" else config.parser.batch_size
    local_slice(batch, per_process)                       # a clear error before any work
    # The benchmark is generated (or reused) by rank 0 alone; the others then find it finished.
    if is_main_process():
        root = workbook.benchmark(config, data_dir, progress=progress)
    barrier()
    if not is_main_process():
        root = workbook.benchmark(config, data_dir, progress=False)
    if args.command == "pretrain-parser":
        run = pretrain_parser(config, root, celebamask_root=args.celebamask_dir,
                              runs_root=runs_dir(data_dir, "parser"), progress=progress, device=context.device)
        if is_main_process():
            print(f"parser run: {run.run_dir} ({'reused' if run.reused else 'trained'})")
        return 0
    parser_dir = keyed_run_dir(runs_dir(data_dir, "parser"), parser_key(config, root, args.celebamask_dir))
    if not is_finished(parser_dir):
        raise FileNotFoundError(f"the profile's parser run {parser_dir} is not finished; run pretrain-parser first "
                                f"(same --profile / --data-dir{' / --seed' if args.seed is not None else ''})")
    parser_run = workbook.parser_run(config, data_dir, args.celebamask_dir, progress=False)   # reused
    run = train_reconstruction(config, root, parser_run.run_dir, progress=progress,
                               runs_root=runs_dir(data_dir, "reconstruction"), device=context.device,
                               description="distributed training")
    if is_main_process():
        print(f"reconstruction run: {run.run_dir} ({'reused' if run.reused else 'trained'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DistributedContext", "ENV_VARS", "all_finite", "barrier", "distributed_context", "init_distributed",
           "is_main_process", "launched_by_torchrun", "local_slice", "main", "mean_over_ranks", "rank_and_world",
           "sync_batch_norm", "teardown", "wrap_model"]
