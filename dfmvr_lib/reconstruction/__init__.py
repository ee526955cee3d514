"""Reconstruct your own photos with a trained DF-MVR run (the library behind ``dfmvr reconstruct`` and notebook 09).

- :mod:`.reconstructor`: the profile's default run (found by its run key, never trained here) or a named run directory,
  loaded with its frozen face parser;
- :mod:`.photo_inputs`: files -> views (left, front, right; missing views black as in single-view training), photo
  preparation with the parser's labels, consistency checks between the views;
- :mod:`.fitting`: multi-view test-time refinement of the coefficients (the training losses, re-weighted for photos);
- :mod:`.held_out`: the held-out-view landmark error, a measure of the shape on real photos without a scan;
- :mod:`.texture`: vertex colours projected from the photos (``--colours photo``);
- :mod:`.pipeline`: network prediction + refinement, and the output files (:mod:`.export`: OBJ / PLY with vertex
  colours in mm, coefficients as JSON / NPZ, overlay PNG; all or nothing);
- :mod:`.viewer`: renders at any angle and an ipywidgets explorer for notebooks.

The names below are imported on first use, so ``dfmvr --help`` does not wait for torch (:mod:`.defaults` holds the
constants the command line needs).
"""
from __future__ import annotations

import importlib

from .defaults import COLOUR_MODES, DEFAULT_REFINE_STEPS

_EXPORTS = {
    "reconstructor": ("CheckpointNotFound", "Reconstructor", "default_checkpoint", "default_runs", "load_reconstructor",
                    "parser_run_of"),
    "export": ("OutputPaths", "staged_outputs", "write_mesh"),
    "fitting": ("RefinementResult", "RefinementSettings", "fitting_loss", "refine_reconstruction"),
    "held_out": ("held_out_photo_errors", "held_out_view_errors", "summarise_held_out"),
    "photo_inputs": ("InputError", "ParserLabels", "PreparedViews", "VIEW_NAMES", "assign_views", "photo_triplets",
               "prepare_views", "view_consistency_warnings", "views_batch"),
    "pipeline": ("PhotoReconstruction", "TripletReconstruction", "evaluate_against_mesh", "overlay_figure",
                 "photo_preparer", "reconstruct_photos", "reconstruct_triplet", "save_reconstruction"),
    "texture": ("photo_vertex_colours",),
    "viewer": ("coefficient_explorer", "mesh_view_figure", "triplet_chooser"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COLOUR_MODES", "DEFAULT_REFINE_STEPS", *sorted(_MODULE_OF)]
