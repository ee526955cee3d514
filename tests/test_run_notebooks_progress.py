"""The main job's progress (dfmvr_lib.run_notebooks): the line before each notebook (position, last run's time, the
job's time left, from the timing table the last full run wrote) and the heartbeat while a notebook runs (time
elapsed and left, the current cell), which stops when the notebook ends or fails."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import nbformat
import pytest

from dfmvr_lib import run_notebooks
from dfmvr_lib.run_notebooks import (format_duration, heartbeat_line, job_left_text, last_timings, start_line,
                                     timing_table_path, write_timing)

HEARTBEAT = "[run_notebooks]   "


def _write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook with a ``parameters`` cell (profile, results_dir: what run_notebook passes) and ``cells``."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "cpu"\nresults_dir = "."')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters] + [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def _notebook_dir(tmp_path: Path) -> Path:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "00_quick.ipynb", ["x = 1"])
    _write_notebook(notebooks / "01_sleepy.ipynb", ["import time", "time.sleep(1.5)", "y = 2"])
    return notebooks


def _arguments(tmp_path: Path, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--output-dir", str(tmp_path / "nb"), "--results-dir", str(tmp_path / "results"),
            "--data-dir", str(tmp_path / "data"), *extra]


def _progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("run_notebooks-progress") and t.is_alive()]


def _index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


# ---------------------------------------------------------------------------------------------------------------
# the lines themselves


def test_durations_and_heartbeat_wording():
    assert format_duration(45) == "45 s" and format_duration(300) == "5.0 min"
    assert format_duration(5700) == "1 h 35 min"
    line = heartbeat_line("03_training.ipynb", 300, 1152, (12, 31, "run = train("))
    assert line == ("[run_notebooks]   03_training: 5.0 min elapsed, about 14 min left (last run 19.2 min), "
                    "cell 12/31: run = train(")
    over = heartbeat_line("03_training.ipynb", 1300, 1152, None)
    assert "over the last run's time (last run 19.2 min)" in over and "left" not in over and "-" not in over
    assert heartbeat_line("03_training.ipynb", 30, None) == "[run_notebooks]   03_training: 30 s elapsed " \
                                                              "(no earlier timing)"


def test_job_left_sums_the_remaining_notebooks_last_timings():
    timings = {"00_a.ipynb": 60.0, "01_b.ipynb": 600.0, "02_c.ipynb": 3600.0}
    assert job_left_text(["01_b.ipynb", "02_c.ipynb"], timings) == "about 1 h 10 min left (2 notebooks)"
    assert job_left_text(["02_c.ipynb", "03_new.ipynb"], timings) == \
        "at least 1 h 00 min left (1 of 2 notebooks without an earlier timing)"
    assert job_left_text(["03_new.ipynb"], timings) == "no earlier timing"
    assert start_line(4, 10, "03_training.ipynb", "cpu", 1152, "about 1 h 10 min left (7 notebooks)") == \
        "[run_notebooks] [4/10] 03_training (profile cpu): last run 19.2 min; job: about 1 h 10 min left (7 notebooks)"
    assert start_line(1, 2, "00_a.ipynb", "smoke", None, "no earlier timing") == \
        "[run_notebooks] [1/2] 00_a (profile smoke): no earlier timing; job: no earlier timing"


def test_last_timings_reads_what_write_timing_wrote_for_the_same_profile_only(tmp_path):
    results = tmp_path / "results"
    assert last_timings(results, "cpu") == {}                                   # no table
    write_timing([{"notebook": "00_a.ipynb", "seconds": 12.5}, {"notebook": "01_b.ipynb", "seconds": 70.0}],
                 "cpu", results, from_scratch=True, precision="precision fp32")
    assert timing_table_path(results).is_file()
    assert last_timings(results, "cpu") == {"00_a.ipynb": 12.5, "01_b.ipynb": 70.0}
    assert last_timings(results, "smoke") == {}                                 # another profile's timings
    timing_table_path(results).write_bytes(b"\xff\xfe garbage")
    assert last_timings(results, "cpu") == {}                                   # unreadable: no estimate


# ---------------------------------------------------------------------------------------------------------------
# the job, on two tiny real notebooks


def test_main_prints_start_lines_estimates_and_heartbeats_with_the_cell(tmp_path, capsys):
    notebooks = _notebook_dir(tmp_path)
    write_timing([{"notebook": "00_quick.ipynb", "seconds": 60.0}, {"notebook": "01_sleepy.ipynb", "seconds": 600.0}],
                 "smoke", tmp_path / "results")
    assert run_notebooks.main(_arguments(tmp_path, "--progress-interval", "0.4"), notebook_dir=notebooks) == 0
    lines = capsys.readouterr().out.splitlines()

    first = _index(lines, "[1/2] 00_quick")
    assert lines[first] == ("[run_notebooks] [1/2] 00_quick (profile smoke): last run 1.0 min; "
                            "job: about 11 min left (2 notebooks)")
    second = _index(lines, "[2/2] 01_sleepy")
    assert lines[second] == ("[run_notebooks] [2/2] 01_sleepy (profile smoke): last run 10.0 min; "
                             "job: about 10 min left (1 notebook)")

    beats = [i for i, line in enumerate(lines) if line.startswith(HEARTBEAT + "01_sleepy: ")]
    assert beats, lines
    assert all("elapsed, about 10 min left (last run 10.0 min)" in lines[i] for i in beats)
    # papermill injects its parameters cell after ours: the sleep is the 4th of 5 cells
    assert any(lines[i].endswith("cell 4/5: time.sleep(1.5)") for i in beats), lines

    # no heartbeat of a notebook after its "done" line, and no heartbeat thread left running
    for name in ("00_quick", "01_sleepy"):
        done = _index(lines, f"{name}.ipynb done in")
        assert not [line for line in lines[done:] if line.startswith(HEARTBEAT + name)], lines
    assert beats[-1] < _index(lines, "01_sleepy.ipynb done in")
    assert _progress_threads() == []

    # the executed copies are written as before, and this run's table replaces the last one
    assert (tmp_path / "nb" / "01_sleepy.ipynb").is_file() and (tmp_path / "nb" / "00_quick.ipynb").is_file()
    timings = last_timings(tmp_path / "results", "smoke")
    assert set(timings) == {"00_quick.ipynb", "01_sleepy.ipynb"} and timings["01_sleepy.ipynb"] >= 1.5
    time.sleep(0.5)
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith(HEARTBEAT)]


# ---------------------------------------------------------------------------------------------------------------
# without a table, without a heartbeat, and on a failure (papermill faked: no kernel)


def _fake_papermill(monkeypatch, calls: list, seconds: float = 0.0, fail: bool = False):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def execute(source, output, parameters=None, **kwargs):
        calls.append((Path(source).name, kwargs))
        progress = kwargs.get("progress")
        if progress is not None:
            progress.cell_started(1, 3, {"source": "1 / 0" if fail else "x = 1"})
        time.sleep(seconds)
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell("1 / 0" if fail else "x = 1")]
        nbformat.write(notebook, output)
        if fail:
            raise PapermillExecutionError(2, 1, "1 / 0", "ZeroDivisionError", "division by zero", [])

    monkeypatch.setattr(papermill, "execute_notebook", execute)


def test_without_a_timing_table_the_estimate_says_no_earlier_timing(tmp_path, monkeypatch, capsys):
    notebooks = _notebook_dir(tmp_path)
    calls = []
    _fake_papermill(monkeypatch, calls, seconds=0.35)
    assert run_notebooks.main(_arguments(tmp_path, "--only", "00", "--progress-interval", "0.1"),
                              notebook_dir=notebooks) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "[run_notebooks] [1/1] 00_quick (profile smoke): no earlier timing; job: no earlier timing" in lines
    beats = [line for line in lines if line.startswith(HEARTBEAT + "00_quick: ")]
    assert beats and all("elapsed (no earlier timing)" in line for line in beats)
    assert beats[-1].endswith("cell 2/3: x = 1")
    assert calls[0][1]["engine_name"] == run_notebooks.PROGRESS_ENGINE


def test_progress_interval_zero_prints_no_heartbeat_and_calls_papermill_as_before(tmp_path, monkeypatch, capsys):
    notebooks = _notebook_dir(tmp_path)
    calls = []
    _fake_papermill(monkeypatch, calls, seconds=0.3)
    assert run_notebooks.main(_arguments(tmp_path, "--progress-interval", "0"), notebook_dir=notebooks) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if "] [" in line] == [
        "[run_notebooks] [1/2] 00_quick (profile smoke): no earlier timing; job: no earlier timing",
        "[run_notebooks] [2/2] 01_sleepy (profile smoke): no earlier timing; job: no earlier timing"]
    assert not [line for line in lines if line.startswith(HEARTBEAT)]
    assert [sorted(kwargs) for _, kwargs in calls] == [["cwd", "kernel_name", "progress_bar"]] * 2
    with pytest.raises(SystemExit):
        run_notebooks.main(_arguments(tmp_path, "--progress-interval", "-1"), notebook_dir=notebooks)


def test_a_failing_notebook_stops_its_heartbeat_and_keeps_the_failed_copy(tmp_path, monkeypatch, capsys):
    notebooks = _notebook_dir(tmp_path)
    calls = []
    _fake_papermill(monkeypatch, calls, seconds=0.35, fail=True)
    assert run_notebooks.main(_arguments(tmp_path, "--progress-interval", "0.1"), notebook_dir=notebooks) == 1
    captured = capsys.readouterr()
    assert [name for name, _ in calls] == ["00_quick.ipynb"]                   # 01 is not started
    assert [line for line in captured.out.splitlines() if line.startswith(HEARTBEAT + "00_quick: ")]
    assert "00_quick.ipynb failed (cell 1 raised ZeroDivisionError" in captured.err
    assert (tmp_path / "nb" / "00_quick.failed.ipynb").is_file() and not (tmp_path / "nb" / "00_quick.ipynb").exists()
    assert _progress_threads() == []
    time.sleep(0.3)
    assert capsys.readouterr().out == ""
