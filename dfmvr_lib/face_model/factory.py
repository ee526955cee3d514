"""Build the morphable model a configuration names (procedural default, or the user's BFM09)."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

from ..config import FaceModelConfig
from .base import MorphableModel
from .procedural import build_procedural_model


def load_face_model(config: FaceModelConfig) -> MorphableModel:
    """The model for ``config`` (a :class:`dfmvr_lib.config.FaceModelConfig`).

    ``procedural`` is built by code (cached in memory per process); ``bfm_front`` loads a Deep3D
    ``BFM_model_front.mat``; ``basel_bfm09`` converts the Basel release once (next to ``path``) and loads it.
    """
    if config.source == "procedural":
        # a copy, so that moving or editing the returned model never changes the cached one
        return copy.deepcopy(_procedural(config.procedural_vertex_target, config.identity_components,
                           config.expression_components, config.albedo_components))
    if config.source in ("bfm_front", "basel_bfm09") and not config.path:
        raise ValueError(f"face_model.source={config.source!r} needs face_model.path (the model file)")
    from .bfm import convert_basel_bfm09, load_bfm_front  # here: scipy.io (~0.1 s to import) only for a BFM source

    if config.source == "bfm_front":
        return load_bfm_front(config.path)
    if config.source == "basel_bfm09":
        missing = [name for name, value in (("expression_path", config.expression_path),
                                            ("deep3d_meta_dir", config.deep3d_meta_dir)) if not value]
        if missing:
            raise ValueError(f"face_model.source='basel_bfm09' needs face_model.{' and face_model.'.join(missing)}")
        converted = Path(config.path).with_name("BFM_model_front.mat")
        if not converted.exists():
            convert_basel_bfm09(config.path, config.expression_path, config.deep3d_meta_dir, converted)
        return load_bfm_front(converted)
    raise ValueError(f"unknown face_model.source {config.source!r}: use 'procedural', 'bfm_front' or 'basel_bfm09'")


@functools.lru_cache(maxsize=4)
def _procedural(vertex_target: int, identity: int, expression: int, albedo: int) -> MorphableModel:
    return build_procedural_model(vertex_target=vertex_target, identity_components=identity,
                                  expression_components=expression, albedo_components=albedo)
