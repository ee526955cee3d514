"""Differentiable mesh rendering with hard visibility (z-buffer) and perspective-correct interpolation.

Main entry point: :func:`render_views` (see its docstring and docs/conventions.md). Backends: ``"numba"`` (fast CPU
kernels, the ``"auto"`` choice for CPU tensors), ``"torch"`` (any device, the ``"auto"`` choice elsewhere) and
``"pytorch3d"`` (optional).
"""
from .interpolate import NumbaInterpolation, interpolate_numba, interpolate_torch
from .rasterize import NEAR_DEPTH_MM, rasterize_numba, rasterize_torch, screen_vertices
from .renderer import BACKENDS, RenderOutput, render_views, resolve_backend

__all__ = ["BACKENDS", "NEAR_DEPTH_MM", "NumbaInterpolation", "RenderOutput", "interpolate_numba", "interpolate_torch",
           "rasterize_numba", "rasterize_torch", "render_views", "resolve_backend", "screen_vertices"]
