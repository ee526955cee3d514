"""Crop alignment of real photos to the renderer's framing (Deep3D's POS alignment, calibrated to our camera).

Deep3D (and DF-MVR after it) crops a photo by fitting an affine ("POS": pose from orthography and scaling) camera
that maps the morphable model's mean 3D landmarks onto the detected 2D landmarks,

    [u, v] = P [X, Y, Z]^T + t,          P (2, 3), t (2,) = the image of the head-frame origin,

taking the scale ``s = (|P_0| + |P_1|) / 2`` (pixels per mm) and then scaling the image by ``target_scale / s``
and translating it so that ``t`` lands on ``target_centre``. No rotation is applied: roll stays in the photo and
is recovered by the network's pose, exactly as in Deep3D.

Deep3D's ``rescale_factor = 102`` is ``f / d`` of its camera (f = 1015 px, d = 10 dm, BFM in decimetres), i.e.
about 1.02 px per mm at 224 px. Here the target is **calibrated** instead of hard-coded: the mean face's 68
landmarks are projected with the project's camera (docs/conventions.md: d = 1000 mm, f = 1015 px at 224, frontal
pose), POS is fitted to that projection, and its ``s`` and ``t`` become ``target_scale`` and ``target_centre``.
A render of the mean face re-aligned by :func:`align_face` therefore comes back at exactly the render's scale
and position, and a real face is framed as the network saw the synthetic ones.

Coordinates are pixels in our convention (origin top-left corner, pixel centres at +0.5); 3D points are head
frame millimetres (x right, y up, z to the camera).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..camera import PerspectiveCamera

REFERENCE_SIZE = 224
"""Image size at which the template's target scale and centre are expressed (they scale with the crop size)."""


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Deep3D's 5 points from 68 iBUG points (2D or 3D): left-eye centre, right-eye centre, nose tip (30),
    left and right mouth corners (48, 54)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape[0] != 68:
        raise ValueError(f"need 68 landmarks, got {landmarks.shape}")
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[30], landmarks[48],
                     landmarks[54]])


def fit_pos(points_2d: np.ndarray, points_3d: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares affine camera ``p = P X + t`` from N >= 4 correspondences.

    Returns ``(scale, translation (2,), P (2, 3))`` with ``scale = (|P_0| + |P_1|) / 2`` (pixels per 3D unit)
    and ``translation`` = the image of the 3D origin.
    """
    points_2d = np.asarray(points_2d, dtype=np.float64)
    points_3d = np.asarray(points_3d, dtype=np.float64)
    if points_2d.ndim != 2 or points_2d.shape[1] != 2 or points_3d.shape != (points_2d.shape[0], 3):
        raise ValueError(f"need (N, 2) and (N, 3) points, got {points_2d.shape} and {points_3d.shape}")
    if points_2d.shape[0] < 4:
        raise ValueError("POS needs at least 4 points")
    if not (np.all(np.isfinite(points_2d)) and np.all(np.isfinite(points_3d))):
        raise ValueError("landmarks contain NaN or infinite values")
    design = np.concatenate([points_3d, np.ones((points_3d.shape[0], 1))], axis=1)    # (N, 4)
    solution, *_ = np.linalg.lstsq(design, points_2d, rcond=None)                       # (4, 2)
    projection = solution[:3].T
    translation = solution[3]
    scale = 0.5 * (np.linalg.norm(projection[0]) + np.linalg.norm(projection[1]))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("degenerate landmarks: POS scale is not positive")
    return float(scale), translation, projection


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares 2D similarity (rotation, uniform scale, translation) mapping ``source`` onto ``target``
    (Umeyama). Returns the (2, 3) matrix ``A`` with ``target ~ A[:, :2] @ source + A[:, 2]``."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise ValueError(f"need two (N, 2) point sets, got {source.shape} and {target.shape}")
    mu_s, mu_t = source.mean(0), target.mean(0)
    src, tgt = source - mu_s, target - mu_t
    variance = (src ** 2).sum() / len(src)
    if variance <= 0:
        raise ValueError("degenerate source points")
    covariance = tgt.T @ src / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / variance
    linear = scale * rotation
    return np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(np.asarray(affine, dtype=np.float64)[:, :2])
    return np.concatenate([linear, (-linear @ affine[:, 2])[:, None]], axis=1)


@dataclass(frozen=True)
class AlignmentTemplate:
    """The 3D reference and the calibrated target of the crop.

    Attributes:
        landmarks_3d: (68, 3) mean-face landmarks, head frame, mm.
        target_scale: POS scale (px per mm) of the mean face in the reference render, at ``REFERENCE_SIZE``.
        target_centre: (2,) where the head-frame origin lands in the reference render, at ``REFERENCE_SIZE``.
        landmarks_2d: (68, 2) the mean face's projected landmarks in the reference render (``REFERENCE_SIZE``).
        points: ``"68"`` or ``"5"``: which landmarks POS is fitted to.
    """

    landmarks_3d: np.ndarray
    target_scale: float
    target_centre: np.ndarray
    landmarks_2d: np.ndarray
    points: str = "68"

    def select(self, landmarks: np.ndarray) -> np.ndarray:
        return five_points(landmarks) if self.points == "5" else np.asarray(landmarks, dtype=np.float64)

    def landmarks_at(self, image_size: int) -> np.ndarray:
        """The reference landmarks in a crop of ``image_size`` pixels."""
        return self.landmarks_2d * (image_size / REFERENCE_SIZE)

    def hash(self) -> str:
        digest = hashlib.sha1()
        for array in (self.landmarks_3d, self.target_centre, np.array([self.target_scale])):
            digest.update(np.round(np.asarray(array, dtype=np.float64), 6).tobytes())
        digest.update(self.points.encode())
        return digest.hexdigest()[:12]


def alignment_template(model, camera=None, points: str = "68") -> AlignmentTemplate:
    """Calibrated template of a :class:`dfmvr_lib.face_model.base.MorphableModel` (its mean shape at
    ``landmark_68``) for a camera (default: ``PerspectiveCamera.for_image_size(224)``, frontal pose)."""
    if points not in ("68", "5"):
        raise ValueError(f"points must be '68' or '5', got {points!r}")
    camera = camera or PerspectiveCamera.for_image_size(REFERENCE_SIZE)
    with torch.no_grad():
        landmarks_3d = model.mean_shape[model.landmark_68].detach().cpu().double()
        projected = camera.project(landmarks_3d.float().unsqueeze(0))[0].double().numpy()
    projected = projected * (REFERENCE_SIZE / camera.image_size)
    landmarks_3d = landmarks_3d.numpy()
    select = five_points if points == "5" else (lambda x: x)
    scale, translation, _ = fit_pos(select(projected), select(landmarks_3d))
    return AlignmentTemplate(landmarks_3d=landmarks_3d, target_scale=scale, target_centre=translation,
                             landmarks_2d=projected, points=points)


@dataclass
class AlignedFace:
    """A crop: ``image`` (S, S, 3) uint8, ``landmarks`` (68, 2) crop pixels, ``affine`` (2, 3) source pixels ->
    crop pixels, ``scale`` / ``translation`` the POS fit on the source photo."""

    image: np.ndarray
    landmarks: np.ndarray
    affine: np.ndarray
    scale: float
    translation: np.ndarray


def crop_affine(scale: float, translation: np.ndarray, template: AlignmentTemplate, output_size: int) -> np.ndarray:
    """(2, 3) affine taking source pixels to crop pixels: ``k (p - t) + c`` with ``k = target_scale / scale``
    and ``c = target_centre``, both expressed at ``output_size``."""
    ratio = output_size / REFERENCE_SIZE
    k = template.target_scale / scale * ratio
    centre = np.asarray(template.target_centre, dtype=np.float64) * ratio
    offset = centre - k * np.asarray(translation, dtype=np.float64)
    return np.array([[k, 0.0, offset[0]], [0.0, k, offset[1]]])


def warp_affine(image: np.ndarray, affine: np.ndarray, output_size: int | tuple[int, int]) -> np.ndarray:
    """Resample ``image`` (H, W, C) uint8 or float into the frame of ``affine`` (source -> output pixels).

    Output pixel centres are mapped back to the source (pixel-centre convention, bilinear, black outside).
    When the map shrinks the image by more than 1.5x the source is first box-filtered by an integer factor, so
    large photos do not alias.
    """
    out_h, out_w = (output_size, output_size) if np.isscalar(output_size) else output_size
    image = np.asarray(image)
    affine = np.asarray(affine, dtype=np.float64)
    zoom = np.sqrt(abs(np.linalg.det(affine[:, :2])))
    factor = int(np.floor(1.0 / zoom)) if zoom < 1.0 / 1.5 else 1
    dtype = image.dtype
    if factor > 1 and dtype == np.uint8:
        height, width = image.shape[:2]
        cropped = image[: height - height % factor, : width - width % factor]
        image = np.asarray(Image.fromarray(cropped).reduce(factor))
        affine = affine @ np.diag([factor, factor, 1.0])     # reduced pixel q = p / factor
    inverse = invert_affine(affine)
    cols, rows = np.meshgrid(np.arange(out_w) + 0.5, np.arange(out_h) + 0.5)
    source = apply_affine(inverse, np.stack([cols.ravel(), rows.ravel()], 1))
    height, width = image.shape[:2]
    grid = np.stack([2.0 * source[:, 0] / width - 1.0, 2.0 * source[:, 1] / height - 1.0], 1)
    grid = torch.from_numpy(grid.reshape(1, out_h, out_w, 2)).float()
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    output = torch.nn.functional.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=False)[0].permute(1, 2, 0).numpy()
    if dtype == np.uint8:
        return np.clip(np.rint(output), 0, 255).astype(np.uint8)
    return output.astype(dtype)


def align_face(image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate,
               output_size: int = REFERENCE_SIZE) -> AlignedFace:
    """Crop ``image`` (H, W, 3) to the template's framing from its 68 ``landmarks`` (pixels, our convention)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {landmarks.shape}")
    scale, translation, _ = fit_pos(template.select(landmarks), template.select(template.landmarks_3d))
    affine = crop_affine(scale, translation, template, output_size)
    crop = warp_affine(image, affine, output_size)
    return AlignedFace(image=crop, landmarks=apply_affine(affine, landmarks), affine=affine, scale=scale,
                       translation=translation)
