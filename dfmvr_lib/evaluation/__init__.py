"""DF-MVR's evaluation protocol: the scan-to-mesh reconstruction error in mm (spec section 4).

>>> result = evaluate_reconstruction(pred_vertices, pred_triangles, pred_vertices[model.alignment_7],
...                                  scan_points, None, scan_landmarks_7)          # doctest: +SKIP
>>> result.rmse_mm, result.mean_mm, result.std_mm                                    # doctest: +SKIP
>>> errors_table([result], ids=["subject_001"])                                     # doctest: +SKIP

Modules: :mod:`.crop` (front-face ball), :mod:`.registration` (landmark similarity + rigid ICP), :mod:`.distances`
(GT points -> predicted mesh), :mod:`.protocol` (the whole protocol and the tables), :mod:`.input_checks` (checks).
"""
from .registration import IcpResult, SimilarityTransform, align_landmarks, refine_with_icp, vertex_normals
from .crop import CropSphere, FrontFaceCrop, crop_front_face, front_face_sphere
from .distances import PointToMeshDistances, point_to_mesh_distances
from .protocol import (ErrorSummary, ReconstructionError, errors_table, evaluate_reconstruction,
                       region_errors_table)

__all__ = ["CropSphere", "ErrorSummary", "FrontFaceCrop", "IcpResult", "PointToMeshDistances", "ReconstructionError",
           "SimilarityTransform", "align_landmarks", "crop_front_face", "errors_table", "evaluate_reconstruction",
           "front_face_sphere", "point_to_mesh_distances", "refine_with_icp", "region_errors_table",
           "vertex_normals"]
