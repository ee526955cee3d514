"""dfmvr_lib: the library behind the DF-MVR workbook (multi-view 3D face reconstruction with deep fusion).

Conventions (axes, units, pixels, angles) are in docs/conventions.md; every function honours them.
"""
__version__ = "0.1.0"
