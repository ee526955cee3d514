"""Executors of a table's training runs (dfmvr_lib.experiments.executors): submitit's local executor trains the runs
in the keyed run directories an in-process training uses, a failed job names its run and its log, a second call
reuses the runs without submitting anything, bad settings name their field, and the environment selects SLURM with
the SLURM settings in the job script."""
import dataclasses
import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pytest

from dfmvr_lib.config import SlurmConfig, WorkbookConfig, get_config
from dfmvr_lib.experiments.executors import (RunFailedError, executor_settings, make_submitit_executor,
                                             validate_settings)
from dfmvr_lib.experiments.methods import method_config
from dfmvr_lib.experiments.training_runs import train_methods

TINY = {"training.steps": 2, "training.checkpoint_every": 2, "losses.use_mask": False,
        "training.input_masks": "ground_truth"}
"""Two-step smoke runs that need no parser run."""


@pytest.fixture(autouse=True)
def no_executor_environment(monkeypatch):
    """The tests choose their executor themselves: a DFMVR_EXECUTOR / DFMVR_SLURM_* of the caller's shell is
    removed."""
    for name in list(os.environ):
        if name == "DFMVR_EXECUTOR" or name.startswith("DFMVR_SLURM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
    from dfmvr_lib.data.synthetic import generate_benchmark

    config = get_config("smoke", {"data.train_subjects": 2, "data.validation_subjects": 1, "data.test_subjects": 1})
    return generate_benchmark(tmp_path_factory.mktemp("executors") / "synthetic", config, progress=False)


def _keyed_dir(runs_root: Path, benchmark, seed: int) -> Path:
    from dfmvr_lib.runs import run_hash
    from dfmvr_lib.training.loop import run_key

    return runs_root / run_hash(run_key(method_config("smoke", "dfmvr", seed, TINY), benchmark, None))


class _NoSubmission(Exception):
    pass


def _refuse(*args, **kwargs):
    raise _NoSubmission("nothing should be submitted")


@pytest.mark.slow
def test_local_jobs_train_the_keyed_runs_of_an_inline_training_name_a_failed_run_and_are_reused(
        tiny_benchmark, tmp_path, monkeypatch):
    """One job array of three runs, one of them on a benchmark that does not exist: the two others finish in
    their keyed run directories; the error names the failed run and its log."""
    import submitit

    jobs = [("dfmvr", 0, TINY), ("dfmvr", 1, TINY)]
    common = dict(profile="smoke", dataset_root=tiny_benchmark, parser_run_dir=None, progress=False)
    runs_root = tmp_path / "runs"
    missing = tmp_path / "no_benchmark"
    with pytest.raises(RunFailedError, match=r"1 of 3 training run\(s\) failed") as failure:
        train_methods(jobs + [("dfmvr", 3, TINY, missing)], runs_root=runs_root, executor="local", **common)
    message = str(failure.value)
    assert "dfmvr seed 3" in message and "dfmvr seed 0" not in message and "dfmvr seed 1" not in message
    assert "FileNotFoundError" in message and str(missing) in message
    log = Path(message.split("log: ")[1].split()[0])
    assert log.parent == tmp_path / "submitit" and "Traceback" in log.read_text()   # <runs_root>/../submitit
    run_dirs = [_keyed_dir(runs_root, tiny_benchmark, seed) for seed in (0, 1)]
    for run_dir in run_dirs:
        assert (run_dir / "done.json").is_file() and len(pd.read_csv(run_dir / "metrics.csv")) == 2
    logs = sorted((tmp_path / "submitit").glob("*_log.out"))
    assert len(logs) == 3

    # the default executor ("processes") with one worker trains in this process: the same keyed run directory
    with monkeypatch.context() as patch:
        patch.setattr(multiprocessing, "get_context", _refuse)
        [inline] = train_methods(jobs[:1], runs_root=tmp_path / "inline", workers=1, **common)
    assert Path(inline).name == run_dirs[0].name
    local_losses = pd.read_csv(run_dirs[0] / "metrics.csv")["total"]
    inline_losses = pd.read_csv(Path(inline) / "metrics.csv")["total"]
    assert local_losses.tolist() == pytest.approx(inline_losses.tolist(), rel=1e-4)

    # asked again (also with SLURM chosen from the environment): reused, nothing submitted, nothing rewritten
    stamps = [(d / "final.pt").stat().st_mtime_ns for d in run_dirs]
    monkeypatch.setattr(submitit, "AutoExecutor", _refuse)
    assert train_methods(jobs, runs_root=runs_root, executor="local", **common) == [str(d) for d in run_dirs]
    monkeypatch.setenv("DFMVR_EXECUTOR", "slurm")
    assert train_methods(jobs, runs_root=runs_root, **common) == [str(d) for d in run_dirs]
    assert [(d / "final.pt").stat().st_mtime_ns for d in run_dirs] == stamps
    assert sorted((tmp_path / "submitit").glob("*_log.out")) == logs


def test_bad_settings_raise_value_error_naming_the_field(tmp_path):
    experiments = get_config("smoke").experiments
    with pytest.raises(ValueError, match="experiments.executor"):
        train_methods([], profile="smoke", dataset_root=tmp_path, parser_run_dir=None, runs_root=tmp_path,
                      executor="cloud")
    with pytest.raises(ValueError, match="experiments.parallel_trainings"):
        train_methods([], profile="smoke", dataset_root=tmp_path, parser_run_dir=None, runs_root=tmp_path,
                      workers=0)
    for name, value in (("gpus_per_job", -1), ("cpus_per_task", 0), ("timeout_minutes", 0), ("mem_gb", 0),
                        ("partition", ""), ("extra_parameters", ["account=x"])):
        bad = dataclasses.replace(experiments, slurm=dataclasses.replace(SlurmConfig(), **{name: value}))
        with pytest.raises(ValueError, match=f"experiments.slurm.{name}"):
            validate_settings(bad)
    assert validate_settings(experiments) is experiments
    for environ, field in (({"DFMVR_EXECUTOR": "cloud"}, "experiments.executor"),
                           ({"DFMVR_SLURM_GPUS_PER_JOB": "two"}, "DFMVR_SLURM_GPUS_PER_JOB"),
                           ({"DFMVR_SLURM_EXTRA_PARAMETERS": "[1]"}, "DFMVR_SLURM_EXTRA_PARAMETERS"),
                           ({"DFMVR_SLURM_PARTITON": "gpu"}, "DFMVR_SLURM_PARTITON")):
        with pytest.raises(ValueError, match=field):
            executor_settings(experiments, environ)


def test_the_environment_selects_slurm_and_its_settings_reach_the_job_script(tmp_path, monkeypatch):
    experiments = get_config("paper").experiments
    assert (experiments.executor, experiments.parallel_trainings) == ("processes", 1)
    assert executor_settings(experiments, {}) == experiments
    settings = executor_settings(experiments, {"DFMVR_EXECUTOR": "slurm", "DFMVR_SLURM_PARTITION": "gpu",
                                               "DFMVR_SLURM_GPUS_PER_JOB": "1", "DFMVR_SLURM_MEM_GB": "32",
                                               "DFMVR_SLURM_TIMEOUT_MINUTES": "600",
                                               "DFMVR_SLURM_EXTRA_PARAMETERS": '{"account": "face_lab"}'})
    assert settings.executor == "slurm"
    assert settings.slurm == SlurmConfig(partition="gpu", gpus_per_job=1, mem_gb=32, timeout_minutes=600,
                                         extra_parameters={"account": "face_lab"})
    assert get_config("paper").experiments == experiments        # the profile itself is unchanged
    chosen = get_config("paper", {"experiments.executor": "slurm", "experiments.slurm": settings.slurm})
    assert WorkbookConfig.from_dict(chosen.to_dict()) == chosen  # saved with a run (final.pt) and read back

    fake_bin = tmp_path / "bin"                                   # submitit's SLURM executor looks for srun
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executor = make_submitit_executor(settings, tmp_path / "runs", count=3)
    script = executor._executor._make_submission_file_text("python -u job.py", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--mem=32GB", "--time=600", "--cpus-per-task=4",
                 "--account=face_lab", "--ntasks-per-node=1", f"--output={tmp_path / 'submitit'}"):
        assert f"#SBATCH {line}" in script, line
    no_gpu = make_submitit_executor(dataclasses.replace(settings, slurm=SlurmConfig()), tmp_path / "runs")
    assert "gpus" not in no_gpu._executor._make_submission_file_text("python -u job.py", "uid")
