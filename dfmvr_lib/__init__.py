"""dfmvr_lib: the library behind the DF-MVR workbook (multi-view 3D face reconstruction with deep fusion).

Conventions (axes, units, pixels, angles) are in docs/conventions.md; every function honours them.
"""
import os as _os

__version__ = "0.1.0"

# numba's default threading-layer order tries TBB first; in a process that has imported open3d (the evaluation's
# ICP), the TBB it finds is open3d's bundled one, too old for numba, so every such process that then launched a
# parallel kernel printed a NumbaWarning (into every notebook) before falling back to OpenMP. Asking for OpenMP first
# keeps the layer that was used anyway and drops the warning; set the variable to override.
_os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp tbb workqueue")
