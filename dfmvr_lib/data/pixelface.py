"""Pixel-Face reader: the DF-MVR authors' processed layout and the raw release (opt-in by path).

Layouts (``root`` is the folder given to :class:`PixelFaceDataset`):

processed (DF-MVR authors' code)::

    <root>[/<split>]/<subject>/<expr>/Images/{0,1,2}/t.jpg          0 left (A), 1 front (B), 2 right (C)
    <root>[/<split>]/<subject>/<expr>/fusion/nicp_106_pts.txt       106 lines "x y z", decimetres
    <root>[/<split>]/<subject>/<expr>/fusion/gt.mat                 optional ground-truth mesh (raw-release format)

  (``<expr>/Images/fusion/...`` is accepted too: one public script reads the txt from there.)

raw release::

    <root>/.../<sample>/mesh/{0,1,2}/t.bmp    1280x720 24-bit BMP stored rotated by 90 deg
    <root>/.../<sample>/mesh/fusion/gt.mat    MATLAB v5, structs new_kpt_gt_obj (scan) and neck_obj09 (BFM09-topology
                                              registration), fields v (N,3) dm, f (M,3) 1-based, kpt_ind (106) 1-based,
                                              tex (N,3) uint8

  The upright face is obtained by rotating the stored BMP 90 deg clockwise and flipping it horizontally
  (fixture README); the two together are a transpose of the pixel grid. ``<sample>`` may be ``root`` itself or a
  folder up to three levels below it. Subject id: the first folder below ``root`` when the sample folder is at least
  two levels below it (``<root>/<subject>/<expr>/mesh``), else the sample folder's name.

Units: every length is converted from decimetres to millimetres on the way in (x 100, :data:`DECIMETRE_TO_MM`).
Coordinates are otherwise those of the files (the scan's own frame); no re-centring or re-orientation.

3D landmarks (101, the spec's scheme): Pixel-Face's 106-point list minus the 5 contour points
:data:`DROPPED_CONTOUR_106`. The DF-MVR code deletes 5 rows given by an index file (``ignore_index_5.npy``) that is
not available here; the 5 were inferred from its ``pre_index_101.npy`` (101 BFM vertex ids, order kept by the
deletion) and the BFM 68-point keypoints (Deep3D ``facemodel_info.mat``):

- the 106 scheme is the JD-106 layout: contour 0-32, brows 33-42, nose bridge 43-46, nostrils 47-51, eyes 52-63,
  lower brows 64-71, eye extras 72-77, nose extras 78-83, mouth 84-103, pupils 104-105. In ``pre_index_101`` the
  68-keypoint brows, nose, eyes and mouth sit exactly 5 places earlier than in that layout (e.g. the mouth
  48-67 at 79-98 = 84-103 minus 5), so all 5 dropped points are contour points (101 positions 0-27 = 28 contour
  points);
- assuming iBUG jaw point j is 106-contour point 2j (the 106 contour samples the same outline twice as densely),
  the 17 jaw keypoints sit at 101 positions 0, 2, 3, 5, 7, 9, 11, 13, 14, 15, 17, 19, 21, 22, 23, 25, 27; the
  in-between contour points missing there are 106 indices 3, 15, 17, 25 and 27.

The 7 alignment points (docs/conventions.md order) are then the 101 positions :data:`ALIGNMENT_7_IN_101`
(the positions of the BFM alignment vertices in ``pre_index_101``).

Images carry no landmarks: pass ``landmark_provider`` / ``parse_provider`` (see
:mod:`dfmvr_lib.data.readers_common`); without them landmarks are NaN with visibility False and parse maps are 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io
import torch

from .readers_base import MultiViewReader, check_choice, check_flag
from .readers_common import (DatasetFieldMissing, DatasetFileError, DatasetFileNotFound, DatasetLayoutError,
                             LandmarkProvider, ParseProvider, file_problem)
from .sample import MultiViewSample

DECIMETRE_TO_MM = 100.0
"""Pixel-Face geometry (gt.mat ``v``, nicp_106_pts.txt) is in decimetres."""

NUM_LANDMARKS_106 = 106
DROPPED_CONTOUR_106 = (3, 15, 17, 25, 27)
"""0-based indices of the 5 contour points of the 106-point list that the 101-point scheme drops (see module doc)."""

KEPT_106 = tuple(i for i in range(NUM_LANDMARKS_106) if i not in DROPPED_CONTOUR_106)
"""The 101 kept indices of the 106-point list, in order."""

ALIGNMENT_7_IN_101 = (47, 50, 53, 56, 41, 79, 85)
"""101-scheme positions of left-eye outer, left-eye inner, right-eye inner, right-eye outer, nose tip, left and
right mouth corner (positions of DF-MVR's alignment vertices in ``pre_index_101``)."""

VIEW_FOLDERS = ("0", "1", "2")
"""Camera folders in view order A (left), B (front), C (right)."""

GT_STRUCTS = ("new_kpt_gt_obj", "neck_obj09")
GT_FIELDS = ("v", "f", "kpt_ind")


@dataclass
class PixelFaceMesh:
    """One struct of a Pixel-Face ``gt.mat``: vertices (V, 3) float32 mm, triangles (F, 3) int64 0-based,
    keypoint_ids (106,) int64 0-based vertex ids, colors (V, 3) uint8 or None."""

    vertices: np.ndarray
    triangles: np.ndarray
    keypoint_ids: np.ndarray
    colors: np.ndarray | None

    @property
    def keypoints(self) -> np.ndarray:
        """(106, 3) mm: the keypoint vertices."""
        return self.vertices[self.keypoint_ids]


def landmarks_106_to_101(points_106: np.ndarray) -> np.ndarray:
    """(106, 3) -> (101, 3): drop :data:`DROPPED_CONTOUR_106`."""
    points_106 = np.asarray(points_106)
    if points_106.shape[0] != NUM_LANDMARKS_106:
        raise ValueError(f"expected 106 landmarks, got {points_106.shape[0]}")
    return points_106[list(KEPT_106)]


def read_nicp_landmarks(path: str | os.PathLike) -> np.ndarray:
    """Read ``nicp_106_pts.txt`` (106 lines ``x y z`` in decimetres) -> (106, 3) float64 millimetres.

    Raises :class:`~.readers_common.DatasetFileNotFound` when it is not a file, and
    :class:`~.readers_common.DatasetFileError` naming it for lines that are not three numbers, a count other than
    106, or NaN / infinite coordinates."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DatasetFileNotFound(path, f"Pixel-Face 3D landmark file {problem}")
    rows = []
    with open(path, "r", encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            text = line.replace(",", " ").split()
            if not text:
                continue
            try:
                values = [float(v) for v in text]
            except ValueError:
                raise DatasetFileError(path, f"line {number} is not 'x y z' numbers: {line.strip()[:60]!r}") from None
            if len(values) != 3:
                raise DatasetFileError(path, f"line {number} has {len(values)} numbers, expected 3 (x y z)")
            rows.append(values)
    if len(rows) != NUM_LANDMARKS_106:
        raise DatasetFileError(path, f"expected {NUM_LANDMARKS_106} landmark lines, found {len(rows)}")
    points = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(points)):
        raise DatasetFileError(path, "contains NaN or infinite coordinates")
    return points * DECIMETRE_TO_MM


def _numbers(path: Path, struct: str, name: str, value, integers: bool = False) -> np.ndarray:
    """A struct field as a float64 array, refused with :class:`DatasetFileError` naming the file when it is not
    numeric, holds NaN / infinite values, or (``integers``) values that are not whole numbers."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetFileError(path, f"{struct}.{name} is not a numeric array (got {type(value).__name__})") from None
    if not np.all(np.isfinite(array)):
        raise DatasetFileError(path, f"{struct}.{name} contains NaN or infinite values")
    if integers and not np.all(array == np.round(array)):
        raise DatasetFileError(path, f"{struct}.{name} must hold whole numbers (1-based indices)")
    return array


def read_gt_mat(path: str | os.PathLike, struct: str = "new_kpt_gt_obj") -> PixelFaceMesh:
    """Read one struct (``new_kpt_gt_obj``: the scan; ``neck_obj09``: the BFM09-topology registration) of a
    Pixel-Face ``gt.mat`` -> :class:`PixelFaceMesh` in millimetres with 0-based indices.

    Raises (all :class:`~.readers_common.DatasetError`, naming the file): ``DatasetFileNotFound`` when it is not a
    file; ``DatasetFieldMissing`` (also a ``KeyError``) without the struct or its fields ``v``, ``f``, ``kpt_ind``;
    ``DatasetFileError`` when it is not a MATLAB v5 file, or the fields have the wrong shapes, NaN / infinite
    values, non-integer or out-of-range indices. A ``tex`` field that is not (N, 3) values in 0..255 is ignored
    (``colors`` None)."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DatasetFileNotFound(path, f"Pixel-Face gt.mat {problem}")
    try:
        contents = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError, OSError ... for bad files
        raise DatasetFileError(path, f"not a readable MATLAB v5 file ({type(error).__name__}: {error})") from None
    keys = sorted(k for k in contents if not k.startswith("__"))
    if struct not in contents:
        raise DatasetFieldMissing(path, f"no struct {struct!r}; the file has {keys} (expected {list(GT_STRUCTS)})")
    record = contents[struct]
    names = getattr(record, "_fieldnames", None)
    if names is None:
        raise DatasetFileError(path, f"{struct!r} is not a MATLAB struct (got {type(record).__name__})")
    missing = [name for name in GT_FIELDS if name not in names]
    if missing:
        raise DatasetFieldMissing(path, f"struct {struct!r} lacks fields {missing}; it has {list(names)}")
    vertices = _numbers(path, struct, "v", record.v)
    triangles = _numbers(path, struct, "f", record.f, integers=True)
    keypoints = _numbers(path, struct, "kpt_ind", record.kpt_ind, integers=True).reshape(-1)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] == 0:
        raise DatasetFileError(path, f"{struct}.v must be (N, 3), got {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise DatasetFileError(path, f"{struct}.f must be (M, 3), got {triangles.shape}")
    triangles = triangles.astype(np.int64) - 1
    keypoints = keypoints.astype(np.int64) - 1
    n = vertices.shape[0]
    if triangles.size and (triangles.min() < 0 or triangles.max() >= n):
        raise DatasetFileError(path, f"{struct}.f indices must be 1..{n} (1-based), got "
                                     f"{triangles.min() + 1}..{triangles.max() + 1}")
    if keypoints.shape[0] != NUM_LANDMARKS_106:
        raise DatasetFileError(path, f"{struct}.kpt_ind must be {NUM_LANDMARKS_106} ids, got {keypoints.shape[0]}")
    if keypoints.min() < 0 or keypoints.max() >= n:
        raise DatasetFileError(path, f"{struct}.kpt_ind must be ids in 1..{n}, got "
                                     f"{keypoints.min() + 1}..{keypoints.max() + 1}")
    colors = None
    if "tex" in names:
        tex = np.asarray(record.tex)
        if (tex.shape == vertices.shape and np.issubdtype(tex.dtype, np.number) and np.all(np.isfinite(tex))
                and tex.min(initial=0) >= 0 and tex.max(initial=0) <= 255):
            colors = tex.astype(np.uint8)
    return PixelFaceMesh(vertices=(vertices * DECIMETRE_TO_MM).astype(np.float32), triangles=triangles,
                         keypoint_ids=keypoints, colors=colors)


def upright_raw_image(stored: torch.Tensor) -> torch.Tensor:
    """A raw-release view as stored (``(C, 720, 1280)``, rotated) -> upright ``(C, 1280, 720)``:
    rotate 90 deg clockwise, then flip horizontally (together: a transpose of rows and columns)."""
    rotated = torch.rot90(stored, k=-1, dims=(-2, -1))   # k=-1: clockwise
    return torch.flip(rotated, dims=(-1,)).contiguous()


@dataclass
class _Entry:
    subject_id: str
    sample_id: str
    layout: str
    views: tuple[Path | None, Path | None, Path | None]
    nicp: Path | None
    gt_mat: Path | None


def _first_existing(*candidates: Path) -> Path | None:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _scan_processed(root: Path) -> list[_Entry]:
    entries = []
    seen = set()
    for pattern in ("*/*/Images", "*/*/*/Images"):
        for images in sorted(root.glob(pattern)):
            if not images.is_dir():
                continue
            expr_dir = images.parent
            views = tuple(_first_existing(images / v / "t.jpg", images / v / "t.png") for v in VIEW_FOLDERS)
            if all(v is None for v in views) or expr_dir.resolve() in seen:   # resolve: a linked copy is the same
                continue
            seen.add(expr_dir.resolve())
            subject, expr = expr_dir.parent.name, expr_dir.name
            entries.append(_Entry(
                subject_id=subject, sample_id=f"{subject}/{expr}", layout="processed", views=views,
                nicp=_first_existing(expr_dir / "fusion" / "nicp_106_pts.txt",
                                     images / "fusion" / "nicp_106_pts.txt"),
                gt_mat=_first_existing(expr_dir / "fusion" / "gt.mat", images / "fusion" / "gt.mat")))
    return entries


def _scan_raw(root: Path) -> list[_Entry]:
    entries = []
    seen = set()
    for pattern in ("mesh", "*/mesh", "*/*/mesh", "*/*/*/mesh"):
        for mesh in sorted(root.glob(pattern)):
            if not mesh.is_dir() or mesh.resolve() in seen:          # a linked copy of a sample is the same sample
                continue
            seen.add(mesh.resolve())
            views = tuple(_first_existing(mesh / v / "t.bmp") for v in VIEW_FOLDERS)
            gt = _first_existing(mesh / "fusion" / "gt.mat")
            if all(v is None for v in views) and gt is None:
                continue
            sample_dir = mesh.parent
            relative = sample_dir.relative_to(root).parts
            sample_id = "/".join(relative) if relative else sample_dir.name
            subject = relative[0] if len(relative) >= 2 else sample_dir.name
            entries.append(_Entry(subject_id=subject, sample_id=sample_id, layout="raw", views=views,
                                  nicp=None, gt_mat=gt))
    return entries


EXPECTED_LAYOUTS = {
    "processed": "<subject>/<expr>/Images/{0,1,2}/t.jpg (+ <expr>/fusion/nicp_106_pts.txt)",
    "raw": "<sample>/mesh/{0,1,2}/t.bmp and/or <sample>/mesh/fusion/gt.mat",
    "auto": "<subject>/<expr>/Images/{0,1,2}/t.jpg (processed) or <sample>/mesh/{0,1,2}/t.bmp, "
            "<sample>/mesh/fusion/gt.mat (raw)",
}
"""What the layout error of :class:`PixelFaceDataset` says it expected, per ``layout`` option."""


class PixelFaceDataset(MultiViewReader):
    """Pixel-Face samples as :class:`MultiViewSample` (views A/B/C = camera folders 0/1/2).

    Args:
        root: dataset folder (see the module doc for the layouts).
        layout: ``"auto"`` (processed if any processed sample is found, else raw), ``"processed"`` or ``"raw"``.
        image_size: square output size (views padded to a square, then resized); ``None`` keeps native sizes.
        landmark_provider, parse_provider, parse_from_landmarks: see :mod:`dfmvr_lib.data.readers_common`.
        load_mesh: read the ground-truth mesh from gt.mat when present.
        mesh_struct: which gt.mat struct is the GT mesh (``new_kpt_gt_obj``, the scan, by default).
        landmark_struct: raw layout only: the struct whose 106 keypoints give ``landmarks_3d`` (``neck_obj09``, the
            NICP registration, by default: the processed layout's ``nicp_106_pts.txt`` is presumably these points;
            not verified).
        subjects: keep only these subject ids.

    ``extras`` holds ``layout``, the file paths, ``landmarks_106`` (mm, when known) and ``alignment_7`` (7, 3) mm.
    The options shared with the other readers are checked by :class:`~.readers_base.MultiViewReader`.
    """

    dataset_name = "Pixel-Face"

    def __init__(self, root: str | os.PathLike, *, layout: str = "auto", image_size: int | None = 224,
                 landmark_provider: LandmarkProvider | None = None, parse_provider: ParseProvider | None = None,
                 parse_from_landmarks: bool = False, load_mesh: bool = True, mesh_struct: str = "new_kpt_gt_obj",
                 landmark_struct: str = "neck_obj09", subjects: Sequence[str] | None = None):
        self.layout = check_choice(layout, "layout", ("auto", "processed", "raw"))
        self.load_mesh = check_flag(load_mesh, "load_mesh", self.dataset_name)
        self.mesh_struct = mesh_struct
        self.landmark_struct = landmark_struct
        super().__init__(root, image_size=image_size, landmark_provider=landmark_provider,
                         parse_provider=parse_provider, parse_from_landmarks=parse_from_landmarks, subjects=subjects,
                         layout=layout, load_mesh=self.load_mesh, mesh_struct=mesh_struct,
                         landmark_struct=landmark_struct)
        self._require_folder()
        entries: list[_Entry] = []
        if layout in ("auto", "processed"):
            entries = _scan_processed(self.root)
        if not entries and layout in ("auto", "raw"):
            entries = _scan_raw(self.root)
        if not entries:
            raise self._layout_error(EXPECTED_LAYOUTS[layout])
        self.entries = [entry for entry in entries if self._wanted(entry.subject_id)]
        if self.entries:
            self.layout = self.entries[0].layout

    @staticmethod
    def _entry_subject(entry: _Entry) -> str:
        return entry.subject_id

    def __getitem__(self, index: int) -> MultiViewSample:
        entry = self.entries[index]
        raw = entry.layout == "raw"
        images = self._load_views(entry.views)
        if raw:
            images = [upright_raw_image(image) if image is not None else None for image in images]
        if self.image_size is None and all(image is None for image in images):
            raise ValueError(f"Pixel-Face sample {entry.sample_id}: no view image and image_size=None")
        extras: dict = {"layout": entry.layout, "view_paths": self._view_paths(entry.views),
                        "gt_mat": str(entry.gt_mat) if entry.gt_mat else None}
        landmarks_106 = None
        if entry.nicp is not None:
            landmarks_106 = read_nicp_landmarks(entry.nicp)
            extras["nicp_path"] = str(entry.nicp)
        mesh_vertices = mesh_triangles = None
        if entry.gt_mat is not None and (self.load_mesh or (raw and landmarks_106 is None)):
            if self.load_mesh:
                mesh = read_gt_mat(entry.gt_mat, self.mesh_struct)
                mesh_vertices = torch.from_numpy(mesh.vertices)
                mesh_triangles = torch.from_numpy(mesh.triangles)
                extras["mesh_struct"] = self.mesh_struct
                extras["mesh_keypoint_ids"] = mesh.keypoint_ids
            if raw and landmarks_106 is None:
                landmarks_106 = read_gt_mat(entry.gt_mat, self.landmark_struct).keypoints.astype(np.float64)
                extras["landmark_struct"] = self.landmark_struct
        landmarks_3d = None
        if landmarks_106 is not None:
            extras["landmarks_106"] = landmarks_106.astype(np.float32)
            landmarks_101 = landmarks_106_to_101(landmarks_106).astype(np.float32)
            landmarks_3d = torch.from_numpy(landmarks_101)
            extras["alignment_7"] = landmarks_101[list(ALIGNMENT_7_IN_101)]
        return self._build_sample(images, subject_id=entry.subject_id, sample_id=entry.sample_id,
                                  source=f"Pixel-Face sample {entry.sample_id}", landmarks_3d=landmarks_3d,
                                  mesh_vertices=mesh_vertices, mesh_triangles=mesh_triangles, extras=extras)


__all__ = ["ALIGNMENT_7_IN_101", "DECIMETRE_TO_MM", "DROPPED_CONTOUR_106", "DatasetLayoutError", "KEPT_106",
           "PixelFaceDataset", "PixelFaceMesh", "landmarks_106_to_101", "read_gt_mat", "read_nicp_landmarks",
           "upright_raw_image"]
