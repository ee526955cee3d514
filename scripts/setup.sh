#!/usr/bin/env bash
# Set up the workbook on a fresh machine: Debian's libusb and libGL (open3d-cpu and OpenCV need them) and Chromium with
# its driver (the real-browser test of the notebooks), a virtual environment in .venv,
# torch pinned to the CPU build through constraints.txt (so nothing pulls a CUDA build), the package with its test
# extras, a registered `python3` Jupyter kernel for papermill and JupyterLab, and (in a git checkout) the git filter that
# strips notebook outputs at commit. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages for shared libraries that wheels expect: open3d-cpu needs libusb, OpenCV (face-alignment) libGL;
# Debian's Chromium + ChromeDriver for tests/test_browser.py (a test tool's own browser download fails offline).
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || missing+=(libgl1)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "[setup] need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "[setup] installing torch (CPU build, pinned) and the workbook"
.venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
# pytorch3d, for the pytorch3d-backend parity tests in tests/test_renderer.py ONLY: nothing in the library needs it
# (backend="pytorch3d" is optional). A development checkout has a CPU wheel in ../shared/wheels, built for exactly
# torch 2.13.0 on CPython 3.11 (../shared/wheels/README.md); a user's clone has none, and the tests then skip.
# Skipped when pytorch3d already imports, or when the wheel does not fit this venv's torch / Python.
wheels=(../shared/wheels/pytorch3d-*.whl)
if [ -e "${wheels[0]}" ] && ! .venv/bin/python -c "import pytorch3d" >/dev/null 2>&1 \
   && .venv/bin/python -c "import sys, torch; sys.exit(not (torch.__version__.split('+')[0] == '2.13.0' and sys.version_info[:2] == (3, 11)))"; then
  echo "[setup] installing pytorch3d from ${wheels[0]} (parity tests only)"
  .venv/bin/python -m pip install -q -c constraints.txt "${wheels[0]}"
fi
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dfmvr-workbench)" >/dev/null
# open3d-cpu pulls in dash, whose JupyterLab source extension makes every JupyterLab start ask for a rebuild (which
# needs node and the network); the workbook does not use dash, so its source extension is removed from .venv.
if [ -e .venv/share/jupyter/lab/extensions/dash-jupyterlab.tgz ]; then
  .venv/bin/jupyter labextension uninstall --no-build @plotly/dash-jupyterlab >/dev/null 2>&1
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # .gitattributes sends notebooks/*.ipynb through this filter: outputs and execution counts never reach a commit
  git config filter.nbstripout.clean "$PWD/.venv/bin/python -m nbstripout --keep-id"
  git config filter.nbstripout.smudge cat
  git config filter.nbstripout.required true
fi
.venv/bin/python -c "import torch, open3d, numba; print('[setup] torch', torch.__version__, '| open3d', open3d.__version__, '| numba', numba.__version__)"
