"""Several-process training (torchrun + DistributedDataParallel, gloo on CPU, dfmvr_lib.distributed).

Two gloo processes on the global batch reach the weights of one process (group norm: on CPU torch has no
SyncBatchNorm, so batch-norm statistics would be per rank), rank 0 alone writes the run files in the same run folder
as one process, a resumed two-process run ends where an uninterrupted one does; the batch size must divide by the
world size; the command line's bad arguments are one-line errors; without torchrun's environment everything is one
process.

Tolerances: the two processes compute the same sums in a different order (two half-batch gradients averaged
instead of one full-batch gradient, float32), so the weights differ by rounding, amplified by Adam where a gradient
component is near 0. Measured on this machine (4 reconstruction steps, 4 parser steps, smoke profile, one thread per
process, fp32 parser): max |weight difference| 1.2e-5 (parser, lr 5e-3) and 7e-6 (reconstruction, lr 1e-3), logged
losses within 1e-6; ``WEIGHT_ATOL`` = 1e-4 leaves ~8x. (With the CPU parser's bf16 autocast the difference grows to
1e-2, with per-rank batch norms to 3e-2 / 4e-4: hence fp32 and group norms here.) The resumed two-process run is
bit-identical to the uninterrupted one.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dfmvr_lib import distributed
from dfmvr_lib.config import get_config

REPOSITORY = Path(__file__).resolve().parents[1]

RECONSTRUCTION = {"network.normalization": "group", "training.steps": 4, "training.batch_size": 2,
                  "training.checkpoint_every": 2, "training.colour_augment": True}
PARSER = {"parser.precision": "fp32", "parser.steps": 4, "parser.batch_size": 4, "parser.checkpoint_every": 2,
          "parser.warmup_steps": 1}
WEIGHT_ATOL = 1e-4      # measured max |weight difference|, 1 vs 2 processes: 1.2e-5 (parser), 7e-6 (recon)
LOSS_ATOL = 1e-5        # the logged (rank-averaged) losses of the same steps

_WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from dfmvr_lib import distributed
    from dfmvr_lib.config import get_config
    from dfmvr_lib.networks.normalization import replace_batch_norm
    import dfmvr_lib.parsing.training as parsing_training
    import dfmvr_lib.runs as runs
    import dfmvr_lib.training.loop as loop

    job = json.loads(sys.argv[1])
    context = distributed.init_distributed()
    rank = context.rank
    # Record every run file each rank writes (rank 0 alone should): the run lifecycle (dfmvr_lib.runs) writes them.
    written = []
    for module in (runs,):
        for name in ("save_torch", "write_csv", "write_json"):
            original = getattr(module, name)
            def recorder(obj, path, *args, _original=original, **kwargs):
                written.append(os.path.basename(str(path)))
                return _original(obj, path, *args, **kwargs)
            setattr(module, name, recorder)
    # The parser's batch norms as group norms: on CPU the ranks cannot share batch statistics (no SyncBatchNorm).
    build = parsing_training.build_parser
    parsing_training.build_parser = lambda config: replace_batch_norm(build(config), "group")
    results = {}
    parser_config = get_config("smoke", job["parser"])
    parser_run = parsing_training.pretrain_parser(parser_config, job["benchmark"], runs_root=job["out"] + "/parser",
                                                  progress=False)
    results["parser_dir"] = parser_run.run_dir.name
    config = get_config("smoke", job["reconstruction"])
    run = loop.train_reconstruction(config, job["benchmark"], job["parser_dir"], runs_root=job["out"] + "/recon",
                                    progress=False, validation_split=None)
    results["recon_dir"] = run.run_dir.name
    if job["resume"]:
        partial = loop.train_reconstruction(config, job["benchmark"], job["parser_dir"], progress=False,
                                            runs_root=job["out"] + "/resumed", validation_split=None, stop_after=3)
        resumed = loop.train_reconstruction(config, job["benchmark"], job["parser_dir"], progress=False,
                                            runs_root=job["out"] + "/resumed", validation_split=None)
        results["resumed"] = [partial.finished, resumed.resumed_from, resumed.run_dir.name]
        odd = get_config("smoke", {**job["reconstruction"], "training.batch_size": 3})
        try:
            loop.train_reconstruction(odd, job["benchmark"], job["parser_dir"], runs_root=job["out"] + "/odd",
                                      progress=False, validation_split=None)
            results["odd"] = "no error"
        except ValueError as error:
            results["odd"] = str(error)
    results["written"] = written
    results["world"] = context.world_size
    with open(os.path.join(job["out"], f"rank{rank}.json"), "w") as handle:
        json.dump(results, handle)
    distributed.teardown()
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment() -> dict:
    environment = {name: value for name, value in os.environ.items() if name not in distributed.ENV_VARS}
    return {**environment, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One single-process run and one two-process torchrun launch of the same jobs."""
    from dfmvr_lib.data.synthetic import generate_benchmark
    from dfmvr_lib.parsing import pretrain_parser

    root = tmp_path_factory.mktemp("distributed")
    config = get_config("smoke")
    benchmark = root / "synthetic"
    generate_benchmark(benchmark, config, progress=False)
    parser = pretrain_parser(get_config("smoke", {"parser.steps": 2}), benchmark, runs_root=root / "frozen",
                             progress=False)
    script = root / "worker.py"
    script.write_text(_WORKER)
    outputs = {}
    for name, launcher, resume in (("single", [], False),
                                   ("double", ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                                               "--master_addr=127.0.0.1", f"--master_port={_free_port()}"], True)):
        out = root / name
        out.mkdir()
        job = {"benchmark": str(benchmark), "parser_dir": str(parser.run_dir), "out": str(out), "resume": resume,
               "parser": PARSER, "reconstruction": RECONSTRUCTION}
        done = subprocess.run([sys.executable, *launcher, str(script), json.dumps(job)], env=_environment(),
                              capture_output=True, timeout=240)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        outputs[name] = out
    return outputs


def _result(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name].double() - b[name].double()).abs().max()) if a[name].numel() else 0.0 for name in a)


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_in_the_same_run_folder(runs):
    single, double = runs["single"], runs["double"]
    one, zero, first = _result(single, 0), _result(double, 0), _result(double, 1)
    assert one["world"] == 1 and zero["world"] == 2 and first["world"] == 2
    differences = {}
    for kind, folder in (("parser", "parser_dir"), ("recon", "recon_dir")):
        assert one[folder] == zero[folder] == first[folder]          # the run key ignores the world size
        a = _weights(single / kind / one[folder] / "final.pt")
        b = _weights(double / kind / zero[folder] / "final.pt")
        difference = _max_difference(a, b)
        print(f"{kind}: max |weight difference| 1 vs 2 processes = {difference:.3g}")
        differences[kind] = difference
        import pandas as pd
        metrics_a = pd.read_csv(single / kind / one[folder] / "metrics.csv")
        metrics_b = pd.read_csv(double / kind / zero[folder] / "metrics.csv")
        column = "total" if kind == "recon" else "loss"
        assert list(metrics_a["step"]) == list(metrics_b["step"]) == [1, 2, 3, 4]
        assert (metrics_a[column] - metrics_b[column]).abs().max() < LOSS_ATOL, kind
        assert json.loads((double / kind / zero[folder] / "done.json").read_text())["steps"] == 4
    assert max(differences.values()) < WEIGHT_ATOL, differences


@pytest.mark.slow
def test_rank_zero_alone_writes_and_a_resumed_two_process_run_ends_where_an_uninterrupted_one_does(runs):
    double = runs["double"]
    zero, first = _result(double, 0), _result(double, 1)
    assert first["written"] == []
    assert {"run.json", "checkpoint.pt", "metrics.csv", "final.pt", "done.json"} <= set(zero["written"])
    partial_finished, resumed_from, folder = zero["resumed"]
    assert not partial_finished and resumed_from == 2 and first["resumed"] == zero["resumed"]
    assert folder == zero["recon_dir"]
    straight = _weights(double / "recon" / folder / "final.pt")
    resumed = _weights(double / "resumed" / folder / "final.pt")
    assert _max_difference(straight, resumed) == 0.0
    assert "not divisible by the world size 2" in zero["odd"] and "not divisible" in first["odd"]


def test_without_torchrun_everything_is_one_process(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    context = distributed.init_distributed()
    assert (context.rank, context.world_size, context.backend) == (0, 1, None)
    assert not torch.distributed.is_initialized()
    assert distributed.rank_and_world() == (0, 1) and distributed.is_main_process()
    assert distributed.local_slice(3) == slice(0, 3)
    values = {"total": 1.5, "photo": 0.25}
    assert distributed.mean_over_ranks(values) is values
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    assert distributed.wrap_model(module, "cpu") is module
    assert distributed.sync_batch_norm(module, "cpu") is module
    distributed.barrier()
    distributed.teardown()


def test_torchrun_environment_gives_rank_world_and_gloo_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", "29500")):
        monkeypatch.setenv(name, value)
    context = distributed.distributed_context()
    assert (context.rank, context.world_size, context.local_rank) == (1, 4, 1)
    assert context.backend == "gloo" and context.device == torch.device("cpu") and context.distributed
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 is not in"):
        distributed.distributed_context()
    monkeypatch.delenv("MASTER_PORT")
    assert distributed.distributed_context().world_size == 1


@pytest.mark.parametrize("argv, message", [
    (["train-reconstruction", "--profile", "nope", "--data-dir", "x"], "unknown profile 'nope'"),
])
def test_command_line_bad_arguments_are_one_line_errors(argv, message, capsys, monkeypatch, tmp_path):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert distributed.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert distributed.main(["pretrain-parser", "--profile", "smoke", "--data-dir", str(not_a_folder)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distributed.main(["train", "--profile", "smoke", "--data-dir", "x"])


def test_train_reconstruction_needs_a_finished_parser_run(monkeypatch, capsys, tmp_path):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    import dfmvr_lib.workbook as workbook

    monkeypatch.setattr(workbook, "benchmark", lambda config, data_dir, progress=True: tmp_path / "bench")
    monkeypatch.setattr("dfmvr_lib.parsing.training.run_key", lambda config, root, celeb=None: {"x": 1})
    assert distributed.main(["train-reconstruction", "--profile", "smoke", "--data-dir", str(tmp_path),
                             "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert "is not finished; run pretrain-parser first" in error and "\n" not in error
