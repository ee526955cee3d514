"""Parser pretraining with a resumable, reusable run directory.

:func:`pretrain_parser` trains a :class:`~dfmvr_lib.parsing.bisenet.BiSeNet` on the synthetic benchmark's exact
parse maps (each of the three views of every train sample is one training image), optionally mixed with
CelebAMask-HQ (``celebamask_root``; ``ParserConfig.celebamask_fraction`` of each batch), with the augmentations of
:mod:`dfmvr_lib.parsing.augment`; AdamW (Adam with decoupled ``weight_decay``), linear warm-up then cosine decay,
cross-entropy on the main head plus ``aux_weight`` x that of each auxiliary head, plus ``dice_weight`` x a batch soft
Dice loss of the main head (:func:`soft_dice_loss`: each class weighs the same, so the thin brows and lips, a few
hundred pixels of a 12,544-pixel image, are not drowned by the background and skin as under the cross-entropy
alone); ``ohem_fraction`` > 0 swaps the cross-entropy for face-parsing.PyTorch's online hard example mining
(:func:`ohem_cross_entropy`). ``precision``: the forward pass runs under CPU bfloat16 autocast where it resolves to
bf16 (:mod:`dfmvr_lib.precision`: ``"auto"`` picks bf16 only on CPUs with native bf16; the losses are computed in
float32), else in fp32.

Run directory ``<runs_root>/<key>/`` (``runs_root`` defaults to ``<repository>/runs/parser``; :func:`parser_run_dir`),
``key`` = hash of the parser config, image size, seed and the dataset settings (the benchmark's ``settings.json``
and the CelebAMask-HQ path), through the workbook's one run lifecycle, :class:`dfmvr_lib.runs.ResumableRun`:

- ``run.json``: what the key was computed from;
- ``checkpoint.pt``: model, optimiser, step, metrics so far; written atomically every ``checkpoint_every`` steps;
- ``metrics.csv``: ``step, loss, lr, seconds`` (cumulative training seconds), rewritten with each checkpoint;
- ``final.pt`` (model state) and ``done.json`` (steps, training seconds and the git commit(s) that trained the run,
  :func:`dfmvr_lib.runs.done_record`): written at the end; a finished run is reused as is.

An interrupted run resumes from ``checkpoint.pt``. Batches and augmentations are drawn from a generator seeded by
(seed, step), so a resumed run reaches the same weights as an uninterrupted one (on CPU).

Several processes (torchrun, :mod:`dfmvr_lib.distributed`): the global batch of ``batch_size`` images (divisible by
the world size) is drawn and augmented as in one process and rank r trains on its chunk r, the model wrapped in
DistributedDataParallel (SyncBatchNorm on CUDA); the soft Dice term sums its pixel counts over all ranks, so it is
the global batch's; rank 0 alone writes the run files (same run folder as one process). ``ohem_fraction`` > 0 picks
the hardest pixels per rank (an approximation of the global selection).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..config import ParserConfig, WorkbookConfig
from ..data.celebamask import CelebAMaskDataset
from ..data.sample import VIEW_NAMES
from ..data.synthetic import load_manifest
from ..distributed import local_slice, mean_over_ranks, rank_and_world, sync_batch_norm, wrap_model
from ..precision import autocast, precision_note, resolve_precision
from ..provenance import REPOSITORY_ROOT
from ..runs import (FINAL, METRICS, ResumableRun, keyed_run_dir, load_checkpoint_file, read_dataset_settings,
                    run_hash, runs_dir)
from .augment import augment_batch
from .bisenet import BiSeNet, build_parser


def default_runs_root() -> Path:
    """``<repository>/runs/parser``: where :func:`pretrain_parser` keys its runs when given no ``runs_root``."""
    return runs_dir(REPOSITORY_ROOT, "parser")


@dataclass
class ParserRun:
    """A pretraining run: its directory, the trained model (eval mode), metrics, whether it was reused from a
    finished run and from which step it resumed (0 = fresh), and the training seconds of this call."""

    run_dir: Path
    model: BiSeNet
    metrics: pd.DataFrame
    reused: bool
    resumed_from: int
    seconds: float
    finished: bool = True


class SyntheticParsingImages:
    """All views of one split of a synthetic benchmark as uint8 tensors: images (N, 3, H, W), labels (N, H, W)."""

    def __init__(self, root: str | os.PathLike, split: str = "train"):
        self.root = Path(root)
        manifest = load_manifest(self.root)
        rows = manifest[manifest["split"] == split]
        images, labels = [], []
        for _, row in rows.iterrows():
            for view in VIEW_NAMES:
                with Image.open(self.root / row[f"image_{view}"]) as image:
                    images.append(np.asarray(image.convert("RGB")))
                with Image.open(self.root / row[f"parse_{view}"]) as parse:
                    labels.append(np.asarray(parse))
        if not images:
            raise ValueError(f"no {split} samples in {self.root}")
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(np.stack(labels).astype(np.int64))

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices].float() / 255.0, self.labels[indices]


def run_key(config: WorkbookConfig, dataset_root: str | os.PathLike, celebamask_root=None, *,
            dataset_settings: Any = None) -> dict:
    """What identifies a run: parser config, the precision it resolves to here, image size, seed, the benchmark's
    generator settings (``dataset_settings`` when given, e.g. recomputed from the configuration when the benchmark
    folder is gone; else read from ``dataset_root``), CelebAMask path."""
    settings = dataset_settings if dataset_settings is not None else read_dataset_settings(dataset_root)
    return {"parser": dataclasses.asdict(config.parser), "precision": resolve_precision(config.parser.precision),
            "image_size": config.image_size, "seed": config.seed, "dataset_settings": settings,
            "celebamask_root": str(celebamask_root) if celebamask_root else None}


def parser_run_dir(config: WorkbookConfig, dataset_root: str | os.PathLike, runs_root: str | os.PathLike | None = None,
                   celebamask_root=None, *, dataset_settings: Any = None) -> Path:
    """The keyed run directory :func:`pretrain_parser` trains ``config`` into (``<runs_root>/<run_hash(run_key)>``,
    :func:`dfmvr_lib.runs.keyed_run_dir`; default ``runs_root`` :func:`default_runs_root`); computed, nothing read
    besides the benchmark's ``settings.json``."""
    key = run_key(config, dataset_root, celebamask_root, dataset_settings=dataset_settings)
    return keyed_run_dir(runs_root if runs_root is not None else default_runs_root(), key)


def learning_rate(parser_config, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps`` (``step`` counts from 0)."""
    base, warmup, total = parser_config.learning_rate, parser_config.warmup_steps, parser_config.steps
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _full_precision(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision (bf16 autocast) logits as float32; float32 / float64 unchanged."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Batch soft Dice loss: mean over classes k of 1 - (2 sum p_k y_k + eps) / (sum p_k + sum y_k + eps), sums over
    all pixels of the batch, p = softmax(logits), y = one-hot labels (all classes, absent ones included). On several
    processes (with gradients on) the sums run over the global batch (a differentiable all-reduce): the loss is the
    global batch's on every rank; the all-reduce's backward sums the ranks' gradients (world x the gradient) and
    DistributedDataParallel's average divides by the world size again, so the gradient is the global batch's."""
    probabilities = torch.softmax(_full_precision(logits), dim=1)
    one_hot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    intersection = (probabilities * one_hot).sum(dim=(0, 2, 3))
    total = probabilities.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
    world = rank_and_world()[1]
    if world > 1 and torch.is_grad_enabled():
        # here: torch.distributed.nn is only needed (and only importable everywhere) on several processes
        from torch.distributed.nn.functional import all_reduce

        with warnings.catch_warnings():     # torch 2.13 deprecates it, but its suggested replacement has no autograd
            warnings.simplefilter("ignore", FutureWarning)
            sums = all_reduce(torch.cat([intersection, total]))
        intersection, total = sums[:intersection.shape[0]], sums[intersection.shape[0]:]
    return (1.0 - (2.0 * intersection + eps) / (total + eps)).mean()


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, fraction: float,
                       threshold: float = 0.7) -> torch.Tensor:
    """Online hard example mining cross-entropy (as face-parsing.PyTorch's ``OhemCELoss``): the mean loss of the
    pixels whose probability of the true class is below ``threshold``, or of the ``fraction`` hardest pixels when
    there are fewer of those."""
    losses = F.cross_entropy(_full_precision(logits), labels, reduction="none").reshape(-1)
    n_min = min(max(1, int(fraction * losses.numel())), losses.numel())
    losses, _ = torch.sort(losses, descending=True)
    if n_min < losses.numel() and losses[n_min] > -math.log(threshold):
        return losses[losses > -math.log(threshold)].mean()
    return losses[:n_min].mean()


def parser_loss(outputs, labels: torch.Tensor, aux_weight: float, dice_weight: float = 0.0,
                ohem_fraction: float = 0.0) -> torch.Tensor:
    """Cross-entropy of the main head + ``aux_weight`` x that of each auxiliary head; ``dice_weight`` x
    :func:`soft_dice_loss` of the main head; ``ohem_fraction`` > 0 replaces the cross-entropy by
    :func:`ohem_cross_entropy`."""
    main, *aux = outputs if isinstance(outputs, (tuple, list)) else (outputs,)

    def ce(logits):
        if ohem_fraction > 0:
            return ohem_cross_entropy(logits, labels, ohem_fraction)
        return F.cross_entropy(_full_precision(logits), labels)

    loss = ce(main)
    for logits in aux:
        loss = loss + aux_weight * ce(logits)
    if dice_weight:
        loss = loss + dice_weight * soft_dice_loss(main, labels)
    return loss


METRIC_COLUMNS = ("step", "loss", "lr", "seconds")


def _celebamask_batch(dataset, count: int, generator: torch.Generator):
    indices = torch.randint(len(dataset), (count,), generator=generator)
    samples = [dataset[int(i)] for i in indices]
    return torch.stack([s.image for s in samples]), torch.stack([s.parse_map for s in samples])


def load_run_model(run_dir: str | os.PathLike) -> BiSeNet:
    """The model of a finished run directory (eval mode)."""
    state = load_checkpoint_file(Path(run_dir) / FINAL, "cpu", f"parser run's {FINAL}")
    model = BiSeNet(state["num_classes"], width=state["width"], internal_scale=state["internal_scale"],
                    refine=state.get("refine", False), detail=state.get("detail"),
                    channels_last=state.get("channels_last", False))
    model.load_state_dict(state["model"])
    return model.eval()


@dataclass
class _ParserTraining:
    """What one :func:`pretrain_parser` call trains with: the parser config and seed, the model (``trained``: it,
    or DistributedDataParallel around it), the optimiser, the train images (and CelebAMask-HQ), this rank's chunk
    of each global batch (None in one process), the precision and the device."""

    parser_config: ParserConfig
    seed: int
    model: BiSeNet
    trained: torch.nn.Module
    optimiser: torch.optim.Optimizer
    data: Any
    celeb: CelebAMaskDataset | None
    part: slice | None
    precision: str
    device: str | torch.device


def _parser_training(config: WorkbookConfig, run: ResumableRun, dataset_root, celebamask_root, images, device,
                     progress: bool) -> tuple[_ParserTraining, list[dict]]:
    """Build the model and optimiser (seeded by ``config.seed``), start ``run`` (``run.json``; the checkpoint's
    model, optimiser and metric rows when it resumes) and load the data; returns the training and the rows so
    far."""
    parser_config = config.parser
    world = rank_and_world()[1]
    part = local_slice(parser_config.batch_size, "parser.batch_size") if world > 1 else None
    precision = run.key["precision"]
    if progress and run.main:
        print(f"parser: {precision_note(parser_config.precision)}")
    torch.manual_seed(config.seed)
    model = sync_batch_norm(build_parser(parser_config).to(device), device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=parser_config.learning_rate,
                                  weight_decay=parser_config.weight_decay)
    state, rows = run.start(device), []
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rows = state["metrics"]
    trained = wrap_model(model, device)         # DistributedDataParallel on several processes
    data = images if images is not None else SyntheticParsingImages(dataset_root, "train")
    celeb = CelebAMaskDataset(celebamask_root, image_size=config.image_size) if celebamask_root else None
    return _ParserTraining(parser_config, config.seed, model, trained, optimiser, data, celeb, part, precision,
                           device), rows


def _parser_batch(training: _ParserTraining, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s batch, images (B, 3, H, W) in [0, 1] and labels (B, H, W), drawn and augmented from a
    generator seeded by (seed, step): the global batch, then this rank's chunk, on the training device."""
    parser_config = training.parser_config
    generator = torch.Generator().manual_seed(training.seed * 1_000_003 + step)
    count = parser_config.batch_size
    n_celeb = int(round(count * parser_config.celebamask_fraction)) if training.celeb is not None else 0
    images, labels = training.data.batch(torch.randint(len(training.data), (count - n_celeb,), generator=generator))
    if n_celeb:
        extra_images, extra_labels = _celebamask_batch(training.celeb, n_celeb, generator)
        images = torch.cat([images, extra_images])
        labels = torch.cat([labels, extra_labels])
    if parser_config.augment:
        images, labels = augment_batch(images, labels, generator)
    if training.part is not None:        # the global batch with its draws as in one process, then this rank's chunk
        images, labels = images[training.part], labels[training.part]
    if torch.device(training.device).type != "cpu":
        images, labels = images.to(training.device), labels.to(training.device)
    return images, labels


def _parser_step(training: _ParserTraining, step: int) -> tuple[float, float]:
    """One optimiser step at ``step`` (0-based); returns (the loss averaged over the ranks, the learning rate)."""
    parser_config = training.parser_config
    images, labels = _parser_batch(training, step)
    lr = learning_rate(parser_config, step)
    for group in training.optimiser.param_groups:
        group["lr"] = lr
    with autocast(training.precision):
        outputs = training.trained(images, aux=True)
    loss = parser_loss(outputs, labels, parser_config.aux_weight, getattr(parser_config, "dice_weight", 0.0),
                       getattr(parser_config, "ohem_fraction", 0.0))
    training.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    training.optimiser.step()
    return mean_over_ranks({"loss": loss.item()})["loss"], lr


def _final_state(model: BiSeNet) -> dict:
    """What ``final.pt`` holds: the model state and what :func:`load_run_model` rebuilds the model from."""
    return {"model": model.state_dict(), "num_classes": model.num_classes, "width": model.width,
            "internal_scale": model.internal_scale, "refine": model.refine is not None,
            "detail": model.detail_channels, "channels_last": model.channels_last}


def pretrain_parser(config: WorkbookConfig, dataset_root: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                    progress: bool = True, *, celebamask_root: str | os.PathLike | None = None,
                    runs_root: str | os.PathLike | None = None, stop_after: int | None = None,
                    images: SyntheticParsingImages | None = None,
                    device: str | torch.device = "cpu") -> ParserRun:
    """Pretrain (or reuse / resume) the face parser for ``config`` on the benchmark at ``dataset_root``.

    Args:
        config: the workbook config (``config.parser``, ``config.image_size``, ``config.seed``).
        dataset_root: a generated synthetic benchmark (its train split is used).
        run_dir: explicit run directory; default ``<runs_root>/<hash>/``.
        progress: tqdm bar with the loss.
        celebamask_root: optional CelebAMask-HQ folder mixed into the batches.
        runs_root: parent of hashed run directories (default ``<repository>/runs/parser``).
        stop_after: stop after this many steps of this call without finishing (simulates an interruption: only
            what the last checkpoint saved survives).
        images: preloaded train images (skips reading the benchmark).
        device: training device (the run key does not depend on it).
    """
    parser_config = config.parser
    run = ResumableRun.open(run_key(config, dataset_root, celebamask_root),
                            runs_root if runs_root is not None else default_runs_root(), run_dir, kind="parser")
    if run.finished:
        return ParserRun(run.run_dir, load_run_model(run.run_dir), run.read_table(METRICS), reused=True,
                         resumed_from=parser_config.steps, seconds=0.0)
    training, rows = _parser_training(config, run, dataset_root, celebamask_root, images, device, progress)
    model, start = training.model, run.resumed_from
    seconds_before = rows[-1]["seconds"] if rows else 0.0
    model.train()
    began = time.perf_counter()
    bar = tqdm(range(start, parser_config.steps), initial=start, total=parser_config.steps, desc="parser",
               disable=not (progress and run.main))
    done_here = 0
    for step in bar:
        if stop_after is not None and done_here >= stop_after:
            bar.close()
            return ParserRun(run.run_dir, model.eval(), pd.DataFrame(rows), reused=False, resumed_from=start,
                             seconds=time.perf_counter() - began, finished=False)
        loss_value, lr = _parser_step(training, step)
        done_here += 1
        rows.append({"step": step + 1, "loss": loss_value, "lr": lr,
                     "seconds": seconds_before + time.perf_counter() - began})
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if (step + 1) % parser_config.checkpoint_every == 0 or step + 1 == parser_config.steps:
            run.save_checkpoint({"model": model.state_dict(), "optimiser": training.optimiser.state_dict(),
                                 "step": step + 1, "metrics": rows}, {METRICS: (rows, METRIC_COLUMNS)})
    bar.close()
    model.eval()
    tables = run.finish(_final_state(model), {METRICS: (rows, METRIC_COLUMNS)}, parser_config.steps,
                        rows[-1]["seconds"] if rows else 0.0)
    return ParserRun(run.run_dir, model, tables[METRICS], reused=False, resumed_from=start,
                     seconds=time.perf_counter() - began)


__all__ = ["ParserRun", "SyntheticParsingImages", "default_runs_root", "learning_rate", "load_run_model",
           "ohem_cross_entropy", "parser_loss", "parser_run_dir", "pretrain_parser", "run_hash", "run_key",
           "soft_dice_loss"]
