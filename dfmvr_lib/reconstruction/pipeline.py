"""One reconstruction from prepared views: network prediction (:func:`dfmvr_lib.training.reconstruct`), optional
multi-view refinement (:func:`~dfmvr_lib.reconstruction.fitting.refine_reconstruction`), and the files that record
it (:func:`save_reconstruction`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.photo_crop import alignment_template
from ..data.photos import PhotoPreparer, load_photo
from ..face_model import PART_NAMES
from ..face_model.albedo_range import albedo_in_range
from ..provenance import provenance
from ..scene import FaceCoefficients, FaceRender
from ..training.data import TrainingBatch
from ..training.figures import prediction_figure
from ..training.forward import reconstruct
from .defaults import COLOUR_MODES
from .export import OutputPaths, coefficient_arrays, staged_outputs, write_json, write_mesh
from .fitting import RefinementResult, RefinementSettings, refine_reconstruction
from .held_out import HELD_OUT_LANDMARKS, REFERENCE_CROP_PX, held_out_residual
from .photo_inputs import VIEW_NAMES, ParserLabels, PreparedViews, prepare_views, view_consistency_warnings
from .reconstructor import Reconstructor
from .texture import photo_vertex_colours



@dataclass
class TripletReconstruction:
    """The reconstruction of B triplets (B = 1 for photos).

    network_coefficients: what the network predicted; coefficients: the final ones (refined when
    ``refinement.steps`` > 0, else the network's); render: the :class:`~dfmvr_lib.scene.FaceRender` of the final
    coefficients (``vertices`` (B, V, 3) head frame mm, ``landmarks_2d`` (B, S, 68, 2) pixels, ``render.image``
    (B*S, 3, H, W)); fit: the :class:`~dfmvr_lib.reconstruction.fitting.RefinementResult` (its ``losses`` row 0 is
    the fitting loss of the starting point, the last row that of the final coefficients); start: ``"network"`` or
    ``"mean face"`` (where the refinement started, see :func:`plausibility_check`); plausibility: the check's numbers
    when it ran.
    """

    network_coefficients: FaceCoefficients
    coefficients: FaceCoefficients
    render: FaceRender
    fit: RefinementResult
    start: str = "network"
    plausibility: dict | None = None

    @property
    def refine_steps(self) -> int:
        return int(self.fit.losses["step"].iloc[-1])

    @property
    def vertices(self) -> torch.Tensor:
        """(B, V, 3) head-frame vertices, mm."""
        return self.render.vertices


def plausibility_check(model, camera, coefficients: FaceCoefficients, targets: TrainingBatch) -> dict:
    """Does the predicted shape explain the views' landmarks better than the mean face? For every present view, its
    pose alone is fitted to its detected landmarks (the 51 inner ones, :func:`~.held_out.held_out_residual`) with
    the predicted shape and with the mean shape. Returns ``{"network_px", "mean_face_px"}`` (mean over the views and
    triplets, pixels of a 224-px crop) and ``"plausible"`` (the network's shape is not worse)."""

    mean_face = coefficients.with_mean_shape()
    network, reference = [], []
    for view in range(targets.view_weight.shape[1]):
        present = targets.view_weight[:, view] > 0
        if not bool(present.any()):
            continue
        network.append(held_out_residual(model, camera, coefficients, targets, view)[present])
        reference.append(held_out_residual(model, camera, mean_face, targets, view)[present])
    network_px, mean_px = float(torch.cat(network).mean()), float(torch.cat(reference).mean())
    return {"network_px": network_px, "mean_face_px": mean_px, "plausible": network_px <= mean_px}


def reconstruct_triplet(reconstructor: Reconstructor, targets: TrainingBatch, refine_steps: int = 0, *,
                        settings: RefinementSettings | None = None, progress: bool = False,
                        start: str = "network") -> TripletReconstruction:
    """Predict the coefficients of the triplets in ``targets`` with the network, then refine them for
    ``refine_steps`` steps on the same views (:func:`~.fitting.refine_reconstruction` with ``settings``, default
    :class:`~.fitting.RefinementSettings`; a mask loss, when the settings weight it, needs the reconstructor's parser).

    Args:
        reconstructor: network, model, camera and parser (:func:`~.checkpoints.load_reconstructor`).
        targets: ``network_images`` (B, 3, 3, S, S) / ``network_parse_maps`` (B, 3, S, S) are what the network sees;
            ``images``, ``parse_maps``, ``landmarks_2d``, ``view_weight`` are the refinement's targets.
        refine_steps: Adam steps of test-time fitting (0 = the network's prediction, its albedo projected into
            ``settings.albedo_bound``).
        start: where the refinement starts: ``"network"`` (its prediction), ``"mean face"`` (the mean shape with the
            network's poses, albedo and light), or ``"auto"``: the network's prediction unless it fails
            :func:`plausibility_check` (its shape explains the views' landmarks worse than the mean face), in which
            case a warning is issued and the mean face is used.
    """
    import warnings


    if start not in ("network", "mean face", "auto"):
        raise ValueError(f"start must be 'network', 'mean face' or 'auto', got {start!r}")
    with torch.no_grad():
        prediction = reconstruct(reconstructor.network, reconstructor.model, reconstructor.camera,
                                 targets.network_images, targets.network_parse_maps)
    network = prediction.coefficients
    check = None
    if start == "auto":
        check = plausibility_check(reconstructor.model, reconstructor.camera, network, targets)
        if not check["plausible"]:
            warnings.warn(f"the network's shape explains the photos' landmarks worse than the mean face "
                          f"({check['network_px']:.2f} px against {check['mean_face_px']:.2f} px at 224 px, "
                          "each view's "
                          f"pose fitted): the refinement starts from the mean face", PlausibilityWarning, stacklevel=2)
        start = "network" if check["plausible"] else "mean face"
    initial = network if start == "network" else network.with_mean_shape()
    fit = refine_reconstruction(reconstructor.model, reconstructor.camera, initial, targets,
                                reconstructor.config.losses, reconstructor.parser, steps=refine_steps,
                                settings=settings, progress=progress)
    return TripletReconstruction(network_coefficients=network, coefficients=fit.coefficients,
                                 render=fit.render, fit=fit, start=start, plausibility=check)


class PlausibilityWarning(UserWarning):
    """The network's prediction failed :func:`plausibility_check`; the reconstruction starts from the mean face."""


def photo_preparer(reconstructor: Reconstructor, detector=None, *, use_parser: bool = True,
                   cache_dir: str | os.PathLike | None = None):
    """The photo pipeline that matches a trained run: crops aligned to its face model at its image size, part labels
    from its frozen parser (``use_parser`` and a parser present; else landmark polygons), ``detector`` (default: the
    workbook's default detector), photos cached under ``cache_dir`` (None: no cache)."""

    provider = (ParserLabels(reconstructor.parser, reconstructor.parser_run_dir.name)
                if use_parser and reconstructor.parser is not None else None)
    return PhotoPreparer(detector=detector, template=alignment_template(reconstructor.model),
                         output_size=reconstructor.image_size, parse_provider=provider, cache_dir=cache_dir,
                         use_cache=cache_dir is not None)


@dataclass
class PhotoReconstruction:
    """:func:`reconstruct_photos`' result: the prepared views, the reconstruction, and the warnings about the views
    (different people, swapped sides, the same photo twice)."""

    prepared: PreparedViews
    result: TripletReconstruction
    warnings: list[str]


LANDMARK_FIT_RATIO = 2.5
"""A view is flagged when its fitted landmarks miss the detected ones by more than this many times the mean miss of
the other views (:func:`landmark_fit_warnings`)."""

LANDMARK_FIT_MINIMUM_PX = 5.0
"""... and by more than this many pixels of a 224-px crop (mean over the 51 inner landmarks)."""


def landmark_fit_warnings(files: Sequence[Path | None], fitted: torch.Tensor, detected: torch.Tensor,
                          view_weight: torch.Tensor, image_size: int) -> list[str]:
    """Views whose detected landmarks the fitted face cannot follow while the other views can: a failed detection
    (e.g. dlib's points beside a face turned beyond ~40 degrees) or a photo of another moment. Meant for a refined
    reconstruction (:func:`reconstruct_photos` checks it when ``refine_steps`` > 0), whose poses are fitted per view.
    The thresholds were set on the real fixtures: after 40 refinement steps the failed right view of
    ``pixelface_crops`` 00352062 missed by 27.0 px (7.0 after 200 steps) against 3.6-3.8 px (2.1-2.4) for the two
    other views of its triplet, and the 9 views of the other three triplets by at most 3.5 px (2.3).

    Args:
        files: (S,) the photo of each view or None.
        fitted, detected: (S, 68, 2) the reconstruction's projected landmarks and the detector's, crop pixels.
        view_weight: (S,) 0 for a view that was not given.
        image_size: the crop's size in pixels (residuals are reported at :data:`REFERENCE_CROP_PX`).
    Returns:
        One message per flagged view, naming its file: its mean inner-landmark residual (iBUG 17-67) exceeds
        :data:`LANDMARK_FIT_MINIMUM_PX` and :data:`LANDMARK_FIT_RATIO` times the mean of the other given views.
    """
    inner = list(HELD_OUT_LANDMARKS)
    residual = ((fitted[:, inner] - detected[:, inner]).norm(dim=-1).mean(-1) * (REFERENCE_CROP_PX / image_size))
    given = [view for view in range(len(residual)) if float(view_weight[view]) > 0]
    messages = []
    for view in given:
        others = residual[[other for other in given if other != view]]
        if not len(others):
            continue
        reference = float(others.mean())
        value = float(residual[view])
        if value > LANDMARK_FIT_MINIMUM_PX and value > LANDMARK_FIT_RATIO * reference:
            name = VIEW_NAMES[view] if view < len(VIEW_NAMES) else f"view {view}"
            messages.append(f"{files[view]} ({name} view): the reconstruction misses its detected landmarks by "
                            f"{value:.1f} px (at {REFERENCE_CROP_PX} px) against {reference:.1f} px in the other "
                            "views; the detection may have failed (see the overlay PNG: green points off the face)")
    return messages


def reconstruct_photos(reconstructor: Reconstructor, files: Sequence[Path | None], preparer, refine_steps: int = 0,
                       *, progress=None, show_progress: bool = False, start: str = "auto",
                       settings: RefinementSettings | None = None) -> PhotoReconstruction:
    """Photos -> mesh: prepare the views ``files`` (left, front, right; None = not given) with ``preparer``
    (:func:`photo_preparer`), check that they look like one person, then :func:`reconstruct_triplet` with
    ``refine_steps`` and ``start`` (default ``"auto"``: from the mean face when the network's shape fails
    :func:`plausibility_check`; that is then one of the returned warnings). ``progress``: callable receiving one
    message per photo; ``show_progress``: tqdm bar of the refinement. Raises :class:`~.photo_inputs.InputError` naming
    the file when a photo cannot be used."""
    import warnings as python_warnings

    prepared = prepare_views(files, preparer, progress=progress)
    messages = view_consistency_warnings(prepared.files, [photo.landmarks if photo is not None else None
                                                          for photo in prepared.photos])
    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always", PlausibilityWarning)
        result = reconstruct_triplet(reconstructor, prepared.targets, refine_steps, progress=show_progress,
                                     start=start, settings=settings)
    for warning in caught:
        if issubclass(warning.category, PlausibilityWarning):
            messages.append(str(warning.message))
        else:
            python_warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    targets = prepared.targets
    if refine_steps > 0:                # the network's own poses are not fitted: a miss there is not the detector's
        messages += landmark_fit_warnings(prepared.files, result.render.landmarks_2d[0].detach(),
                                          targets.landmarks_2d[0], targets.view_weight[0], targets.images.shape[-1])
    outside = albedo_range_record(reconstructor.model, result.coefficients)
    outside = [f"{region} (distance {values['distance']:.2f} > {values['limit']:.2f})"
               for region, values in outside.items() if not values["inside"]]
    if outside:
        messages.append("the fitted albedo is outside the face model's colour range in: " + ", ".join(outside)
                        + " (dfmvr_lib.face_model.albedo_range); --colours photo takes the photos' colours instead")
    return PhotoReconstruction(prepared, result, messages)


def albedo_range_record(model, coefficients: FaceCoefficients, sample: int = 0) -> dict:
    """Region -> ``{"rgb", "distance", "limit", "inside"}`` of the albedo of face ``sample``
    (:func:`~dfmvr_lib.face_model.albedo_range.albedo_in_range`, the model prior's 99 % range)."""

    table = albedo_in_range(model, coefficients.albedo[sample])
    return {row.region: {"rgb": [round(row.r, 4), round(row.g, 4), round(row.b, 4)],
                         "distance": round(row.distance, 3), "limit": round(row.limit, 3), "inside": bool(row.inside)}
            for row in table.itertuples()}


def vertex_colours(reconstructor: Reconstructor, result: TripletReconstruction, mode: str = "shaded",
                   sample: int = 0, photos: Sequence | None = None) -> torch.Tensor:
    """(V, 3) RGB in [0, 1] per vertex: ``"shaded"`` = albedo lit by the fitted SH light (what the renders show),
    ``"albedo"`` = the reflectance alone, ``"photo"`` = the photos' colours projected onto the mesh
    (:func:`~dfmvr_lib.reconstruction.texture.photo_vertex_colours`; needs ``photos``, the (3,)
    :class:`~dfmvr_lib.data.photos.PreparedPhoto` or None per view; unseen vertices keep the shaded colour)."""
    if mode == "shaded":
        colours = result.render.colours[sample]
    elif mode == "photo":

        if photos is None or all(photo is None for photo in photos):
            raise ValueError("colours='photo' needs the prepared photos (photos=...)")
        originals = [load_photo(photo.path)[0] if photo is not None else None for photo in photos]
        affines = [photo.affine if photo is not None else None for photo in photos]
        colours, _ = photo_vertex_colours(reconstructor.model, reconstructor.camera, result.render,
                                          result.coefficients, originals, affines,
                                          result.render.colours[sample].detach(), sample=sample)
    elif mode == "albedo":
        with torch.no_grad():
            colours = reconstructor.model.albedo(result.coefficients.albedo[sample:sample + 1])[0]
    else:
        raise ValueError(f"colours must be one of {COLOUR_MODES}, got {mode!r}")
    return colours.detach().clamp(0.0, 1.0)


def overlay_figure(result: TripletReconstruction, targets: TrainingBatch, view_names: Sequence[str] | None = None,
                   title: str | None = None, sample: int = 0):
    """:func:`dfmvr_lib.training.figures.prediction_figure` of one triplet: the inputs, the render pasted over
    them, and the render with the predicted landmarks (red) and the input's landmarks (green; none for a view that
    was not given)."""

    S = targets.images.shape[1]
    frames = slice(sample * S, (sample + 1) * S)
    target_landmarks = targets.landmarks_2d[sample].clone().float()
    target_landmarks[targets.view_weight[sample] == 0] = float("nan")
    return prediction_figure(targets.images[sample], result.render.render.image[frames].detach(),
                             result.render.render.alpha[frames, 0].detach(),
                             result.render.landmarks_2d[sample].detach(), target_landmarks,
                             view_names=tuple(view_names) if view_names else VIEW_NAMES, title=title)


def save_reconstruction(reconstructor: Reconstructor, result: TripletReconstruction, targets: TrainingBatch,
                        obj_path: str | os.PathLike, *, files: Sequence[Path | None] = (None, None, None),
                        colours: str = "shaded", warnings: Sequence[str] = (), title: str | None = None,
                        extra: dict | None = None, mesh_formats: Sequence[str] = ("obj", "ply"),
                        photos: Sequence | None = None) -> list[Path]:
    """Write the reconstruction of one triplet, all files or none (:func:`staged_outputs`: a failure leaves no
    file and no new folder, and keeps the files of an earlier reconstruction of the same name as they were).

    Files (:class:`~.export.OutputPaths` of ``obj_path``): the mesh as OBJ and binary PLY with vertex colours
    (head frame, mm; ``mesh_formats`` picks which of the two); the coefficients as JSON (readable, with units, input
    files, run directories, fitting losses, warnings and provenance) and NPZ (arrays: the final and the network's
    coefficients, detected and predicted 2D landmarks); the overlay PNG (:func:`overlay_figure`).

    ``photos``: the prepared photos of the views (:attr:`~.photo_inputs.PreparedViews.photos`), needed by
    ``colours="photo"``.

    Returns:
        the paths written.
    """
    import matplotlib.pyplot as plt

    paths = OutputPaths.for_mesh(obj_path)
    unknown = set(mesh_formats) - {"obj", "ply"}
    if unknown or not mesh_formats:
        raise ValueError(f"mesh_formats must be a non-empty subset of ('obj', 'ply'), got {tuple(mesh_formats)}")
    meshes = [getattr(paths, kind) for kind in ("obj", "ply") if kind in mesh_formats]
    config = reconstructor.config
    final = coefficient_arrays(result.coefficients)
    network = coefficient_arrays(result.network_coefficients)
    present = (targets.view_weight[0] > 0).numpy()
    vertices = result.vertices[0].detach()
    triangles = reconstructor.model.triangles
    colour_values = vertex_colours(reconstructor, result, colours, photos=photos)
    losses = result.fit.losses
    record = {
        "units": {"vertices": "mm, head frame (docs/conventions.md: x right, y up, z towards the camera)",
                  "angles": "radians (pitch, yaw, roll), R = Rz(roll) Ry(yaw) Rx(pitch)",
                  "translation": "mm", "landmarks_2d": f"pixels of the {config.image_size}-pixel aligned crop",
                  "coefficients": "units of the model's standard deviations"},
        "mesh": {"files": [path.name for path in meshes], "vertices": int(vertices.shape[0]),
                 "triangles": int(triangles.shape[0]), "colours": colours},
        "views": [{"view": view, "file": str(file) if file is not None else None, "present": bool(present[v]),
                   "angles_radians": final["angles"][v], "translation_mm": final["translation"][v]}
                  for v, (view, file) in enumerate(zip(VIEW_NAMES, files))],
        "coefficients": {name: final[name] for name in ("identity", "expression", "albedo", "lighting")},
        "checkpoint": {"run_dir": str(reconstructor.run_dir),
                       "parser_run_dir": str(reconstructor.parser_run_dir) if reconstructor.parser_run_dir else None,
                       "profile": config.profile, "image_size": config.image_size,
                       "single_view_mode": config.training.single_view_mode},
        "albedo_range": albedo_range_record(reconstructor.model, result.coefficients),
        "refinement": {"steps": result.refine_steps, "start": result.start, "plausibility": result.plausibility,
                       "loss_start": float(losses["total"].iloc[0]),
                       "loss_final": float(losses["total"].iloc[-1]),
                       "per_step": losses.round(6).to_dict("records")},
        "warnings": list(warnings),
        "provenance": provenance(config),
        **(extra or {}),
    }
    arrays = {**final, **{f"network_{name}": value for name, value in network.items()},
              "view_present": present,
              "landmarks_detected": targets.landmarks_2d[0].numpy().astype(np.float32),
              "landmarks_predicted": result.render.landmarks_2d[0].detach().numpy().astype(np.float32)}
    names = [f"{view}: {Path(file).name}" if file is not None else view if present[v] else f"{view}: (not given)"
             for v, (view, file) in enumerate(zip(VIEW_NAMES, files))]
    figure = overlay_figure(result, targets, names, title=title)
    try:
        with staged_outputs([*meshes, paths.json, paths.npz, paths.png]) as staged:
            for mesh_path in meshes:
                write_mesh(staged(mesh_path), vertices, triangles, colour_values)
            write_json(staged(paths.json), record)
            with open(staged(paths.npz), "wb") as handle:
                np.savez_compressed(handle, **arrays)
            figure.savefig(staged(paths.png), dpi=150)
    finally:
        plt.close(figure)
    return [*meshes, paths.json, paths.npz, paths.png]


def evaluate_against_mesh(model, vertices: torch.Tensor, gt_vertices, gt_triangles=None, gt_landmarks_7=None):
    """The paper's scan-to-mesh error (:func:`dfmvr_lib.evaluation.evaluate_reconstruction`: front-face crop,
    7-landmark similarity, ICP, point-to-plane) of one reconstruction against a ground-truth mesh.

    Args:
        model: the morphable model of ``vertices``.
        vertices: (V, 3) reconstructed head-frame vertices, mm.
        gt_vertices: (N, 3) ground-truth vertices, mm; gt_triangles: (M, 3) or None (point cloud).
        gt_landmarks_7: (7, 3) mm, the ground truth's alignment points (eye corners, nose tip, mouth corners; see
            docs/conventions.md); may be left out when the ground truth has the model's topology (N = V), whose
            ``alignment_7`` vertices are used, and whose part labels then name the per-region errors.
    Returns:
        :class:`~dfmvr_lib.evaluation.ReconstructionError` (``region_errors`` filled for model-topology meshes).
    """
    from ..evaluation import evaluate_reconstruction   # loads open3d (~1 s): only when a ground truth is given

    gt_vertices = np.asarray(gt_vertices, dtype=np.float64)
    same_topology = gt_vertices.shape[0] == model.num_vertices
    if gt_landmarks_7 is None:
        if not same_topology:
            raise ValueError(f"the ground truth has {gt_vertices.shape[0]} vertices, not the model's "
                             f"{model.num_vertices}: give its 7 alignment landmarks (7, 3) mm")
        gt_landmarks_7 = gt_vertices[model.alignment_7.cpu().numpy()]
    regions = [PART_NAMES[k] for k in model.part_labels.cpu().tolist()] if same_topology else None
    predicted = vertices.detach().cpu()
    return evaluate_reconstruction(predicted.numpy(), model.triangles.cpu().numpy(),
                                   predicted[model.alignment_7.cpu()].numpy(), gt_vertices, gt_triangles,
                                   np.asarray(gt_landmarks_7, dtype=np.float64), gt_region_labels=regions)


__all__ = ["COLOUR_MODES", "LANDMARK_FIT_MINIMUM_PX", "LANDMARK_FIT_RATIO", "PlausibilityWarning",
           "TripletReconstruction", "albedo_range_record", "evaluate_against_mesh", "landmark_fit_warnings",
           "overlay_figure", "plausibility_check", "reconstruct_triplet", "save_reconstruction", "vertex_colours"]
