"""Which trained run reconstructs: the workbook's default run of a profile, found without training, or a run
directory the user names; and loading it with its frozen face parser.

The default run is the one notebook 03 trains (``make main`` for the ``cpu`` profile)::

    root       = generate_benchmark(<data_dir>/synthetic_<profile>_pixelface-like, config, "pixelface-like")
    parser_run = pretrain_parser(config, root, runs_root=<data_dir>/runs/parser)
    run        = train_reconstruction(config, root, parser_run.run_dir, runs_root=<data_dir>/runs/reconstruction)

Both run directories are keyed by hashes of what they depend on (:func:`dfmvr_lib.parsing.training.run_key`,
:func:`dfmvr_lib.training.loop.run_key`), so they can be located by computing the same keys
(:func:`dfmvr_lib.parsing.training.parser_run_dir`, :func:`dfmvr_lib.training.loop.reconstruction_run_dir`, under
:func:`dfmvr_lib.runs.runs_dir`; the benchmark folder is :func:`dfmvr_lib.runs.dataset_dir`). The benchmark's
generator settings enter the keys; when the benchmark folder is gone (deleted to save space) they are recomputed
from the configuration (:meth:`~dfmvr_lib.data.synthetic_settings.SyntheticSettings.from_config`), which gives the
same values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..camera import PerspectiveCamera
from ..config import WorkbookConfig, get_config
from ..data.synthetic_settings import SyntheticSettings
from ..face_model.base import MorphableModel
from ..face_model.factory import load_face_model
from ..parsing import frozen_parser, load_run_model
from ..parsing.training import parser_run_dir as keyed_parser_run_dir
from ..provenance import REPOSITORY_ROOT
from ..runs import (FINAL, FINISHED_FILES, MAIN_PRESET, checkpoint_errors, dataset_dir, is_finished,
                    parser_run_candidates, parser_run_name, read_dataset_settings, runs_dir)
from ..training.loop import load_trained_network, reconstruction_run_dir

DEFAULT_PROFILE = "cpu"
DEFAULT_PRESET = MAIN_PRESET


def default_data_dir() -> Path:
    """``<repository>/data``: where the notebooks keep benchmarks and training runs (``data_dir="../data"``)."""
    return REPOSITORY_ROOT / "data"


class CheckpointNotFound(FileNotFoundError):
    """No finished training run where one was expected; the message says how to make or name one."""


def _dataset_settings(config: WorkbookConfig, dataset_root: Path, preset: str):
    recorded = read_dataset_settings(dataset_root)
    return recorded if recorded is not None else SyntheticSettings.from_config(config, preset).to_dict()


@dataclass(frozen=True)
class DefaultRuns:
    """The keyed run directories of a profile's default training (they may not exist yet)."""

    profile: str
    dataset_root: Path
    parser_run_dir: Path
    reconstruction_run_dir: Path


def default_runs(profile: str = DEFAULT_PROFILE, data_dir: str | os.PathLike | None = None,
                 preset: str = DEFAULT_PRESET) -> DefaultRuns:
    """Where notebooks 02 and 03 put the parser and reconstruction runs of ``profile`` (computed, nothing is
    trained or read besides the benchmark's ``settings.json`` when present)."""
    config = get_config(profile)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    dataset_root = dataset_dir(data_dir, profile, preset)
    settings = _dataset_settings(config, dataset_root, preset)
    parser_run_dir = keyed_parser_run_dir(config, dataset_root, runs_dir(data_dir, "parser"),
                                          dataset_settings=settings)
    reconstruction_dir = reconstruction_run_dir(config, dataset_root, parser_run_dir,
                                                runs_dir(data_dir, "reconstruction"), dataset_settings=settings)
    return DefaultRuns(profile, dataset_root, parser_run_dir, reconstruction_dir)


def default_checkpoint(profile: str = DEFAULT_PROFILE, data_dir: str | os.PathLike | None = None) -> Path:
    """The finished default reconstruction run of ``profile``; :class:`CheckpointNotFound` with instructions when
    it has not been trained."""
    runs = default_runs(profile, data_dir)
    if not is_finished(runs.reconstruction_run_dir):
        raise CheckpointNotFound(
            f"no trained {profile}-profile reconstruction run at {runs.reconstruction_run_dir} (it needs "
            f"{_finished_files()}). Train it by running notebooks 02 and 03 with profile={profile!r} (for the cpu "
            "profile: `make main`, or `python -m dfmvr_lib.run_notebooks --profile cpu --only 01 02 03`), or pass "
            "--checkpoint RUN_DIR with a finished run directory.")
    return runs.reconstruction_run_dir


def parser_run_of(run_dir: str | os.PathLike) -> Path | None:
    """The finished parser run a reconstruction run was trained with, looked up by the name recorded in its
    ``run.json`` in ``<runs>/parser/`` beside ``<runs>/reconstruction/`` (the notebooks' layout) and in
    ``<run_dir>/../parser/`` (:func:`dfmvr_lib.runs.parser_run_candidates`); None when the run recorded none or it
    is not found. :class:`~dfmvr_lib.runs.CheckpointFileError` when its ``run.json`` is unreadable."""
    try:
        name = parser_run_name(run_dir)
    except FileNotFoundError:
        return None
    if not name:
        return None
    for candidate in parser_run_candidates(run_dir, name):
        if is_finished(candidate):
            return candidate
    return None


def _finished_files() -> str:
    """``"final.pt and done.json"``: what a finished run holds, for the messages."""
    return " and ".join(FINISHED_FILES)


@dataclass
class Reconstructor:
    """A trained network with everything needed around it.

    network: :class:`~dfmvr_lib.networks.DFMVRNet` in eval mode; config: its training configuration; model and
    camera: the morphable model and the camera of its images (``config.image_size`` pixels); parser: the frozen face
    parser of its training run, or None when it was not found; run_dir / parser_run_dir: where they came from.
    """

    network: torch.nn.Module
    config: WorkbookConfig
    model: MorphableModel
    camera: PerspectiveCamera
    parser: torch.nn.Module | None
    run_dir: Path
    parser_run_dir: Path | None

    @property
    def image_size(self) -> int:
        return self.config.image_size


def load_reconstructor(run_dir: str | os.PathLike, parser_run_dir: str | os.PathLike | None = None) -> Reconstructor:
    """Load a finished reconstruction run and its frozen parser.

    Args:
        run_dir: a finished run directory of :func:`dfmvr_lib.training.train_reconstruction`.
        parser_run_dir: the parser run; default :func:`parser_run_of` (None when not found: the caller decides
            whether to go on without it).
    Raises:
        CheckpointNotFound when ``run_dir`` (or an explicit ``parser_run_dir``) is not a finished run;
        :class:`~dfmvr_lib.runs.UnsafeCheckpointError` when a ``final.pt`` holds pickled Python
        objects other than tensors and plain containers (refused, never run: ``torch.load`` with
        ``weights_only=True``); :class:`~dfmvr_lib.runs.CheckpointFileError` (a ``ValueError``)
        naming the file when it is corrupt, truncated or not a run of that kind; ValueError for a
        one-face-per-view baseline network (the reconstruction needs a multi-view network).
    """
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise CheckpointNotFound(f"{run_dir} is not a finished reconstruction run (it needs {_finished_files()}); "
                                 "pass the directory of a run that train_reconstruction finished")
    if parser_run_dir is not None and not is_finished(parser_run_dir):
        raise CheckpointNotFound(f"{parser_run_dir} is not a finished parser run (it needs {_finished_files()})")
    with checkpoint_errors(run_dir / FINAL, f"reconstruction run's {FINAL}"):
        network, config = load_trained_network(run_dir)
    if network.per_view_faces:
        raise ValueError(f"{run_dir} holds a one-image-per-view baseline network ({config.network.regressor}), "
                         "which predicts one face per view; reconstruction needs a multi-view DF-MVR run")
    if parser_run_dir is None:
        parser_run_dir = parser_run_of(run_dir)
    parser = None
    if parser_run_dir is not None:
        with checkpoint_errors(Path(parser_run_dir) / FINAL, f"parser run's {FINAL}"):
            parser = frozen_parser(load_run_model(parser_run_dir))
    return Reconstructor(network=network, config=config, model=load_face_model(config.face_model),
                         camera=PerspectiveCamera.from_config(config), parser=parser, run_dir=run_dir,
                         parser_run_dir=Path(parser_run_dir) if parser_run_dir is not None else None)


__all__ = ["CheckpointNotFound", "DEFAULT_PROFILE", "DefaultRuns", "Reconstructor", "default_checkpoint",
           "default_data_dir", "default_runs", "load_reconstructor", "parser_run_of"]
