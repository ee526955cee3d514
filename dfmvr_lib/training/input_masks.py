"""The network's face masks as in the paper: the frozen face parser of notebook 02 run on the input views.

In DF-MVR the parse net labels each input view; its labels are the mask channels of the network's input, the
photo-loss weight map and the target of the mask loss. :func:`parser_parse_maps` computes them for a whole split
once and caches them beside the dataset, keyed by the parser run:

``<dataset_root>/parser_masks/<parser run name>/<split>.pt`` holds ``parse_maps`` (M, S, H, W) uint8, the
SHA-256 of the parser run's ``final.pt`` and the number of samples. A cache written by another parser run (other
folder name) or by other weights in the same folder (other hash) is not used: the maps are computed again.

:func:`with_input_masks` returns the triplets with the masks a configuration asks for
(``TrainingConfig.input_masks``): ``"parser"`` (the paper's inputs, the default) or ``"ground_truth"`` (the
renderer's exact parse maps: an oracle that the paper's method does not have; rows that use it say so).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch

from ..parsing import frozen_parser, load_run_model
from ..runs import FINAL, FINISHED_FILES, is_finished, save_torch
from .data import TripletTensors

INPUT_MASKS = ("parser", "ground_truth")
CACHE_FOLDER = "parser_masks"
_MEMORY: dict[tuple, torch.Tensor] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parser_weights_id(parser_run_dir: str | os.PathLike) -> str:
    """What identifies a parser run's weights: the SHA-256 of its ``final.pt`` (raises ``FileNotFoundError`` naming
    the run when it is not finished)."""
    final = Path(parser_run_dir) / FINAL
    if not is_finished(parser_run_dir):
        needs = " and ".join(FINISHED_FILES)
        raise FileNotFoundError(f"{parser_run_dir}: not a finished parser run (it needs {needs})")
    return file_sha256(final)


def cache_path(dataset_root: str | os.PathLike, split: str, parser_run_dir: str | os.PathLike) -> Path:
    """Where the parser masks of ``split`` of the dataset at ``dataset_root`` are cached for that parser run."""
    return Path(dataset_root) / CACHE_FOLDER / Path(parser_run_dir).name / f"{split}.pt"


@torch.no_grad()
def run_parser_on_views(parser: torch.nn.Module, data: TripletTensors, batch_size: int = 32,
                        progress: bool = False, description: str = "parsing input views") -> torch.Tensor:
    """Argmax labels of ``parser`` on every view of ``data``: (M, S, H, W) uint8; views that are not present get
    label 0 everywhere."""
    from tqdm.auto import tqdm

    parser.eval()
    M, S = data.images.shape[:2]
    flat = data.images.reshape(M * S, *data.images.shape[2:])
    labels = torch.zeros(M * S, *flat.shape[2:], dtype=torch.uint8)
    for start in tqdm(range(0, M * S, batch_size), desc=description, disable=not progress, leave=False):
        images = flat[start:start + batch_size].float() / 255.0
        labels[start:start + batch_size] = parser(images, aux=False).argmax(1).to(torch.uint8)
    labels = labels.reshape(M, S, *labels.shape[1:])
    return labels * data.view_present[:, :, None, None].to(torch.uint8)


def parser_parse_maps(data: TripletTensors, dataset_root: str | os.PathLike, split: str,
                      parser_run_dir: str | os.PathLike, progress: bool = True) -> torch.Tensor:
    """The parser's labels of every input view of ``split`` (``data``: that split's triplets), (M, S, H, W) uint8.

    Read from the cache when it was written for the same parser weights and the same number of samples; otherwise
    computed with the run's frozen parser and cached (atomically)."""

    path = cache_path(dataset_root, split, parser_run_dir)
    weights = parser_weights_id(parser_run_dir)
    memory_key = (str(path.resolve()), weights, len(data))
    if memory_key in _MEMORY:
        return _MEMORY[memory_key]
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:                        # an unreadable cache is recomputed, not trusted
            cached = None
        if (isinstance(cached, dict) and cached.get("parser_weights_sha256") == weights
                and cached.get("samples") == len(data)
                and tuple(cached["parse_maps"].shape) == tuple(data.parse_maps.shape)):
            _MEMORY[memory_key] = cached["parse_maps"]
            return cached["parse_maps"]
    parser = frozen_parser(load_run_model(parser_run_dir))
    labels = run_parser_on_views(parser, data, progress=progress,
                                 description=f"parser masks of {Path(dataset_root).name}/{split}")
    save_torch({"parse_maps": labels, "parser_run": Path(parser_run_dir).name, "parser_weights_sha256": weights,
                "samples": len(data), "split": split}, path)
    _MEMORY[memory_key] = labels
    return labels


def with_input_masks(data: TripletTensors, input_masks: str, dataset_root: str | os.PathLike, split: str,
                     parser_run_dir: str | os.PathLike | None, progress: bool = True) -> TripletTensors:
    """``data`` with the parse maps ``input_masks`` asks for: ``"ground_truth"`` returns ``data`` as it is;
    ``"parser"`` replaces its parse maps with :func:`parser_parse_maps` (needs ``parser_run_dir``)."""
    if input_masks not in INPUT_MASKS:
        raise ValueError(f"unknown input_masks {input_masks!r}; choose one of {INPUT_MASKS}")
    if input_masks == "ground_truth":
        return data
    if parser_run_dir is None:
        raise ValueError("input_masks='parser' needs a finished parser run (parser_run_dir); pass one or set "
                         "training.input_masks='ground_truth' (an oracle)")
    labels = parser_parse_maps(data, dataset_root, split, parser_run_dir, progress)
    return dataclasses.replace(data, parse_maps=labels)


__all__ = ["CACHE_FOLDER", "INPUT_MASKS", "cache_path", "file_sha256", "parser_parse_maps", "parser_weights_id",
           "run_parser_on_views", "with_input_masks"]
