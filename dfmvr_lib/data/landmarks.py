"""Face detection and 68 iBUG landmarks on photos: a detector protocol, FAN (face-alignment) and dlib.

Every detector returns :class:`FaceDetection`: 68 points in **our** pixel convention (docs/conventions.md: origin
at the top-left corner of the image, pixel centres at ``+0.5``), a detection box in the same convention and a score.
When an image holds several faces the **largest** box is kept (ties: the higher score), which is what a portrait
or multi-view capture wants.

Coordinate conventions of the wrapped libraries, and the shifts applied here:

- dlib: :class:`dlib.rectangle` corners and ``full_object_detection.part(i)`` are **integer pixel indices**
  (dlib places pixel centres on integer coordinates, origin at the centre of the top-left pixel). A pixel index
  ``j`` is the pixel whose centre is ``j + 0.5`` in our convention, so landmarks get ``+0.5``; a box
  ``left..right`` (inclusive indices) covers ``[left, right + 1)``.
- face-alignment (FAN): ``get_landmarks_from_image`` returns heat-map maxima mapped back to the image with its own
  ``transform`` after subtracting 0.5, i.e. continuous coordinates with pixel centres on integers (0-based pixel
  indices, sub-pixel): ``+0.5`` as for dlib. Its boxes (``x0, y0, x1, y1``) are treated the same way.
- 300-W ``.pts`` files (:func:`read_pts`): 1-based pixel indices (MATLAB style, centre of the top-left pixel at
  ``(1, 1)``), so ``-1`` gives 0-based indices and ``+0.5`` our convention: ``ours = pts - 0.5``.

:func:`default_landmark_detector` picks FAN when its weights are in the torch hub cache (it never downloads, so it
never hangs offline) and dlib otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

DLIB_TO_OURS = 0.5
"""Added to dlib (and FAN) coordinates: integer pixel indices -> pixel-centre-at-+0.5 coordinates."""

PTS_TO_OURS = -0.5
"""Added to 1-based 300-W ``.pts`` coordinates: ``-1`` (0-based index) ``+0.5`` (pixel centre)."""

FAN_WEIGHT_FILES = {
    "s3fd": "s3fd-619a316812.pth",
    "2DFAN-4": "2DFAN4-11f355bf06.pth.tar",
}
"""Files face-alignment 1.x loads from ``<torch hub dir>/checkpoints`` (downloaded there on first use)."""


class LandmarkDetectorUnavailable(RuntimeError):
    """A landmark detector cannot be built here (missing package or weights)."""


class NoFaceFound(RuntimeError):
    """The detector found no face in the image."""


@dataclass
class FaceDetection:
    """One face: ``landmarks`` (68, 2) float64 pixels (our convention), ``box`` (4,) ``x0, y0, x1, y1`` pixels
    (our convention, corners), ``score`` (detector-specific confidence), ``detector`` (name of what found it)."""

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    detector: str

    @property
    def box_area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@runtime_checkable
class LandmarkDetector(Protocol):
    """Anything with a ``name`` and ``detect(image)``.

    ``image``: (H, W, 3) uint8 RGB. Returns the chosen :class:`FaceDetection`; raises :class:`NoFaceFound` when
    there is none.
    """

    name: str

    def detect(self, image: np.ndarray) -> FaceDetection: ...


def choose_face(detections: list[FaceDetection]) -> FaceDetection:
    """The largest detection (ties broken by score); :class:`NoFaceFound` for an empty list."""
    if not detections:
        raise NoFaceFound("no face found")
    return max(detections, key=lambda d: (round(d.box_area, 6), d.score))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------------------------- dlib
def face_recognition_models_dir() -> Path | None:
    """Folder of the ``face_recognition_models`` package's ``models/`` (found without importing the package:
    its ``__init__`` needs ``pkg_resources``)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        models = Path(location) / "models"
        if models.is_dir():
            return models
    return None


class DlibLandmarkDetector:
    """Offline detector: dlib's HOG frontal-face detector, falling back to the CNN (MMOD) detector when HOG finds
    nothing (HOG misses many 45-degree side views), then dlib's 68-point shape predictor.

    Args:
        shape_predictor_path, cnn_detector_path: model files; default: those of ``face_recognition_models``.
        upsample: image upsampling passes of the detectors (1 finds faces down to ~40 px). Images whose short side
            exceeds ``upsample_below`` pixels are not upsampled (faces there are large; it would only cost time).
        use_cnn_fallback: run the MMOD CNN when HOG finds no face.
    """

    name = "dlib"

    def __init__(self, shape_predictor_path: str | os.PathLike | None = None,
                 cnn_detector_path: str | os.PathLike | None = None, upsample: int = 1,
                 upsample_below: int = 640, use_cnn_fallback: bool = True):
        try:
            import dlib             # optional dependency: needed only when this detector is built
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise LandmarkDetectorUnavailable(
                "dlib is not installed (pip install dlib-bin): the offline landmark detector needs it") from error
        models = face_recognition_models_dir()
        if shape_predictor_path is None:
            if models is None:
                raise LandmarkDetectorUnavailable(
                    "face_recognition_models is not installed: it provides shape_predictor_68_face_landmarks.dat "
                    "(pip install face_recognition_models), or pass shape_predictor_path")
            shape_predictor_path = models / "shape_predictor_68_face_landmarks.dat"
        if cnn_detector_path is None and models is not None:
            cnn_detector_path = models / "mmod_human_face_detector.dat"
        shape_predictor_path = Path(shape_predictor_path)
        if not shape_predictor_path.is_file():
            raise LandmarkDetectorUnavailable(f"dlib shape predictor file not found: {shape_predictor_path}")
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(shape_predictor_path))
        self._cnn_path = Path(cnn_detector_path) if cnn_detector_path is not None else None
        self._cnn = None
        self.use_cnn_fallback = use_cnn_fallback and self._cnn_path is not None and self._cnn_path.is_file()
        self.upsample = int(upsample)
        self.upsample_below = int(upsample_below)

    def _cnn_detector(self):
        if self._cnn is None:
            self._cnn = self._dlib.cnn_face_detection_model_v1(str(self._cnn_path))
        return self._cnn

    def _box(self, rect) -> np.ndarray:
        # inclusive integer pixel indices -> corners in our convention
        return np.array([rect.left(), rect.top(), rect.right() + 1.0, rect.bottom() + 1.0], dtype=np.float64)

    def detect_all(self, image: np.ndarray) -> list[FaceDetection]:
        """Every face HOG finds (or, if none, every face the CNN finds), with landmarks."""
        image = _check_image(image)
        upsample = self.upsample if min(image.shape[:2]) <= self.upsample_below else 0
        rects, scores, _ = self._hog.run(image, upsample, 0.0)
        found = [(rect, float(score), "dlib-hog") for rect, score in zip(rects, scores)]
        if not found and self.use_cnn_fallback:
            found = [(d.rect, float(d.confidence), "dlib-cnn") for d in self._cnn_detector()(image, upsample)]
        detections = []
        for rect, score, source in found:
            shape = self._predictor(image, rect)
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
            detections.append(FaceDetection(points + DLIB_TO_OURS, self._box(rect), score, source))
        return detections

    def detect(self, image: np.ndarray) -> FaceDetection:
        return choose_face(self.detect_all(image))


# ------------------------------------------------------------------------------------------------------------ FAN
def torch_hub_checkpoints_dir() -> Path:
    """``<torch.hub.get_dir()>/checkpoints``, where face-alignment looks for (and downloads) its weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_fan_weights(checkpoints_dir: str | os.PathLike | None = None) -> list[Path]:
    """The FAN weight files that are not in the torch hub cache (empty list: all present)."""
    folder = Path(checkpoints_dir) if checkpoints_dir is not None else torch_hub_checkpoints_dir()
    return [folder / name for name in FAN_WEIGHT_FILES.values() if not (folder / name).is_file()]


class FanLandmarkDetector:
    """face-alignment's FAN (2D, 68 points) with its S3FD face detector.

    The weights are never downloaded here: the constructor checks the torch hub cache first and raises
    :class:`LandmarkDetectorUnavailable` (naming the missing files) when they are absent, so offline runs fail at
    once instead of hanging on a download. Put the files in ``<torch hub dir>/checkpoints`` (or pass
    ``allow_download=True`` where there is network) to use it.
    """

    name = "fan"

    def __init__(self, device: str = "cpu", allow_download: bool = False,
                 checkpoints_dir: str | os.PathLike | None = None):
        try:
            import face_alignment   # optional, about 0.8 s to import: only when the FAN detector is built
        except ImportError as error:
            raise LandmarkDetectorUnavailable(
                "face_alignment is not installed (pip install face-alignment); the offline dlib detector is used "
                "instead") from error
        missing = missing_fan_weights(checkpoints_dir)
        if missing and not allow_download:
            raise LandmarkDetectorUnavailable(
                "FAN weights not found in the torch hub cache: " + ", ".join(str(p) for p in missing)
                + " (face-alignment downloads them from adrianbulat.com on first use, which needs network); "
                "the offline dlib detector is used instead")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                                        flip_input=False, compile=False)
        except Exception as error:  # download or load failure
            raise LandmarkDetectorUnavailable(
                f"face-alignment could not load its FAN weights ({type(error).__name__}: {error}); the offline dlib "
                "detector is used instead") from error

    def detect_all(self, image: np.ndarray) -> list[FaceDetection]:
        image = _check_image(image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected."
            landmarks, scores, boxes = self._fa.get_landmarks_from_image(image, return_bboxes=True,
                                                                         return_landmark_score=True)
        if landmarks is None:
            return []
        detections = []
        for points, point_scores, box in zip(landmarks, scores, boxes):
            box = np.asarray(box, dtype=np.float64)
            score = float(box[4]) if box.shape[0] > 4 else float(np.mean(point_scores))
            detections.append(FaceDetection(np.asarray(points, dtype=np.float64)[:, :2] + DLIB_TO_OURS,
                                            box[:4] + DLIB_TO_OURS, score, "fan"))
        return detections

    def detect(self, image: np.ndarray) -> FaceDetection:
        return choose_face(self.detect_all(image))


def default_landmark_detector(device: str = "cpu", prefer: str = "fan", verbose: bool = True) -> LandmarkDetector:
    """FAN when it can be loaded without a download, else the offline dlib detector.

    ``prefer="dlib"`` skips FAN. With ``verbose`` the reason FAN is not used is issued as a warning.
    """
    if prefer == "fan":
        try:
            return FanLandmarkDetector(device=device)
        except LandmarkDetectorUnavailable as error:
            if verbose:
                warnings.warn(str(error), stacklevel=2)
    elif prefer != "dlib":
        raise ValueError(f"prefer must be 'fan' or 'dlib', got {prefer!r}")
    return DlibLandmarkDetector()


# ------------------------------------------------------------------------------------------- ground truth and NME
def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read a 300-W / iBUG ``.pts`` file as (N, 2) float64 pixels in our convention (``pts - 0.5``, see the
    module docstring)."""
    lines = Path(path).read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "{")
        end = next(i for i, line in enumerate(lines) if line.strip() == "}")
    except StopIteration:
        raise ValueError(f"{path}: not a .pts file (no '{{' ... '}}' block)") from None
    points = np.array([[float(v) for v in line.split()] for line in lines[start + 1:end] if line.strip()])
    header = {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in lines[:start] if ":" in line}
    if "n_points" in header and int(header["n_points"]) != len(points):
        raise ValueError(f"{path}: header says {header['n_points']} points, file has {len(points)}")
    return points + PTS_TO_OURS


def normalised_mean_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """300-W NME: mean point-to-point distance divided by the inter-ocular distance (outer eye corners, iBUG 36
    and 45, 0-based)."""
    predicted, truth = np.asarray(predicted, float), np.asarray(truth, float)
    if predicted.shape != (68, 2) or truth.shape != (68, 2):
        raise ValueError(f"need (68, 2) point sets, got {predicted.shape} and {truth.shape}")
    inter_ocular = float(np.linalg.norm(truth[36] - truth[45]))
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / inter_ocular)


def landmark_provider(detector: LandmarkDetector):
    """Adapt a detector to the datasets' ``landmark_provider`` argument.

    Returns a callable ``image (3, H, W) float in [0, 1] -> (landmarks (68, 2) pixels, visibility (68,) bool)``;
    when no face is found the landmarks are NaN and the visibility False (the sample is kept, its landmark losses
    are masked out).
    """
    def provide(image: "torch.Tensor"):
        array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        try:
            found = detector.detect(array)
        except NoFaceFound:
            return torch.full((68, 2), float("nan")), torch.zeros(68, dtype=torch.bool)
        return torch.as_tensor(found.landmarks, dtype=torch.float32), torch.ones(68, dtype=torch.bool)

    return provide
