"""What this machine offers the workbook: versions, threads, optional backends (shown by notebook 00)."""
from __future__ import annotations

import importlib
import os
import platform

import torch

from .provenance import git_commit

OPTIONAL_PACKAGES = {
    "pytorch3d": "optional renderer backend (GPU conda installs)",
    "open3d": "ICP alignment for evaluation",
    "numba": "fast CPU rasteriser",
    "face_alignment": "FAN 68-point landmarks on real photos (needs its weights)",
    "dlib": "offline 68-point landmark detector (dlib-bin + face-recognition-models)",
    "papermill": "headless notebook runs",
}


def package_version(module_name: str) -> str | None:
    """The module's ``__version__`` if it imports, else ``None`` (any import error counts as missing)."""
    try:
        module = importlib.import_module(module_name)
    except Exception:  # an optional package may fail with any error (missing shared library, ...)
        return None
    return str(getattr(module, "__version__", "installed"))


def environment_report() -> "pandas.DataFrame":  # noqa: F821
    """One row per fact: item, value, note. Imports the optional packages to see whether they work."""
    import pandas as pd

    rows = [
        ("python", platform.python_version(), platform.platform()),
        ("torch", torch.__version__, f"{torch.get_num_threads()} intra-op threads"),
        ("cuda", str(torch.cuda.is_available()), torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""),
        ("cpu count", str(os.cpu_count()), ""),
        ("git commit", git_commit(), ""),
    ]
    for name, purpose in OPTIONAL_PACKAGES.items():
        version = package_version(name)
        rows.append((name, version or "missing", purpose))
    return pd.DataFrame(rows, columns=["item", "value", "note"])
