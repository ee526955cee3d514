"""Morphable face models: one interface (:class:`MorphableModel`), several sources (procedural, BFM09).

Use :func:`load_face_model` with a :class:`dfmvr_lib.config.FaceModelConfig` to get the configured one.
"""
from .base import (MorphableModel, MorphableModelData, NUM_PARTS, PART_COLOURS, PART_NAMES, vertex_normals,
                   vertex_triangle_table)
from .factory import load_face_model
from .io import load_model, save_model
from .measurements import anthropometric_measurements, measurement_table
from .parts import derive_part_labels, part_labels_from_landmarks, part_mask_image

__all__ = ["MorphableModel", "MorphableModelData", "NUM_PARTS", "PART_COLOURS", "PART_NAMES", "vertex_normals",
           "vertex_triangle_table", "load_face_model", "load_model", "save_model", "anthropometric_measurements",
           "measurement_table", "derive_part_labels", "part_labels_from_landmarks", "part_mask_image"]
