# Entry points (see README.md): `make main` runs every notebook (cpu profile), `make test` runs the linter and the tests,
# `make lab` opens the notebooks in JupyterLab, `make notebooks` syncs each notebook pair and strips outputs.
PROFILE ?= cpu
PY ?= .venv/bin/python
LAB_PORT ?= 8888
NOTEBOOKS ?= $(wildcard notebooks/[0-9][0-9]_*.ipynb)

.PHONY: setup main smoke lint test benchmarks lab notebooks
setup:
	bash scripts/setup.sh

main: setup
	$(PY) -m dfmvr_lib.run_notebooks --profile $(PROFILE)

smoke: setup
	$(PY) -m dfmvr_lib.run_notebooks --profile smoke --output-dir runs/smoke_notebooks --results-dir runs/smoke_results

# ruff (pycodestyle + pyflakes, configured in pyproject.toml) over the library, tests, benchmarks and notebook twins.
lint:
	$(PY) -m ruff check

test: setup
	$(PY) -m ruff check
	$(PY) -m pytest -q tests

benchmarks: setup
	for bench in benchmarks/bench_*.py; do $(PY) $$bench || exit 1; done

# JupyterLab on notebooks/ with the workbook's kernel, on this machine only (127.0.0.1; the URL it prints has the token).
lab: setup
	$(PY) -m jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# After editing a notebook outside JupyterLab (either file of a pair): the newer file of each pair wins, the other is
# rewritten; outputs and execution counts are stripped from the .ipynb (JupyterLab saves them while you work).
notebooks:
	$(PY) -m jupytext --quiet --sync $(NOTEBOOKS)
	$(PY) -m nbstripout --keep-id $(NOTEBOOKS)
