"""Morphable face models: one interface (:class:`MorphableModel`), several sources (procedural, BFM09)."""
from .base import (MorphableModel, MorphableModelData, NUM_PARTS, PART_COLOURS, PART_NAMES, vertex_normals,
                   vertex_triangle_table)

__all__ = ["MorphableModel", "MorphableModelData", "NUM_PARTS", "PART_COLOURS", "PART_NAMES", "vertex_normals",
           "vertex_triangle_table"]
