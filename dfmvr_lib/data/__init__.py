"""Datasets: the synthetic multi-view benchmark, readers for the paper's datasets, real-photo preparation.

Every dataset returns :class:`MultiViewSample`; batch them with :func:`collate_samples`.
"""
from .sample import VIEW_NAMES, MultiViewBatch, MultiViewSample, collate_samples
from .synthetic import (PRESETS, SyntheticMultiViewDataset, SyntheticSettings, benchmark_statistics,
                        generate_benchmark, load_manifest)

__all__ = ["VIEW_NAMES", "MultiViewBatch", "MultiViewSample", "collate_samples", "PRESETS",
           "SyntheticMultiViewDataset", "SyntheticSettings", "benchmark_statistics", "generate_benchmark",
           "load_manifest"]
