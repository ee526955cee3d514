"""The runs every notebook builds on, in one place: the synthetic benchmarks, the face parser of notebook 02 and
the DF-MVR run of notebook 03 of a profile, under one data folder (``data_dir``, ``../data`` from the notebooks).

- :func:`dataset_dir`: the one way to name a benchmark folder, ``<data_dir>/synthetic_<profile>_<preset>``;
- :func:`benchmark`: generate it (reused when finished, resumed when interrupted);
- :func:`parser_run`: pretrain the profile's parser on the pixelface-like benchmark (reused when finished);
- :func:`notebook_03_run` / :func:`notebook_03_runs`: the profile's DF-MVR run(s) of notebook 03 (reused when
  finished).

Each call prints nothing and trains nothing that is already finished, so every notebook can start with them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import WorkbookConfig

MAIN_PRESET = "pixelface-like"


def dataset_dir(data_dir: str | os.PathLike, profile: str, preset: str = MAIN_PRESET) -> Path:
    """``<data_dir>/synthetic_<profile>_<preset>``: where a profile's benchmark of ``preset`` lives."""
    return Path(data_dir) / f"synthetic_{profile}_{preset}"


def runs_dir(data_dir: str | os.PathLike, kind: str) -> Path:
    """``<data_dir>/runs/<kind>`` (``"parser"``, ``"reconstruction"``): the parent of the keyed run folders."""
    return Path(data_dir) / "runs" / kind


def benchmark(config: WorkbookConfig, data_dir: str | os.PathLike, preset: str = MAIN_PRESET,
              progress: bool = True) -> Path:
    """The profile's synthetic benchmark of ``preset`` (generated if needed); returns its folder."""
    from .data.synthetic import generate_benchmark

    return generate_benchmark(dataset_dir(data_dir, config.profile, preset), config, preset, progress=progress)


def parser_run(config: WorkbookConfig, data_dir: str | os.PathLike, celebamask_dir=None, progress: bool = True):
    """The profile's face parser (notebook 02), pretrained on the pixelface-like benchmark if needed."""
    from .parsing import pretrain_parser

    return pretrain_parser(config, benchmark(config, data_dir, progress=progress), celebamask_root=celebamask_dir,
                           runs_root=runs_dir(data_dir, "parser"), progress=progress)


def notebook_03_run(config: WorkbookConfig, data_dir: str | os.PathLike, progress: bool = True):
    """The profile's DF-MVR run of notebook 03 (``training.steps`` steps, ``config.seed``), trained if needed; the
    default checkpoint of ``dfmvr reconstruct``."""
    from .training import train_reconstruction

    return train_reconstruction(config, benchmark(config, data_dir, progress=progress),
                                parser_run(config, data_dir, progress=progress).run_dir,
                                runs_root=runs_dir(data_dir, "reconstruction"), progress=progress,
                                description="notebook 03 run")


def notebook_03_runs(config: WorkbookConfig, data_dir: str | os.PathLike, progress: bool = True) -> list:
    """Notebook 03's DF-MVR runs for every seed of the profile (``config.seeds``), trained if needed
    ``experiments.parallel_trainings`` at a time (two one-thread trainings side by side on the cpu profile's 2
    cores take the time of one); the first is :func:`notebook_03_run`. Also Table I's full-schedule row."""
    from .experiments.tables import train_method, train_methods

    root = benchmark(config, data_dir, progress=progress)
    parser = parser_run(config, data_dir, progress=progress).run_dir
    full = {"training.steps": config.training.steps}
    common = dict(profile=config.profile, dataset_root=root, parser_run_dir=parser,
                  runs_root=runs_dir(data_dir, "reconstruction"))
    train_methods([("dfmvr", seed, full) for seed in config.seeds], workers=config.experiments.parallel_trainings,
                  progress=progress, **common)
    runs = [train_method(method="dfmvr", seed=seed, overrides=full, progress=progress, **common)
            for seed in config.seeds]
    return runs


__all__ = ["MAIN_PRESET", "benchmark", "dataset_dir", "notebook_03_run", "notebook_03_runs", "parser_run",
           "runs_dir"]
