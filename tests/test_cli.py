"""The ``dfmvr reconstruct`` command: help, usage errors, bad photos (clear message, non-zero status, no output files
left), a missing checkpoint, all-or-nothing output, and end to end on the real multi-view fixtures with a smoke run
(mesh files reload with the model's vertex count in millimetres)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfmvr_lib.cli import EXIT_BAD_INPUT, EXIT_NO_CHECKPOINT, EXIT_OK, EXIT_USAGE, EXIT_WRITE_FAILED, main
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.reconstruction.export import OutputPaths, staged_outputs
from dfmvr_lib.reconstruction.photo_inputs import InputError, assign_views
from shared_fixtures import FIXTURES, needs_fixtures
from test_fitting import smoke_runs  # noqa: F401  (module fixture: a smoke benchmark, parser and 6-step run)

CROPS = FIXTURES / "real_multiview" / "pixelface_crops"
TRIPLET = [CROPS / "0" / "00336010.png", CROPS / "1" / "00336011.png", CROPS / "2" / "00336012.png"]
OPTIONS = ("--output", "--views", "--refine", "--checkpoint", "--parser", "--profile", "--data-dir", "--colours",
           "--detector", "--parse-maps", "--threads", "--quiet", "--start")


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def _photo(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_installed_console_script_help_names_every_option():
    script = Path(sys.executable).parent / "dfmvr"
    assert script.is_file(), "the dfmvr console script is not installed: pip install -e . --no-deps"
    completed = subprocess.run([str(script), "reconstruct", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    for option in OPTIONS:
        assert option in completed.stdout, option
    assert "exit status" in completed.stdout and "make main" in completed.stdout
    top = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and "reconstruct" in top.stdout


@pytest.mark.parametrize("count", [0, 4])
def test_wrong_number_of_photos_is_a_usage_error(count, tmp_path, capsys):
    photos = [str(tmp_path / f"{i}.png") for i in range(count)]
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", *photos, "-o", str(tmp_path / "out" / "face.obj")])
    assert exit_info.value.code == EXIT_USAGE
    assert f"got {count}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_view_names_and_output_name_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "a.png", "b.png", "-o", str(tmp_path / "face.obj")])
    assert exit_info.value.code == EXIT_USAGE and "--views" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "a.png", "--views", "top", "-o", str(tmp_path / "face.obj")])
    assert exit_info.value.code == EXIT_USAGE and "unknown view" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "a.png", "-o", str(tmp_path / "face.stl")])
    assert exit_info.value.code == EXIT_USAGE and ".obj" in capsys.readouterr().err
    assert assign_views(["l.png", "r.png"], ["left", "right"]) == (Path("l.png"), None, Path("r.png"))
    assert assign_views(["f.png"]) == (None, Path("f.png"), None)
    with pytest.raises(InputError, match="once"):
        assign_views(["a.png", "b.png"], ["left", "left"])


def test_missing_file_is_named_before_anything_is_loaded(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "me_front.jpg"
    status = main(["reconstruct", str(missing), "-o", str(tmp_path / "out" / "face.obj"), "-q",
                   "--checkpoint", str(tmp_path / "no_run")])
    assert status == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert str(missing) in message and "no such file" in message
    status = main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "out" / "face.obj"), "-q"])
    assert status == EXIT_BAD_INPUT and "a folder" in capsys.readouterr().err
    assert _leftovers(tmp_path / "out") == []


def test_missing_checkpoint_tells_how_to_make_one(tmp_path, capsys):
    photo = _photo(tmp_path / "front.png", np.full((128, 128, 3), 90, np.uint8))
    status = main(["reconstruct", str(photo), "-o", str(tmp_path / "out" / "face.obj"), "-q",
                   "--profile", "smoke", "--data-dir", str(tmp_path / "empty")])
    assert status == EXIT_NO_CHECKPOINT
    message = capsys.readouterr().err
    assert "notebooks 02 and 03" in message and "--checkpoint" in message and "make main" in message
    status = main(["reconstruct", str(photo), "-o", str(tmp_path / "out" / "face.obj"), "-q",
                   "--checkpoint", str(tmp_path)])
    assert status == EXIT_NO_CHECKPOINT and "final.pt" in capsys.readouterr().err
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("case", ["unreadable", "no_face"])
def test_bad_photo_exits_non_zero_names_the_file_and_writes_nothing(case, smoke_runs, tmp_path, capsys):  # noqa: F811
    run_dir = smoke_runs[2]
    if case == "unreadable":
        bad = tmp_path / "front.png"
        bad.write_text("this is not an image")
        expected = "front.png"
    else:
        bad = _photo(tmp_path / "front.png", np.full((160, 160, 3), 128, np.uint8))
        expected = "no face found"
    out = tmp_path / "out"
    status = main(["reconstruct", str(bad), "-o", str(out / "face.obj"), "-q", "--checkpoint", str(run_dir),
                   "--detector", "dlib"])
    assert status == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert str(bad) in message and expected in message
    assert _leftovers(out) == []


def test_staged_outputs_are_all_or_nothing(tmp_path):
    paths = OutputPaths.for_mesh(tmp_path / "face.obj")
    assert [p.name for p in paths.all()] == ["face.obj", "face.ply", "face_coefficients.json",
                                             "face_coefficients.npz", "face_overlay.png"]
    with pytest.raises(RuntimeError, match="boom"):
        with staged_outputs([paths.obj, paths.json]) as staged:
            staged(paths.obj).write_text("v 0 0 0\n")
            raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []
    with staged_outputs([paths.obj, paths.json]) as staged:
        staged(paths.obj).write_text("v 0 0 0\n")
        staged(paths.json).write_text("{}")
    assert sorted(p.name for p in _leftovers(tmp_path)) == ["face.obj", "face_coefficients.json"]


@needs_fixtures
def test_failure_while_writing_leaves_no_output(smoke_runs, tmp_path, monkeypatch, capsys):  # noqa: F811
    import dfmvr_lib.reconstruction.pipeline as pipeline

    def broken(path, record):                    # the third of five files fails, after the two meshes
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_json", broken)
    out = tmp_path / "out"
    status = main(["reconstruct", *map(str, TRIPLET), "-o", str(out / "face.obj"), "-q", "--checkpoint",
                   str(smoke_runs[2]), "--detector", "dlib"])
    assert status == EXIT_WRITE_FAILED and "disk full" in capsys.readouterr().err
    assert not out.exists()                      # not even the (new) output folder


@needs_fixtures
def test_end_to_end_on_real_photos_with_the_default_smoke_run(smoke_runs, tmp_path, capsys):  # noqa: F811
    import open3d as o3d

    import torch

    data_dir = smoke_runs[0]
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        status = main(["reconstruct", *map(str, TRIPLET), "-o", str(out / "face.obj"), "--refine", "3",
                       "--profile", "smoke", "--data-dir", str(data_dir), "--detector", "dlib", "--threads", "1",
                       "--start", "network"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert status == EXIT_OK
    captured = capsys.readouterr()
    assert "[4/4]" in captured.err and "warning" not in captured.err      # one person, views in order
    paths = OutputPaths.for_mesh(out / "face.obj")
    assert sorted(_leftovers(out)) == sorted(paths.all())                  # no staging folder left
    from dfmvr_lib.config import get_config
    model = load_face_model(get_config("smoke").face_model)
    mean_extent = np.ptp(model.mean_shape.numpy(), axis=0)
    for mesh_path in (paths.obj, paths.ply):
        mesh = o3d.io.read_triangle_mesh(str(mesh_path))
        vertices = np.asarray(mesh.vertices)
        assert vertices.shape == (model.num_vertices, 3), mesh_path
        assert len(mesh.triangles) == model.triangles.shape[0]
        assert mesh.has_vertex_colors()
        colours = np.asarray(mesh.vertex_colors)
        assert colours.min() >= 0 and colours.max() <= 1 and colours.std() > 0
        extent = np.ptp(vertices, axis=0)                                  # millimetres: a head ~150-250 mm wide
        assert np.all(extent > 0.7 * mean_extent) and np.all(extent < 1.3 * mean_extent), extent
        assert 100 < extent[0] < 300
    record = json.loads(paths.json.read_text())
    assert [v["present"] for v in record["views"]] == [True, True, True]
    assert record["views"][0]["file"] == str(TRIPLET[0])
    assert record["refinement"]["steps"] == 3 and len(record["refinement"]["per_step"]) == 4
    assert record["refinement"]["start"] == "network" and record["mesh"]["colours"] == "photo"
    assert record["checkpoint"]["run_dir"] == str(smoke_runs[2])
    assert record["mesh"]["vertices"] == model.num_vertices
    assert set(record["albedo_range"]) == {"skin", "lips", "eyes", "brows"}
    outside = [region for region, values in record["albedo_range"].items() if not values["inside"]]
    assert all(values["distance"] >= 0 and values["limit"] > 0 for values in record["albedo_range"].values())
    for region in outside:                                                 # a colour out of range is reported
        assert region in " ".join(record["warnings"])
    with np.load(paths.npz) as arrays:
        assert np.abs(arrays["albedo"]).max() <= 3.0                        # RefinementSettings.albedo_bound
        assert arrays["identity"].shape == (model.num_identity,)
        assert arrays["angles"].shape == (3, 3) and arrays["translation"].shape == (3, 3)
        assert arrays["landmarks_detected"].shape == (3, 68, 2)
    assert Image.open(paths.png).size[0] > 300


@needs_fixtures
def test_single_photo_is_the_front_view_with_the_others_dropped(smoke_runs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "single"
    status = main(["reconstruct", str(TRIPLET[1]), "-o", str(out / "me.obj"), "-q", "--checkpoint",
                   str(smoke_runs[2]), "--detector", "dlib"])
    assert status == EXIT_OK
    assert "single-view" in capsys.readouterr().err                      # the run was not trained for one view
    record = json.loads((out / "me_coefficients.json").read_text())
    assert [v["present"] for v in record["views"]] == [False, True, False]
    with np.load(out / "me_coefficients.npz") as arrays:
        assert arrays["view_present"].tolist() == [False, True, False]
        assert np.all(arrays["landmarks_detected"][[0, 2]] == 0)
