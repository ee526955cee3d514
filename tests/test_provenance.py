"""All-or-nothing outputs (atomic files, figures, tables, executed notebooks, benchmark scripts) and traceable rows
(run directories and the commits that trained them)."""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
import torch

from dfmvr_lib import provenance, run_notebooks
from dfmvr_lib.provenance import atomic_path, read_table, remove_stale_temporaries, write_table
from dfmvr_lib.runs import done_record, run_columns, run_label, trained_at_commit, training_commits

matplotlib.use("Agg")
REPOSITORY = Path(__file__).resolve().parents[1]


class Interrupted(RuntimeError):
    pass


def _dot_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------------------
# atomic files

def test_failure_while_writing_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(Interrupted):
        with atomic_path(target) as temporary:
            temporary.write_text("half of the new con")
            raise Interrupted
    assert target.read_text() == "old\n"
    assert _dot_files(tmp_path) == []


def test_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_text("previous")
    script = textwrap.dedent(f"""
        import sys, time
        from dfmvr_lib.provenance import atomic_path
        with atomic_path({str(target)!r}) as temporary:
            temporary.write_text("half")
            print("writing", flush=True)
            time.sleep(120)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=REPOSITORY,
                              env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    assert writer.stdout.readline().strip() == b"writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    left = _dot_files(tmp_path)
    assert len(left) == 1 and f".{writer.pid}." in left[0].name      # kill -9 leaves it: nothing can clean up
    assert target.read_text() == "previous"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert _dot_files(tmp_path) == []


def test_temporary_of_a_live_writer_is_kept(tmp_path):
    target = tmp_path / "metrics.csv"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".metrics.csv.{sleeper.pid}.abcd1234.csv"
        live.write_text("being written")
        unrelated = tmp_path / ".metrics.csv.notapid.csv"
        unrelated.write_text("?")
        assert remove_stale_temporaries(target) == []
        assert live.exists() and unrelated.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(target) == [live]


def test_write_table_failing_in_the_middle_keeps_the_previous_table(tmp_path, monkeypatch):
    target = tmp_path / "tables" / "t.csv"
    write_table(pd.DataFrame({"a": [1, 2]}), target)
    before = target.read_text()

    def half_then_fail(self, path, *args, **kwargs):
        Path(path).write_text("a,profile\n1")
        raise Interrupted

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(Interrupted):
        write_table(pd.DataFrame({"a": [3, 4, 5]}), target)
    assert target.read_text() == before
    assert _dot_files(target.parent) == []


def test_save_figure_failing_in_the_middle_keeps_the_previous_png(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from dfmvr_lib.plots import save_figure

    target = tmp_path / "figure.png"
    figure = plt.figure(figsize=(1, 1))
    save_figure(figure, target)
    before = target.read_bytes()

    def half_then_fail(path, **kwargs):
        Path(path).write_bytes(before[:20])
        raise Interrupted

    figure.savefig = half_then_fail
    with pytest.raises(Interrupted):
        save_figure(figure, target)
    plt.close(figure)
    assert target.read_bytes() == before
    with Image.open(target) as image:
        image.load()
    assert _dot_files(tmp_path) == []


def test_write_table_puts_trained_at_commit_beside_git_commit(tmp_path):
    frame = pd.DataFrame({"method": ["a"], "trained_at_commit": ["abc1234"], "rmse_mm": [1.0]})
    columns = list(pd.read_csv(write_table(frame, tmp_path / "t.csv")).columns)
    assert columns.index("trained_at_commit") == columns.index("git_commit") + 1


# ---------------------------------------------------------------------------------------------------------------
# executed notebooks

def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return notebook


def _fake_papermill(monkeypatch, fail: bool, calls: list | None = None):
    """papermill.execute_notebook that writes an executed copy (one cell, or a half-run copy) and, with ``fail``,
    raises as papermill does on a failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def execute(source, output, parameters=None, **kwargs):
        if calls is not None:
            calls.append((Path(source).name, dict(parameters or {})))
        nbformat.write(_notebook(["1 / 0" if fail else "x = 1"]), output)
        if fail:
            raise PapermillExecutionError(1, 1, "1 / 0", "ZeroDivisionError", "division by zero", [])
        return None

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def test_failing_notebook_keeps_the_previous_executed_copy_and_the_failed_one_beside(tmp_path, monkeypatch):
    notebook = run_notebooks.numbered_notebooks(["00"])[0]
    output = tmp_path / "executed"
    _fake_papermill(monkeypatch, fail=False)
    good = run_notebooks.run_notebook(notebook, output, "smoke", tmp_path / "results")
    before = good.read_bytes()
    _fake_papermill(monkeypatch, fail=True)
    with pytest.raises(run_notebooks.NotebookFailed) as failure:
        run_notebooks.run_notebook(notebook, output, "smoke", tmp_path / "results")
    failed = output / f"{notebook.stem}.failed.ipynb"
    assert good.read_bytes() == before
    assert "1 / 0" in nbformat.read(failed, as_version=4).cells[0].source
    message = str(failure.value)
    assert str(failed) in message and "ZeroDivisionError" in message and "left as it was" in message
    assert failure.value.failed_copy == failed
    assert _dot_files(output) == []
    _fake_papermill(monkeypatch, fail=False)                         # a later success removes the failed copy
    run_notebooks.run_notebook(notebook, output, "smoke", tmp_path / "results")
    assert not failed.exists()


def test_main_stops_at_a_failing_notebook_with_a_clear_message(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_papermill(monkeypatch, fail=True, calls=calls)
    code = run_notebooks.main(["--profile", "smoke", "--only", "01", "02", "--output-dir", str(tmp_path / "nb"),
                               "--results-dir", str(tmp_path / "results"), "--data-dir", str(tmp_path / "data")])
    assert code == 1
    assert [name for name, _ in calls] == ["01_data_prep.ipynb"]     # 02 is not started
    error = capsys.readouterr().err
    assert "01_data_prep.ipynb failed" in error and "01_data_prep.failed.ipynb" in error


def test_data_dir_goes_to_the_notebooks_that_take_it(tmp_path, monkeypatch):
    calls = []
    _fake_papermill(monkeypatch, fail=False, calls=calls)
    assert run_notebooks.main(["--profile", "smoke", "--only", "00", "01", "--output-dir", str(tmp_path / "nb"),
                               "--results-dir", str(tmp_path / "results"), "--data-dir",
                               str(tmp_path / "data")]) == 0
    parameters = dict(calls)
    assert "data_dir" not in parameters["00_face_model_and_renderer.ipynb"]
    assert parameters["01_data_prep.ipynb"]["data_dir"] == str((tmp_path / "data").resolve())


# ---------------------------------------------------------------------------------------------------------------
# benchmark scripts: every file they write goes through atomic_path / write_table / write_csv / save_figure

WRITERS = {"write_text": "receiver", "write_bytes": "receiver", "to_csv": 0, "savefig": 0, "save": 1}


def non_atomic_writes(source: str) -> list[str]:
    """Calls in ``source`` that write a file other than a temporary of ``with atomic_path(...) as name``:
    ``X.write_text/write_bytes``, ``frame.to_csv(X)``, ``fig.savefig(X)``, ``torch.save(obj, X)`` and
    ``open(X, "w"...)``, unless X is such a name (or ``Path(name)``)."""
    tree = ast.parse(source)
    temporaries = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.With)
                   for item in node.items
                   if isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "id", "") ==
                   "atomic_path" and isinstance(item.optional_vars, ast.Name)}

    def is_temporary(node) -> bool:
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Path" and node.args:
            node = node.args[0]
        return isinstance(node, ast.Name) and node.id in temporaries

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        target = None
        if name == "open" and isinstance(node.func, ast.Name) and node.args:
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                None)
            if isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax"):
                target = node.args[0]
        elif name in WRITERS and isinstance(node.func, ast.Attribute):
            where = WRITERS[name]
            if where == "receiver":
                target = node.func.value
            elif name == "save" and getattr(node.func.value, "id", "") != "torch":
                continue
            elif len(node.args) > where:
                target = node.args[where]
        if target is not None and not is_temporary(target):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_the_checker_flags_direct_writes():
    direct = 'with open(args.csv, "w", newline="") as h:\n    pass\nargs.csv.with_suffix(".md").write_text(t)\n' \
             'frame.to_csv(path)\nfig.savefig(out / "a.png")\ntorch.save(state, path)\n'
    assert len(non_atomic_writes(direct)) == 5
    atomic = 'with atomic_path(p) as tmp, open(tmp, "w") as h:\n    pass\nwith atomic_path(q) as t:\n' \
             '    Path(t).write_text(x)\n    frame.to_csv(t)\nwith open(p) as h:\n    pass\n'
    assert non_atomic_writes(atomic) == []


@pytest.mark.parametrize("script", sorted(p.name for p in (REPOSITORY / "benchmarks").glob("*.py")
                                          if p.name != "bench_refine.py"))
def test_benchmark_scripts_write_atomically(script):
    assert non_atomic_writes((REPOSITORY / "benchmarks" / script).read_text()) == []


# ---------------------------------------------------------------------------------------------------------------
# traceable rows

def _fake_run(data: Path, kind: str, name: str, parser: str | None = None, done: dict | None = None) -> Path:
    run = data / "runs" / kind / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"parser_run": parser} if kind == "reconstruction" else {}))
    if done is not None:
        (run / "done.json").write_text(json.dumps(done))
    return run


def test_run_columns_name_runs_relative_to_the_data_folder_with_their_commits(tmp_path):
    data = tmp_path / "data"
    parser = _fake_run(data, "parser", "p0", done=done_record(4, 1.0, ["c0"]))
    new = _fake_run(data, "reconstruction", "r1", parser="p0", done=done_record(6, 2.0, ["c1"]))
    resumed = _fake_run(data, "reconstruction", "r2", parser="p0", done=done_record(6, 2.0, ["unknown", "c2"]))
    old = _fake_run(data, "reconstruction", "r3", parser=None, done={"steps": 6, "seconds": 2.0})
    columns = run_columns([new, resumed, old])
    assert columns == {"run_dir": "runs/reconstruction/r1 runs/reconstruction/r2 runs/reconstruction/r3",
                       "parser_run_dir": "runs/parser/p0", "trained_at_commit": "c1 unknown>c2 unknown"}
    assert run_columns([parser]) == {"run_dir": "runs/parser/p0", "parser_run_dir": "", "trained_at_commit": "c0"}
    assert run_columns([]) == {"run_dir": "", "parser_run_dir": "", "trained_at_commit": ""}
    assert run_label(Path("../data/runs/reconstruction/r1")) == "runs/reconstruction/r1"
    assert trained_at_commit(tmp_path / "not_a_run") == "unknown"


def test_training_commits_record_a_resume_at_another_commit(monkeypatch):
    monkeypatch.setattr(provenance, "git_commit", lambda short=True: "new")
    assert training_commits(None, resumed=False) == ["new"]
    assert training_commits(["new"], resumed=True) == ["new"]
    assert training_commits(["old"], resumed=True) == ["old", "new"]
    assert training_commits(None, resumed=True) == ["unknown", "new"]     # a checkpoint from before this change


def test_experiment_rows_and_claims_name_their_runs(tmp_path):
    from dfmvr_lib.experiments import Claim, claims_table, table_rows

    data = tmp_path / "data"
    _fake_run(data, "parser", "p0", done=done_record(4, 1.0, ["c0"]))
    runs = [_fake_run(data, "reconstruction", f"r{seed}", parser="p0", done=done_record(6, 1.0, [f"c{seed}"]))
            for seed in (0, 1)]

    def errors(offset: float, slope: float, run_dirs) -> pd.DataFrame:
        frame = pd.DataFrame([{"seed": seed, "sample": f"s{i}", "subject": f"u{i}", "reconstruction": "fused",
                               "rmse_mm": offset + slope * i + 0.01 * seed, "mean_mm": offset + slope * i}
                              for seed in (0, 1) for i in range(5)])
        frame.attrs["run_dirs"] = [str(d) for d in run_dirs]
        return frame

    dfmvr = errors(1.0, 0.1, runs)
    rows = table_rows(dfmvr, table="Table I", method="dfmvr", setting="pixelface-like", profile="smoke")
    assert [row["run_dir"] for row in rows] == ["runs/reconstruction/r0 runs/reconstruction/r1"]
    assert rows[0]["parser_run_dir"] == "runs/parser/p0" and rows[0]["trained_at_commit"] == "c0 c1"
    mean_face = errors(2.0, 0.3, [])
    claims = claims_table({"dfmvr[ABC]": dfmvr, "mean_face": mean_face},
                          [Claim("DF-MVR beats the mean face", "dfmvr[ABC]", "mean_face")])
    assert claims.loc[0, "run_dir"] == "runs/reconstruction/r0 runs/reconstruction/r1"


def test_parser_run_records_the_commits_that_trained_it_outside_its_key(tmp_path, monkeypatch):
    from dfmvr_lib.config import get_config
    from dfmvr_lib.parsing.training import pretrain_parser, run_key

    class Images:                                   # 8 random 64 px views with random labels
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (8, 64, 64), generator=generator)

        def __len__(self):
            return 8

        def batch(self, indices):
            return self.images[indices].float() / 255.0, self.labels[indices]

    config = get_config("smoke", {"parser.steps": 2, "parser.checkpoint_every": 1, "parser.augment": False,
                                  "parser.precision": "fp32"})
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    run_dir = tmp_path / "runs" / "parser" / "p"
    monkeypatch.setattr(provenance, "git_commit", lambda short=True: "first")
    partial = pretrain_parser(config, dataset, run_dir=run_dir, progress=False, images=Images(), stop_after=1)
    assert not partial.finished
    monkeypatch.setattr(provenance, "git_commit", lambda short=True: "second")
    pretrain_parser(config, dataset, run_dir=run_dir, progress=False, images=Images())
    done = json.loads((run_dir / "done.json").read_text())
    assert done["git_commit"] == "second" and done["git_commits"] == ["first", "second"]
    assert trained_at_commit(run_dir) == "first>second"
    key = json.loads(json.dumps(run_key(config, dataset), default=str))
    assert json.loads((run_dir / "run.json").read_text()) == key          # the commits are not part of the key


def test_training_keeps_torch_threads_when_numba_starts_its_pool():
    script = textwrap.dedent("""
        import sys, numba, torch
        if sys.argv[1] == "settle":
            from dfmvr_lib.runs import settle_thread_pools
            settle_thread_pools()

        @numba.njit(parallel=True)
        def kernel(x):
            for i in numba.prange(x.shape[0]):
                x[i] += 1.0

        kernel(torch.zeros(64).numpy())
        print(torch.get_num_threads())
    """)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2",
                   "PYTHONPATH": str(REPOSITORY)}
    threads = {mode: subprocess.run([sys.executable, "-c", script, mode], env=environment, capture_output=True,
                                    text=True, check=True).stdout.split()[-1] for mode in ("plain", "settle")}
    if threads["plain"] == "1":
        pytest.skip("numba's threading layer does not change torch's thread count here")
    assert threads["settle"] == "1"


# ---------------------------------------------------------------------------------------------------------------
# the run lifecycle (dfmvr_lib.runs.ResumableRun)

def test_a_keyed_run_is_resumed_from_its_checkpoint_then_finished_then_reused(tmp_path, monkeypatch):
    from dfmvr_lib.runs import (CHECKPOINT, DONE, FINAL, METRICS, RUN_INFO, VALIDATION, ResumableRun, keyed_run_dir,
                                run_hash)

    monkeypatch.setattr(provenance, "git_commit", lambda short=True: "first")
    key = {"what": "a run", "seed": 0}
    fresh = ResumableRun.open(key, tmp_path / "runs", kind="parser")
    assert fresh.run_dir == keyed_run_dir(tmp_path / "runs", key) == tmp_path / "runs" / run_hash(key)
    assert fresh.run_dir.is_dir() and not fresh.finished and fresh.main
    assert fresh.start() is None and fresh.resumed_from == 0 and fresh.commits == ["first"]
    assert json.loads((fresh.run_dir / RUN_INFO).read_text()) == key
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    tables = {METRICS: (rows, ("step", "loss")), VALIDATION: ([], None)}
    fresh.save_checkpoint({"model": {"w": torch.ones(2)}, "step": 2, "metrics": rows}, tables)
    assert not (fresh.run_dir / VALIDATION).exists()               # no rows, no columns: not written yet
    assert list(pd.read_csv(fresh.run_dir / METRICS)["step"]) == [1, 2] and not fresh.finished

    monkeypatch.setattr(provenance, "git_commit", lambda short=True: "second")
    resumed = ResumableRun.open(key, tmp_path / "runs")
    state = resumed.start()
    assert resumed.run_dir == fresh.run_dir and resumed.resumed_from == 2 and state["metrics"] == rows
    assert torch.equal(state["model"]["w"], torch.ones(2)) and resumed.commits == ["first", "second"]
    frames = resumed.finish({"model": {"w": torch.zeros(2)}}, tables, steps=2, seconds=3.0)
    assert list(frames[METRICS]["loss"]) == [2.0, 1.5] and frames[VALIDATION].empty
    assert json.loads((resumed.run_dir / DONE).read_text()) == done_record(2, 3.0, ["first", "second"])
    assert trained_at_commit(resumed.run_dir) == "first>second"

    reused = ResumableRun.open(key, tmp_path / "runs")
    assert reused.finished and torch.equal(reused.load(FINAL)["model"]["w"], torch.zeros(2))
    assert list(reused.read_table(METRICS)["step"]) == [1, 2] and reused.read_table(VALIDATION).empty
    assert ResumableRun.open(key, None, run_dir=tmp_path / "elsewhere").run_dir == tmp_path / "elsewhere"
    (reused.run_dir / CHECKPOINT).unlink()
    assert reused.finished                                          # final.pt and done.json make it finished


def test_only_rank_zero_writes_and_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    from dfmvr_lib.runs import CHECKPOINT, METRICS, ResumableRun, UnsafeCheckpointError

    other = ResumableRun(tmp_path / "run", {"k": 1}, kind="reconstruction", main=False)
    other.run_dir.mkdir()
    assert other.start() is None
    other.save_checkpoint({"step": 1}, {METRICS: ([{"step": 1}], ("step",))})
    frames = other.finish({"model": {}}, {METRICS: ([{"step": 1}], ("step",))}, steps=1, seconds=0.0)
    assert list(frames[METRICS]["step"]) == [1] and list(other.run_dir.iterdir()) == []

    torch.save({"step": 1, "object": Interrupted("pickled")}, other.run_dir / CHECKPOINT)
    with pytest.raises(UnsafeCheckpointError, match="reconstruction run's checkpoint.pt"):
        ResumableRun.open({"k": 1}, tmp_path, run_dir=other.run_dir, kind="reconstruction").start()


def test_run_file_names_and_places_are_defined_once():
    import dfmvr_lib.experiments.executors as executors
    import dfmvr_lib.reconstruction.reconstructor as reconstructor
    import dfmvr_lib.runs as runs
    import dfmvr_lib.workbook as workbook

    assert runs.FINISHED_FILES == (runs.FINAL, runs.DONE) == ("final.pt", "done.json")
    assert reconstructor.is_finished is runs.is_finished
    assert executors.is_finished is runs.is_finished
    assert workbook.dataset_dir is runs.dataset_dir and workbook.runs_dir is runs.runs_dir
    assert runs.runs_dir("d", "parser") == Path("d/runs/parser")
    assert runs.dataset_dir("d", "cpu") == Path("d/synthetic_cpu_pixelface-like")
    with pytest.raises(ValueError, match="unknown run kind"):
        runs.runs_dir("d", "parsers")
    # no module of the library spells a run file's name but dfmvr_lib/runs.py
    names = [f'"{name}"' for name in (runs.RUN_INFO, runs.CHECKPOINT, runs.METRICS, runs.VALIDATION, runs.FINAL,
                                       runs.DONE)]
    for module in ("training/loop.py", "parsing/training.py", "reconstruction/reconstructor.py",
                   "experiments/executors.py", "experiments/tables.py", "distributed.py", "workbook.py"):
        text = (REPOSITORY / "dfmvr_lib" / module).read_text()
        assert [name for name in names if name in text] == [], module


def test_read_table_keeps_an_all_digit_commit_as_text(tmp_path):
    # a short commit hash can be all digits ("0086589"): plain read_csv makes it the integer 86589
    frame = pd.DataFrame({"method": ["a"], "trained_at_commit": ["0086589"], "seeds": ["0 1"], "rmse_mm": [1.5]})
    path = write_table(frame, tmp_path / "t.csv")
    assert pd.read_csv(path).loc[0, "trained_at_commit"] == 86589     # the trap read_table avoids
    table = read_table(path)
    assert table.loc[0, "trained_at_commit"] == "0086589" and table.loc[0, "seeds"] == "0 1"
    assert table.loc[0, "rmse_mm"] == 1.5
