"""The runs every notebook builds on, in one place: the synthetic benchmarks, the face parser of notebook 02 and
the DF-MVR run of notebook 03 of a profile, under one data folder (``data_dir``, ``../data`` from the notebooks).

- :func:`dataset_dir`: the one way to name a benchmark folder, ``<data_dir>/synthetic_<profile>_<preset>``, and
  :func:`runs_dir`, the parent of the keyed run folders, ``<data_dir>/runs/<kind>`` (both defined in
  :mod:`dfmvr_lib.runs`, with the run directories' lifecycle, and re-exported here);
- :func:`benchmark`: generate it (reused when finished, resumed when interrupted);
- :func:`parser_run`: pretrain the profile's parser on the pixelface-like benchmark (reused when finished);
- :func:`notebook_03_run` / :func:`notebook_03_runs`: the profile's DF-MVR run(s) of notebook 03 (reused when
  finished).

Each call prints nothing and trains nothing that is already finished, so every notebook can start with them.
:func:`experiment_setup` is the common start of the experiment notebooks 04-08 (the tables).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import WorkbookConfig, get_config
from .data.synthetic import generate_benchmark
from .experiments.training_runs import train_method, train_methods
from .face_model.factory import load_face_model
from .parsing import pretrain_parser
from .precision import precision_note
from .provenance import results_paths
from .runs import MAIN_PRESET, dataset_dir, runs_dir
from .training import train_reconstruction


def benchmark(config: WorkbookConfig, data_dir: str | os.PathLike, preset: str = MAIN_PRESET,
              progress: bool = True) -> Path:
    """The profile's synthetic benchmark of ``preset`` (generated if needed); returns its folder."""
    return generate_benchmark(dataset_dir(data_dir, config.profile, preset), config, preset, progress=progress)


def parser_run(config: WorkbookConfig, data_dir: str | os.PathLike, celebamask_dir=None, progress: bool = True):
    """The profile's face parser (notebook 02), pretrained on the pixelface-like benchmark if needed."""
    return pretrain_parser(config, benchmark(config, data_dir, progress=progress), celebamask_root=celebamask_dir,
                           runs_root=runs_dir(data_dir, "parser"), progress=progress)


def notebook_03_run(config: WorkbookConfig, data_dir: str | os.PathLike, progress: bool = True):
    """The profile's DF-MVR run of notebook 03 (``training.steps`` steps, ``config.seed``), trained if needed; the
    default checkpoint of ``dfmvr reconstruct``."""
    return train_reconstruction(config, benchmark(config, data_dir, progress=progress),
                                parser_run(config, data_dir, progress=progress).run_dir,
                                runs_root=runs_dir(data_dir, "reconstruction"), progress=progress,
                                description="notebook 03 run")


def notebook_03_runs(config: WorkbookConfig, data_dir: str | os.PathLike, progress: bool = True) -> list:
    """Notebook 03's DF-MVR runs for every seed of the profile (``config.seeds``), trained if needed
    ``experiments.parallel_trainings`` at a time (two one-thread trainings side by side on the cpu profile's 2
    cores take the time of one); the first is :func:`notebook_03_run`. Also Table I's full-schedule row."""
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


@dataclass
class ExperimentSetup:
    """What every table notebook (04-08) starts from (:func:`experiment_setup`).

    config: the profile's configuration; figures, tables: ``results_dir``'s figure and table folders; model: the
    reconstruction's face model; pixelface_root: the pixelface-like benchmark; parser_run: notebook 02's parser
    run; comparison_seeds: the seeds of the comparison tables (``experiments.comparison_seeds`` of ``config.seeds``;
    the ablation uses every seed); common: the keyword arguments every ``run_table`` call shares (profile, parser
    run, seeds, runs folder, trainings side by side).
    """

    config: WorkbookConfig
    figures: Path
    tables: Path
    model: object
    pixelface_root: Path
    parser_run: object
    comparison_seeds: tuple
    common: dict

    def summary(self) -> str:
        """One line: seeds, training steps per run, trainings side by side and the precision."""
        experiments, training = self.config.experiments, self.config.training
        return (f"seeds {self.comparison_seeds} (ablation: {self.config.seeds}), "
                f"{experiments.training_steps or training.steps} training steps per run, "
                f"{experiments.parallel_trainings} trainings side by side; {precision_note(training.precision)}")


def experiment_setup(profile: str, results_dir: str | os.PathLike, data_dir: str | os.PathLike) -> ExperimentSetup:
    """The profile's configuration, output folders, face model, pixelface-like benchmark and parser run (each
    generated or trained when missing, see :func:`benchmark` and :func:`parser_run`), and the arguments that the
    tables' ``run_table`` calls share."""
    config = get_config(profile)
    figures, tables = results_paths(results_dir)
    parser = parser_run(config, data_dir)
    seeds = config.seeds[:config.experiments.comparison_seeds]
    common = dict(profile=profile, parser_run_dir=parser.run_dir, seeds=seeds,
                  runs_root=runs_dir(data_dir, "reconstruction"),
                  parallel_trainings=config.experiments.parallel_trainings)
    return ExperimentSetup(config=config, figures=figures, tables=tables, model=load_face_model(config.face_model),
                           pixelface_root=benchmark(config, data_dir, MAIN_PRESET), parser_run=parser,
                           comparison_seeds=seeds, common=common)


__all__ = ["MAIN_PRESET", "ExperimentSetup", "benchmark", "dataset_dir", "experiment_setup", "notebook_03_run",
           "notebook_03_runs", "parser_run", "runs_dir"]
