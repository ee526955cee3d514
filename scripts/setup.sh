#!/usr/bin/env bash
# Set up the workbook on a fresh machine: Debian's libusb and libGL (open3d-cpu and OpenCV need them), a virtual environment in .venv,
# torch pinned to the CPU build through constraints.txt (so nothing pulls a CUDA build), the package with its test
# extras, and a registered `python3` Jupyter kernel for papermill. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages for shared libraries that wheels expect: open3d-cpu needs libusb, OpenCV (face-alignment) libGL.
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || missing+=(libgl1)
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
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dfmvr-workbench)" >/dev/null
.venv/bin/python -c "import torch, open3d, numba; print('[setup] torch', torch.__version__, '| open3d', open3d.__version__, '| numba', numba.__version__)"
