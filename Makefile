# Two entry points (see README.md): `make main` runs every notebook (cpu profile), `make test` runs the tests.
PROFILE ?= cpu
PY := .venv/bin/python

.PHONY: setup main smoke test benchmarks
setup:
	bash scripts/setup.sh

main: setup
	$(PY) -m dfmvr_lib.run_notebooks --profile $(PROFILE)

smoke: setup
	$(PY) -m dfmvr_lib.run_notebooks --profile smoke --output-dir runs/smoke_notebooks --results-dir runs/smoke_results

test: setup
	$(PY) -m pytest -q tests

benchmarks: setup
	for bench in benchmarks/bench_*.py; do $(PY) $$bench || exit 1; done
