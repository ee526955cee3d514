"""Every numbered notebook runs headlessly through papermill in the smoke profile and writes its results."""
import json

import pytest

from dfmvr_lib.run_notebooks import numbered_notebooks, run_notebook
from shared_fixtures import FIXTURES

NOTEBOOKS = numbered_notebooks()
REAL_PHOTOS = FIXTURES / "real_multiview" / "pixelface_crops"


def test_notebooks_exist_with_a_parameters_cell():
    assert NOTEBOOKS, "no numbered notebooks found"
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"
        assert "profile" in "".join(tagged[0]["source"])


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(notebook, tmp_path):
    results = tmp_path / "results"
    parameters = {"data_dir": str(tmp_path / "data")}
    if REAL_PHOTOS.is_dir():  # the real-photo path runs too when the fixtures are beside the repo
        parameters["photos_dir"] = str(REAL_PHOTOS)
    executed = run_notebook(notebook, tmp_path / "executed", "smoke", results, extra_parameters=parameters)
    assert executed.exists()
    written = [p for p in results.rglob("*") if p.is_file()]
    assert written, f"{notebook.name} wrote nothing to results_dir"
    for path in written:
        assert path.stat().st_size > 0, f"{path} is empty"
