"""From input views to coefficients, posed meshes and renders, and from there to the training losses."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from ..camera import PerspectiveCamera
from ..config import LossConfig
from ..face_model.base import MorphableModel
from ..precision import autocast
from ..losses import LossTerms, photo_loss, photo_weight_map, reconstruction_loss, shape_consistency_loss
from ..scene import FaceCoefficients, FaceRender, render_faces
from .data import TrainingBatch


@dataclass
class Reconstruction:
    """What :func:`reconstruct` returns for B triplets of S views.

    coefficients: the network's :class:`~dfmvr_lib.scene.FaceCoefficients` (float32).
    render: the :class:`~dfmvr_lib.scene.FaceRender` of those coefficients: ``vertices`` (B, V, 3) head frame mm,
    ``posed_vertices`` (B, S, V, 3) mm, ``landmarks_2d`` (B, S, 68, 2) pixels, and ``render.image`` (B*S, 3, H, W),
    ``render.alpha`` (B*S, 1, H, W) in sample-major order.
    per_view_faces: the network's ``per_view_faces``: False (the default) for B faces seen in S views; True for
    B * S faces of one view each (:class:`~dfmvr_lib.networks.SingleImageNet`; then B above reads B * S, S 1).
    """

    coefficients: FaceCoefficients
    render: FaceRender
    per_view_faces: bool = False

    @property
    def vertices(self) -> torch.Tensor:
        return self.render.vertices

    @property
    def posed_vertices(self) -> torch.Tensor:
        return self.render.posed_vertices


def _float_coefficients(coefficients: FaceCoefficients) -> FaceCoefficients:
    return FaceCoefficients(*(t.float() for t in (coefficients.identity, coefficients.expression, coefficients.albedo,
                                                  coefficients.lighting, coefficients.angles,
                                                  coefficients.translation)))


def reconstruct(network: torch.nn.Module, model: MorphableModel, camera: PerspectiveCamera, images: torch.Tensor,
                parse_maps: torch.Tensor, *, precision: str = "fp32", backend: str = "auto") -> Reconstruction:
    """Run the network on the views and render its prediction.

    Args:
        network: a network of :mod:`dfmvr_lib.networks` (or anything with the same call and a ``per_view_faces``
            attribute), possibly inside ``DistributedDataParallel``.
        model: the morphable model the coefficients belong to.
        camera: the camera of the images.
        images: (B, S, 3, H, W) in [0, 1]; missing views black.
        parse_maps: (B, S, H, W) int64 face masks (label 0 for missing views).
        precision: ``"fp32"`` or ``"bf16"`` (the network under bfloat16 autocast; a resolved precision, see
            :func:`dfmvr_lib.precision.resolve_precision`); the renderer always runs in float32.
        backend: renderer backend.
    """
    with autocast(precision, images.device.type):
        coefficients = network(images, parse_maps)
    coefficients = _float_coefficients(coefficients)
    render = render_faces(model, coefficients, camera, backend=backend)
    return Reconstruction(coefficients, render, per_view_faces=_unwrapped(network).per_view_faces)


def _unwrapped(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (which does not forward attributes), else itself."""
    return network.module if isinstance(network, DistributedDataParallel) else network


def alignment_indices_in_landmarks_101(model: MorphableModel) -> torch.Tensor:
    """Positions (7,) of the model's 7 alignment vertices inside its 101 3D landmarks (the 3D landmark loss fits its
    similarity on them). Raises ``ValueError`` if an alignment vertex is not one of the 101."""
    landmarks = model.landmark_101.tolist()
    missing = [int(v) for v in model.alignment_7.tolist() if int(v) not in landmarks]
    if missing:
        raise ValueError(f"{model.name}: alignment vertices {missing} are not among the 101 3D landmarks")
    return torch.tensor([landmarks.index(int(v)) for v in model.alignment_7.tolist()], device=model.landmark_101.device)


def batch_loss(config: LossConfig, reconstruction: Reconstruction, batch: TrainingBatch, model: MorphableModel,
               parser: torch.nn.Module | None, *, mask_active: bool = True,
               camera: PerspectiveCamera | None = None) -> LossTerms:
    """The training loss of one batch (see :func:`dfmvr_lib.losses.reconstruction_loss`).

    Works for multi-view networks (B faces seen in S views) and for one-face-per-view networks (B * S faces of
    one view each, :class:`~dfmvr_lib.networks.SingleImageNet`), as ``reconstruction.per_view_faces`` says; for
    the latter the 3D landmark targets are repeated per view and, with S > 1 views, the multi-view consistency
    terms of the baselines are available (``config.shape_consistency``, ``config.cross_view_photo``; the second
    needs ``camera``). Raises ``ValueError`` when the coefficients hold neither B faces (multi-view) nor B * S
    faces of one view each (one face per view).
    """
    render = reconstruction.render
    coefficients = reconstruction.coefficients
    B, S = batch.images.shape[:2]
    per_view = reconstruction.per_view_faces
    faces, views = (B * S, 1) if per_view else (B, S)
    if (coefficients.batch_size, coefficients.num_views) != (faces, views):
        raise ValueError(f"batch_loss: {B} samples of {S} views need {faces} faces of {views} view(s) each "
                         f"(per_view_faces={per_view}), got {coefficients.batch_size} of {coefficients.num_views}")
    consistency_terms = per_view and S > 1
    flat = lambda t: t.reshape(B * S, *t.shape[2:])  # noqa: E731
    predicted_3d = render.vertices[:, model.landmark_101]
    landmarks_3d = batch.landmarks_3d
    if per_view and landmarks_3d is not None:
        landmarks_3d = landmarks_3d.repeat_interleave(S, dim=0)
    albedo = model.albedo(coefficients.albedo) if config.reflectance > 0 else None
    terms = reconstruction_loss(
        config, coefficients=coefficients, rendered=render.render.image,
        render_alpha=render.render.alpha[:, 0], predicted_landmarks_2d=render.landmarks_2d.reshape(B * S, 68, 2),
        images=flat(batch.images), parse_maps=flat(batch.parse_maps), landmarks_2d=flat(batch.landmarks_2d),
        landmark_visibility=flat(batch.landmark_visibility), view_weight=flat(batch.view_weight), parser=parser,
        predicted_landmarks_3d=predicted_3d, landmarks_3d=landmarks_3d,
        alignment_indices=alignment_indices_in_landmarks_101(model) if landmarks_3d is not None else None,
        albedo=albedo, skin=model.part_labels == 1, mask_active=mask_active)
    if consistency_terms and config.shape_consistency > 0:
        terms.consistency = shape_consistency_loss(coefficients.identity.reshape(B, S, -1),
                                                   coefficients.expression.reshape(B, S, -1))
        terms.total = terms.total + config.shape_consistency * terms.consistency
    if consistency_terms and config.cross_view_photo > 0:
        if camera is None:
            raise ValueError("batch_loss: cross_view_photo needs the camera")
        terms.cross_view = cross_view_photo_loss(config, coefficients, batch, model, camera)
        terms.total = terms.total + config.cross_view_photo * terms.cross_view
    return terms


def cross_view_photo_loss(config: LossConfig, coefficients: FaceCoefficients, batch: TrainingBatch,
                          model: MorphableModel, camera: PerspectiveCamera) -> torch.Tensor:
    """Photo loss of every view rendered with the shape (identity, expression) predicted from the NEXT view of its
    triplet (A <- B, B <- C, C <- A) and its own pose, albedo and lighting: a shape that explains one view must
    explain the others (multi-view photometric consistency, after Shang et al.)."""
    B, S = batch.images.shape[:2]
    swap = lambda c: c.reshape(B, S, -1).roll(-1, dims=1).reshape(B * S, -1)  # noqa: E731
    crossed = FaceCoefficients(swap(coefficients.identity), swap(coefficients.expression), coefficients.albedo,
                               coefficients.lighting, coefficients.angles, coefficients.translation)
    render = render_faces(model, crossed, camera).render
    parse = batch.parse_maps.reshape(B * S, *batch.parse_maps.shape[2:])
    return photo_loss(render.image, batch.images.reshape(B * S, *batch.images.shape[2:]), render.alpha[:, 0],
                      parse > 0, photo_weight_map(config, parse), batch.view_weight.reshape(B * S))


__all__ = ["Reconstruction", "alignment_indices_in_landmarks_101", "batch_loss", "cross_view_photo_loss",
           "reconstruct"]
