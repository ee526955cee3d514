"""Training and inference of the DF-MVR reconstruction network (spec section 3).

- :mod:`.data`: preloaded triplets, the deterministic batch order, single-view mode, colour augmentation;
- :mod:`.forward`: :func:`reconstruct` (views -> coefficients, posed meshes, renders) and :func:`batch_loss`;
- :mod:`.loop`: :func:`train_reconstruction` with a resumable, reusable run directory;
- :mod:`.validation`: mean vertex error to the ground truth against the mean-face baseline;
- :mod:`.batch_norm`: population batch-norm statistics for validation and the saved network ("precise BN").
"""
from .data import TrainingBatch, TripletTensors, load_triplets, make_batch, synthetic_meshes, synthetic_triplets
from .forward import Reconstruction, alignment_indices_in_landmarks_101, batch_loss, reconstruct
from .loop import TrainingRun, learning_rate_factor, load_trained_network, train_reconstruction
from .validation import (aligned_vertex_error_mm, paired_vertex_error_test, summarise_vertex_errors,
                         vertex_error_table)

__all__ = ["Reconstruction", "TrainingBatch", "TrainingRun", "TripletTensors", "aligned_vertex_error_mm",
           "alignment_indices_in_landmarks_101", "batch_loss", "learning_rate_factor", "load_trained_network",
           "load_triplets", "make_batch", "paired_vertex_error_test", "reconstruct", "summarise_vertex_errors",
           "synthetic_meshes", "synthetic_triplets", "train_reconstruction", "vertex_error_table"]
