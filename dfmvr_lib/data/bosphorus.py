"""Bosphorus reader: ``.bnt`` point clouds, ``.lm3`` 3D landmarks, ``.png`` images; the multi-view test set.

File formats (facts relied on)
------------------------------
``.bnt`` (binary, little-endian; from the dataset authors' ``read_bntfile.m`` description, A. Savran 2008)::

    uint16  nrows            subsampled grid rows
    uint16  ncols            subsampled grid columns
    float64 zmin             "minimum depth value denoting the background"
    uint16  len              length of the image file name
    uint8   imfile[len]      image file name (characters)
    uint32  count            number of float64 values that follow (normally nrows * ncols * 5)
    float64 data[count]      column-major (N, 5), N = count / 5 (= nrows * ncols): columns x, y, z (mm) and u, v
                             (image coordinates normalised to [0, 1])

  Points whose ``z`` equals ``zmin`` are background (invalid) and are dropped. Assumed, not verifiable without a
  real file: little-endian byte order (files written on x86), millimetres, and a head frame with +z towards the
  scanner (zmin is the *minimum* depth, so the face has the larger z) and +x towards the image's right; ``u, v``
  are kept in ``extras`` without interpretation.

``.lm3`` (text): a few header lines (e.g. ``3D landmark coordinates`` / ``22 landmarks:``), then for each landmark a
  name line (``Outer left eye corner``, ``Nose tip``, ...) followed by a line ``x y z``. Blank lines are ignored;
  the number of landmarks varies (occluded ones are left out). Parsed as: any line of exactly three numbers is the
  coordinate of the closest preceding non-numeric line.

Multi-view naming (be flexible): ``<subject>_<tag>_<index>`` with ``<subject>`` like ``bs000`` and ``<tag>`` the
pose/expression code: ``N_N`` neutral frontal, ``YR_R10/R20/R30/R45/R90`` yaw to the subject's right, ``YR_L45/L90``
yaw to the subject's left. A head turned to the subject's right shows its nose towards the image's left, i.e.
view A (docs/conventions.md); DF-MVR's robustness test varies the *left* view over 10/20/30/45 deg, which only the
``YR_R*`` series offers, which agrees. So by default A = ``YR_R45``, B = ``N_N`` (lowest index), C = ``YR_L45``
(``left_view_yaw_degrees`` / ``right_view_yaw_degrees`` choose others; ``swap_sides=True`` flips the assignment).
Files are looked up directly under ``root`` or one folder below it (``<root>/bs000/bs000_N_N_0.bnt``).

Ground truth of a sample: the frontal neutral scan's valid points (mm) meshed by 2D Delaunay triangulation on
(x, y) with overlong edges dropped (:func:`delaunay_mesh`). The 101-point 3D landmark scheme does not exist for
Bosphorus (``landmarks_3d`` is None); ``extras["landmarks_lm3"]`` has the named landmarks and
``extras["alignment_7"]`` the 7 alignment points in the project order, sides taken from x (smaller x = image left),
not from the names.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from scipy.spatial import Delaunay

from .readers_base import MultiViewReader, check_flag
from .readers_common import (IMAGE_SUFFIXES, DatasetFileError, DatasetFileNotFound, LandmarkProvider, ParseProvider,
                             file_problem)
from .sample import MultiViewSample

FRONTAL_TAG = "N_N"
_NAME = re.compile(r"^(?P<subject>[A-Za-z]+\d+)_(?P<tag>.+)_(?P<index>\d+)$")
_HEADER = struct.Struct("<HHdH")


@dataclass
class BntData:
    """Contents of a ``.bnt`` file. ``data`` (N, 5) float64: x, y, z (mm), u, v."""

    nrows: int
    ncols: int
    zmin: float
    image_file: str
    data: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: points that are not background (z != zmin, all finite)."""
        return (self.data[:, 2] != self.zmin) & np.all(np.isfinite(self.data[:, :3]), axis=1)

    @property
    def points(self) -> np.ndarray:
        """(M, 3) float64 mm: the valid points."""
        return self.data[self.valid, :3]


def read_bnt(path: str | os.PathLike) -> BntData:
    """Read a Bosphorus ``.bnt`` file (format in the module doc).

    Raises :class:`~.readers_common.DatasetFileNotFound` when it is not a file, and
    :class:`~.readers_common.DatasetFileError` naming it for a truncated header or data, a data length that is not
    a multiple of 5, or a non-finite ``zmin``."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DatasetFileNotFound(path, f"Bosphorus .bnt file {problem}")
    raw = path.read_bytes()
    if len(raw) < _HEADER.size:
        raise DatasetFileError(path, f"truncated .bnt header ({len(raw)} bytes)")
    nrows, ncols, zmin, name_length = _HEADER.unpack_from(raw, 0)
    offset = _HEADER.size
    if len(raw) < offset + name_length + 4:
        raise DatasetFileError(path, f"truncated .bnt header (image name of {name_length} chars + data length); "
                                     "not a .bnt file?")
    if not np.isfinite(zmin):
        raise DatasetFileError(path, f"the background depth zmin is {zmin}, not a finite number")
    image_file = raw[offset:offset + name_length].decode("latin-1").rstrip("\x00")
    offset += name_length
    (count,) = struct.unpack_from("<I", raw, offset)
    offset += 4
    if count % 5:
        raise DatasetFileError(path, f"data length {count} is not a multiple of 5 (x, y, z, u, v columns)")
    needed = offset + 8 * count
    if len(raw) < needed:
        raise DatasetFileError(path, f"truncated .bnt data: header announces {count} float64 values "
                                     f"({8 * count} bytes), file has {len(raw) - offset}")
    values = np.frombuffer(raw, dtype="<f8", count=count, offset=offset)
    data = values.reshape(5, count // 5).T.astype(np.float64)   # column-major (N, 5)
    return BntData(nrows=int(nrows), ncols=int(ncols), zmin=float(zmin), image_file=image_file, data=data)


def read_lm3(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a Bosphorus ``.lm3`` file -> ``{name: (3,) float64 mm}`` in file order.

    Raises :class:`~.readers_common.DatasetFileNotFound` when it is not a file, and
    :class:`~.readers_common.DatasetFileError` naming it when it has no landmark, coordinates without a name, or
    a coordinate that is NaN or infinite."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DatasetFileNotFound(path, f"Bosphorus .lm3 file {problem}")
    landmarks: dict[str, np.ndarray] = {}
    name = None
    with open(path, "r", encoding="latin-1") as stream:
        for line in stream:
            text = line.strip()
            if not text:
                continue
            fields = text.split()
            try:
                values = [float(v) for v in fields]
            except ValueError:
                values = None
            if values is not None and len(values) == 3:
                if name is None:
                    raise DatasetFileError(path, f"coordinates {text!r} without a preceding landmark name")
                if not all(np.isfinite(values)):
                    raise DatasetFileError(path, f"landmark {name!r} has coordinates {text!r}, not all finite")
                landmarks[name] = np.asarray(values, dtype=np.float64)
                name = None
            elif values is None:
                name = text
            # other all-numeric lines (e.g. a bare count) are header material: ignored
    if not landmarks:
        raise DatasetFileError(path, "no 'name' / 'x y z' landmark blocks found (not a .lm3 file?)")
    return landmarks


def alignment_7_from_lm3(landmarks: dict[str, np.ndarray]) -> np.ndarray | None:
    """(7, 3) in the project order (left-eye outer, left-eye inner, right-eye inner, right-eye outer, nose tip,
    left / right mouth corner; left = image left = smaller x), or None when one is missing."""
    lower = {k.lower(): v for k, v in landmarks.items()}
    names = {"outer": ("outer left eye corner", "outer right eye corner"),
             "inner": ("inner left eye corner", "inner right eye corner"),
             "mouth": ("left mouth corner", "right mouth corner")}
    if "nose tip" not in lower or any(n not in lower for pair in names.values() for n in pair):
        return None
    pairs = {}
    for key, (a, b) in names.items():
        p, q = lower[a], lower[b]
        pairs[key] = (p, q) if p[0] <= q[0] else (q, p)
    return np.stack([pairs["outer"][0], pairs["inner"][0], pairs["inner"][1], pairs["outer"][1], lower["nose tip"],
                     pairs["mouth"][0], pairs["mouth"][1]])


def delaunay_mesh(points: np.ndarray, max_edge_mm: float | None = None, relative_max_edge: float = 4.0
                  ) -> np.ndarray:
    """Triangulate a depth-map point cloud: 2D Delaunay on (x, y), then drop triangles with an overlong 3D edge.

    The limit is ``max_edge_mm`` if given, else ``relative_max_edge`` x the median 3D edge length of the
    triangulation (about the grid spacing for a scan). Returns (F, 3) int64, counter-clockwise seen from +z.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    if points.shape[0] < 3:
        return np.zeros((0, 3), dtype=np.int64)
    try:
        triangles = Delaunay(points[:, :2]).simplices.astype(np.int64)
    except Exception as error:  # scipy.spatial.QhullError for degenerate (collinear) input
        raise ValueError(f"cannot triangulate {points.shape[0]} points: {error}") from error
    corners = points[triangles]                                    # (F, 3 corners, 3)
    edges = np.linalg.norm(corners - np.roll(corners, -1, axis=1), axis=2)
    longest = edges.max(axis=1)
    limit = max_edge_mm if max_edge_mm is not None else relative_max_edge * float(np.median(edges))
    triangles = triangles[longest <= limit]
    # orient counter-clockwise in (x, y) (outward normal +z for a depth map facing +z)
    a, b, c = (points[triangles[:, i], :2] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = cross < 0
    triangles[flip] = triangles[flip][:, [0, 2, 1]]
    return triangles


def parse_bosphorus_name(stem: str) -> tuple[str, str, int] | None:
    """``bs000_YR_R45_0`` -> ``("bs000", "YR_R45", 0)``; None when the name does not follow the scheme."""
    match = _NAME.match(stem)
    if not match:
        return None
    return match["subject"], match["tag"], int(match["index"])


class BosphorusDataset(MultiViewReader):
    """One :class:`MultiViewSample` per subject: A = ``YR_R{left_view_yaw_degrees}``, B = ``N_N``,
    C = ``YR_L{right_view_yaw_degrees}``; GT mesh = the Delaunay-meshed frontal scan (mm).

    A subject needs a frontal ``.bnt``; a missing side image gives a black view with ``view_present`` False
    (``require_all_views=True`` skips such subjects instead). Options shared with the other readers (``image_size``,
    providers, ``parse_from_landmarks``, ``subjects``) are checked by :class:`~.readers_base.MultiViewReader`.
    """

    dataset_name = "Bosphorus"

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = 224, left_view_yaw_degrees: int = 45,
                 right_view_yaw_degrees: int = 45, swap_sides: bool = False, require_all_views: bool = False,
                 landmark_provider: LandmarkProvider | None = None, parse_provider: ParseProvider | None = None,
                 parse_from_landmarks: bool = False, load_mesh: bool = True, max_edge_mm: float | None = None,
                 subjects: Sequence[str] | None = None):
        name = self.dataset_name
        swap_sides = check_flag(swap_sides, "swap_sides", name)
        require_all_views = check_flag(require_all_views, "require_all_views", name)
        self.load_mesh = check_flag(load_mesh, "load_mesh", name)
        self.max_edge_mm = max_edge_mm
        super().__init__(root, image_size=image_size, landmark_provider=landmark_provider,
                         parse_provider=parse_provider, parse_from_landmarks=parse_from_landmarks, subjects=subjects,
                         left_view_yaw_degrees=left_view_yaw_degrees, right_view_yaw_degrees=right_view_yaw_degrees,
                         swap_sides=swap_sides, require_all_views=require_all_views, load_mesh=self.load_mesh,
                         max_edge_mm=max_edge_mm)
        self._require_folder()
        files = _scan_files(self.root)
        left_tag, right_tag = f"YR_R{int(left_view_yaw_degrees)}", f"YR_L{int(right_view_yaw_degrees)}"
        if swap_sides:
            left_tag, right_tag = f"YR_L{int(left_view_yaw_degrees)}", f"YR_R{int(right_view_yaw_degrees)}"
        self.view_tags = (left_tag, FRONTAL_TAG, right_tag)
        for subject in sorted({key[0] for key in files}):
            entry = self._entry(files, subject) if self._wanted(subject) else None
            if entry is not None and not (require_all_views and any(v is None for v in entry["views"])):
                self.entries.append(entry)
        if not self.entries and self.subjects is None:
            found = sorted({p.name for k, kinds in files.items() for p in kinds.values()})
            expected = ("<subject>_N_N_0.bnt (+ .png, .lm3) and side views <subject>_YR_R45_0.png / "
                        "<subject>_YR_L45_0.png, directly under the folder or in <subject>/ subfolders")
            raise self._layout_error(expected, found or None)

    def _entry(self, files: dict[tuple[str, str, int], dict[str, Path]], subject: str) -> dict | None:
        """The entry of one subject (its view images in :attr:`view_tags` order, frontal ``.bnt`` and ``.lm3``), or
        None without a frontal scan."""
        frontal = sorted((k for k in files if k[0] == subject and k[1] == FRONTAL_TAG and "bnt" in files[k]),
                         key=lambda k: k[2])
        if not frontal:
            return None
        views = []
        for tag in self.view_tags:
            keys = sorted((k for k in files if k[0] == subject and k[1] == tag and "image" in files[k]),
                          key=lambda k: k[2])
            if tag == FRONTAL_TAG:
                keys = [frontal[0]] if "image" in files[frontal[0]] else []
            views.append(files[keys[0]]["image"] if keys else None)
        return {"subject": subject, "views": tuple(views), "bnt": files[frontal[0]]["bnt"],
                "lm3": files[frontal[0]].get("lm3")}

    def _mesh(self, bnt_path: Path, extras: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The GT mesh of a frontal scan: (V, 3) float32 mm valid points and (F, 3) int64 Delaunay triangles; puts
        the points' texture coordinates in ``extras["uv"]``."""
        bnt = read_bnt(bnt_path)
        valid = bnt.valid
        points = bnt.data[valid, :3]
        if points.shape[0] < 3:
            raise DatasetFileError(bnt_path, "fewer than 3 valid points (z != zmin): nothing to mesh")
        extras["uv"] = bnt.data[valid, 3:5].astype(np.float32)
        return (torch.from_numpy(points.astype(np.float32)),
                torch.from_numpy(delaunay_mesh(points, max_edge_mm=self.max_edge_mm)))

    def __getitem__(self, index: int) -> MultiViewSample:
        entry = self.entries[index]
        images = self._load_views(entry["views"])
        extras: dict = {"view_tags": self.view_tags, "view_paths": self._view_paths(entry["views"]),
                        "bnt_path": str(entry["bnt"])}
        mesh_vertices = mesh_triangles = None
        if self.load_mesh:
            mesh_vertices, mesh_triangles = self._mesh(entry["bnt"], extras)
        if entry["lm3"] is not None:
            landmarks = read_lm3(entry["lm3"])
            extras["landmarks_lm3"] = landmarks
            alignment = alignment_7_from_lm3(landmarks)
            if alignment is not None:
                extras["alignment_7"] = alignment.astype(np.float32)
        return self._build_sample(images, subject_id=entry["subject"], sample_id=entry["subject"],
                                  source=f"Bosphorus subject {entry['subject']}", mesh_vertices=mesh_vertices,
                                  mesh_triangles=mesh_triangles, extras=extras)


def _scan_files(root: Path) -> dict[tuple[str, str, int], dict[str, Path]]:
    """``{(subject, tag, index): {"bnt" | "lm3" | "image": path}}`` of the Bosphorus-named files directly under
    ``root`` or one folder below it (the first file of each kind, in sorted path order)."""
    files: dict[tuple[str, str, int], dict[str, Path]] = {}
    for pattern in ("*", "*/*"):
        for path in sorted(root.glob(pattern)):
            suffix = path.suffix.lower()
            if not path.is_file() or (suffix not in (".bnt", ".lm3") and suffix not in IMAGE_SUFFIXES):
                continue
            parsed = parse_bosphorus_name(path.stem)
            if parsed is None:
                continue
            kind = "image" if suffix in IMAGE_SUFFIXES else suffix[1:]
            files.setdefault(parsed, {}).setdefault(kind, path)
    return files


__all__ = ["BntData", "BosphorusDataset", "alignment_7_from_lm3", "delaunay_mesh", "parse_bosphorus_name",
           "read_bnt", "read_lm3"]
