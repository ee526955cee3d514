"""Constants of the reconstruction command that must be importable without torch (``dfmvr --help``)."""

DEFAULT_REFINE_STEPS = 40
"""Default number of refinement steps (``dfmvr reconstruct --refine``): 3 views at 224 px take under 20 s on 2 CPU
cores (``benchmarks/bench_refine.py`` measures it)."""

COLOUR_MODES = ("shaded", "albedo", "photo")
"""Vertex colours of the written mesh: the albedo lit by the fitted SH light, the albedo alone, or the photos'
colours projected onto the mesh (visible views blended by angle; :mod:`dfmvr_lib.reconstruction.texture`)."""
