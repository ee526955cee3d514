"""Timing helper shared by the benchmark scripts (they run as scripts, so this module is on their path)."""
from __future__ import annotations

import statistics
import time


def time_ms(function, repeats: int) -> tuple[float, float]:
    """(median, minimum) wall time in ms of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)
