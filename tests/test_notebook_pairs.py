"""Each notebook is a jupytext pair (``NN_name.ipynb`` + ``NN_name.py``, percent format; notebooks/jupytext.toml):
the two hold the same cells, the committed ``.ipynb`` carries no outputs, and an edit saved through the Jupyter
contents manager that JupyterLab uses reaches both files, survives ``make notebooks`` and is what papermill runs."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from dfmvr_lib.run_notebooks import NOTEBOOK_DIR, numbered_notebooks

NOTEBOOKS = numbered_notebooks()


def cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    """(type, source, tags) of every cell: what a pair must agree on."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in notebook.cells]


def test_every_notebook_has_its_text_twin_and_no_stray_twins():
    twins = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    assert NOTEBOOKS and [p.stem for p in twins] == [p.stem for p in NOTEBOOKS]
    config = (NOTEBOOK_DIR / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in config


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_pair_holds_the_same_cells(notebook):
    paired = jupytext.read(notebook)
    text = jupytext.read(notebook.with_suffix(".py"))
    assert cells(paired) == cells(text), (f"{notebook.name} and {notebook.with_suffix('.py').name} differ: "
                                          "run `make notebooks` (syncs each pair, the newer file wins)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(notebook):
    raw = json.loads(notebook.read_text())
    with_outputs = [i for i, c in enumerate(raw["cells"])
                    if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not with_outputs, f"{notebook.name}: cells {with_outputs} carry outputs; run `make notebooks` to strip them"
    nbformat.validate(nbformat.reads(notebook.read_text(), 4))      # ids present, valid nbformat 4.5


def _small_pair(folder: Path) -> Path:
    """A two-cell notebook paired like the workbook's, in ``folder`` (with a copy of notebooks/jupytext.toml)."""
    shutil.copy(NOTEBOOK_DIR / "jupytext.toml", folder / "jupytext.toml")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('profile = "cpu"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# A pair"), parameters,
                      nbformat.v4.new_code_cell('print("profile", profile)')]
    path = folder / "00_pair.ipynb"
    nbformat.write(notebook, path)
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--sync", str(path)], check=True)
    return path


def test_a_save_through_the_contents_manager_reaches_both_files_and_papermill(tmp_path):
    import papermill

    path = _small_pair(tmp_path)
    manager = jupytext.TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get("00_pair.ipynb")
    model["content"].cells[2].source = 'print("edited in JupyterLab", profile)'
    model["content"].cells[2].outputs = [nbformat.v4.new_output("stream", text="an output\n")]
    manager.save(model, "00_pair.ipynb")
    assert 'print("edited in JupyterLab", profile)' in path.with_suffix(".py").read_text()
    # `make notebooks` after the save: the pair stays as saved, and the outputs are stripped
    subprocess.run(["make", "-s", "-C", str(Path(__file__).resolve().parents[1]), "notebooks",
                    f"NOTEBOOKS={path}", f"PY={sys.executable}"], check=True)
    raw = json.loads(path.read_text())
    assert not raw["cells"][2]["outputs"] and 'edited in JupyterLab' in "".join(raw["cells"][2]["source"])
    assert cells(jupytext.read(path)) == cells(jupytext.read(path.with_suffix(".py")))
    executed = papermill.execute_notebook(str(path), str(tmp_path / "executed.ipynb"), parameters={"profile": "smoke"},
                                          kernel_name="python3", progress_bar=False)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "edited in JupyterLab smoke" in printed


def test_an_edit_of_the_text_twin_reaches_the_notebook_on_make_notebooks(tmp_path):
    path = _small_pair(tmp_path)
    twin = path.with_suffix(".py")
    twin.write_text(twin.read_text().replace('print("profile", profile)', 'print("edited as text", profile)'))
    subprocess.run(["make", "-s", "-C", str(Path(__file__).resolve().parents[1]), "notebooks",
                    f"NOTEBOOKS={path}", f"PY={sys.executable}"], check=True)
    assert "edited as text" in "".join(json.loads(path.read_text())["cells"][2]["source"])
