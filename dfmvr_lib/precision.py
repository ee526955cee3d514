"""Which floating-point precision the network runs in on this machine: bfloat16 autocast only where it is native.

On CPUs, bfloat16 autocast pays off only with native bf16 instructions (Intel AMX or AVX-512-BF16): there it cut the
cpu profile's training step by ~20 %. Elsewhere PyTorch emulates bf16, and the same step is many times SLOWER (one
3x3 convolution forward + backward took 15x longer on an AVX2-only AMD EPYC). So the settings
``TrainingConfig.precision`` and ``ParserConfig.precision`` take ``"auto"`` (bf16 where native, else fp32),
``"fp32"`` or ``"bf16"``, and :func:`resolve_precision` turns them into what actually runs.

``DFMVR_PRECISION=fp32`` (or ``bf16``) in the environment overrides every ``"auto"`` setting, e.g. to measure the
main job as it runs on a machine without native bf16: ``DFMVR_PRECISION=fp32 make main``. The resolved precision
is part of every run key (a bf16 run is never resumed in fp32) and is printed when a run starts.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
ENVIRONMENT_VARIABLE = "DFMVR_PRECISION"
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of the x86 CPUs that run bfloat16 matrix products natively."""


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags listed in ``cpuinfo`` (empty when the file is not there, e.g. not Linux)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return set()
    flags: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return flags


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` runs bfloat16 natively: on CPUs, an AMX-BF16 or AVX-512-BF16 flag in /proc/cpuinfo
    (ARM: the ``bf16`` feature); on CUDA, ``torch.cuda.is_bf16_supported()``."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    return any(flag in flags for flag in NATIVE_BF16_FLAGS) or "bf16" in flags


def resolve_precision(setting: str, device_type: str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for a precision ``setting`` (:data:`PRECISIONS`) on ``device_type``.

    ``"auto"``: the ``DFMVR_PRECISION`` environment variable when set, else bf16 where :func:`native_bf16`, else
    fp32. ``"fp32"`` / ``"bf16"`` are taken as they are.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"unknown precision {setting!r}; choose one of {PRECISIONS}")
    if setting != "auto":
        return setting
    forced = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"{ENVIRONMENT_VARIABLE}={forced!r}: use 'fp32' or 'bf16'")
        return forced
    return "bf16" if native_bf16(device_type) else "fp32"


def autocast(precision: str, device_type: str = "cpu"):
    """Context manager: bfloat16 autocast for ``precision == "bf16"`` (a resolved precision), nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"autocast needs a resolved precision ('fp32' or 'bf16'), got {precision!r}")
    return contextlib.nullcontext()


def precision_note(setting: str, device_type: str = "cpu") -> str:
    """One line that says what runs and why, e.g. ``"precision fp32 (auto: no native bf16 on this CPU)"``."""
    resolved = resolve_precision(setting, device_type)
    if setting != "auto":
        return f"precision {resolved} (set in the configuration)"
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return f"precision {resolved} (auto, forced by {ENVIRONMENT_VARIABLE})"
    native = "native bf16 on this" if native_bf16(device_type) else "no native bf16 on this"
    return f"precision {resolved} (auto: {native} {'GPU' if device_type == 'cuda' else 'CPU'})"


__all__ = ["ENVIRONMENT_VARIABLE", "NATIVE_BF16_FLAGS", "PRECISIONS", "autocast", "cpu_flags", "native_bf16",
           "precision_note", "resolve_precision"]
