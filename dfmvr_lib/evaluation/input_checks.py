"""Checking and converting the arrays the evaluation protocol receives (numpy or torch, any float dtype).

Every checker raises ``ValueError`` whose message starts with the argument's name, so a caller sees at once which
input was wrong. Converted arrays are float64 (points) or int64 (triangles), C-contiguous, on the CPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(array: Any) -> np.ndarray:
    """A numpy view or copy of ``array`` (torch tensors are detached and moved to the CPU first)."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):      # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def as_points(array: Any, name: str, count: int | None = None, min_count: int = 1) -> np.ndarray:
    """Check and convert points of shape (N, 3) in mm to float64.

    Args:
        array: (N, 3) numpy array or torch tensor of finite real numbers.
        name: the argument's name, used in error messages.
        count: the exact N required (e.g. 7 for the alignment landmarks), or None.
        min_count: the smallest N accepted when ``count`` is None.
    Returns:
        (N, 3) float64 array.
    Raises:
        ValueError naming ``name`` for a wrong shape, a non-numeric dtype, NaN or infinity.
    """
    if array is None:
        raise ValueError(f"{name} is required, got None")
    values = to_numpy(array)
    if values.dtype == object or not (np.issubdtype(values.dtype, np.floating)
                                       or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {values.dtype}")
    expected = f"({count}, 3)" if count is not None else "(N, 3)"
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(values.shape)}")
    if count is not None and values.shape[0] != count:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(values.shape)}")
    if count is None and values.shape[0] < min_count:
        raise ValueError(f"{name} must hold at least {min_count} points, got {values.shape[0]}")
    values = np.ascontiguousarray(values, dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} has {rows.size} row(s) with NaN or infinity (first at row {int(rows[0])})")
    return values


def as_triangles(array: Any, name: str, vertex_count: int) -> np.ndarray:
    """Check and convert triangles of shape (F, 3): integer vertex ids in [0, vertex_count), F >= 1.

    Returns (F, 3) int64. Raises ValueError naming ``name`` for a wrong shape, a non-integer dtype or an index
    out of range.
    """
    if array is None:
        raise ValueError(f"{name} is required, got None")
    values = to_numpy(array)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"{name} must have shape (F, 3), got {tuple(values.shape)}")
    if values.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one triangle, got shape {tuple(values.shape)}")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(np.isfinite(values)) \
                or not np.all(values == np.round(values)):
            raise ValueError(f"{name} must hold integer vertex ids, got dtype {values.dtype}")
    values = np.ascontiguousarray(values, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vertex_count:
        raise ValueError(f"{name} has vertex ids in [{low}, {high}], outside [0, {vertex_count}) "
                         f"({vertex_count} vertices)")
    return values


def as_labels(array: Any, name: str, count: int) -> np.ndarray:
    """Check per-point labels of shape (count,) (any dtype: ints, strings); returns a numpy array."""
    values = to_numpy(array)
    if values.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},) (one label per ground-truth point), "
                         f"got {tuple(values.shape)}")
    return values


def as_positive(value: Any, name: str) -> float:
    """A finite float > 0 (e.g. a distance in mm); ValueError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number
