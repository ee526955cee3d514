"""Triangle-mesh files (PLY) in millimetres, through open3d.

Vertices are stored in millimetres in whatever frame the caller uses (the synthetic benchmark writes ground-truth
meshes in the head frame, docs/conventions.md); nothing is rescaled on the way in or out. Files are binary PLY with
double-precision vertices (float32 input round-trips exactly) and 0-based triangle indices. Writing is atomic: the
mesh goes to a temporary sibling that is moved into place.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..provenance import atomic_path
from .readers_common import DatasetFileError, DatasetFileNotFound, file_problem


def _open3d():
    try:
        import open3d               # about 1 s to import: only when a PLY is read or written
    except ImportError as error:  # pragma: no cover - open3d is a declared dependency
        raise ImportError("reading and writing PLY meshes needs open3d (pip install open3d-cpu)") from error
    return open3d


def write_ply(path: str | os.PathLike, vertices, triangles) -> Path:
    """Write a triangle mesh as binary PLY.

    Args:
        path: destination, must end in ``.ply``.
        vertices: (V, 3) float, millimetres (numpy array or torch tensor).
        triangles: (F, 3) int, 0-based vertex ids.
    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise ValueError(f"mesh path must end in .ply, got {path}")
    vertices = np.asarray(_numpy(vertices), dtype=np.float64)
    triangles = np.asarray(_numpy(triangles), dtype=np.int32)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(f"triangles must be (F, 3), got {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= vertices.shape[0]):
        raise ValueError(f"triangle index out of range [0, {vertices.shape[0]})")
    o3d = _open3d()
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    with atomic_path(path) as temporary:
        ok = o3d.io.write_triangle_mesh(str(temporary), mesh, write_ascii=False, compressed=False,
                                        write_vertex_normals=False, write_vertex_colors=False,
                                        write_triangle_uvs=False, print_progress=False)
        if not ok:
            raise OSError(f"open3d could not write the mesh {path}")
    return path


_MAX_HEADER_BYTES = 1 << 16


def _ply_header_counts(path: Path) -> dict[str, int]:
    """``{element name: count}`` from a PLY header; :class:`DatasetFileError` when the file has no PLY header."""
    with open(path, "rb") as stream:
        head = stream.read(_MAX_HEADER_BYTES)
    if not head.startswith(b"ply"):
        raise DatasetFileError(path, "not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise DatasetFileError(path, "not a PLY file, or a truncated one (no 'end_header' line)")
    counts = {}
    for line in head[:end].decode("ascii", errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "element":
            try:
                counts[fields[1]] = int(fields[2])
            except ValueError:
                raise DatasetFileError(path, f"PLY header line {line.strip()!r} has no element count") from None
    return counts


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh written by :func:`write_ply` (or any PLY triangle mesh).

    Returns:
        ``(vertices (V, 3) float32 mm, triangles (F, 3) int64)``, in the file's vertex order (nothing merged).
    Raises:
        :class:`~.readers_common.DatasetFileNotFound` (also a ``FileNotFoundError``) naming the file when it is
        not a file (missing, a folder, a broken link or link loop); :class:`~.readers_common.DatasetFileError`
        (a ``ValueError``) when it is not a PLY file, holds fewer vertices or faces than its header announces
        (truncated), no vertex, NaN / infinite coordinates, or triangle indices out of range.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DatasetFileNotFound(path, f"mesh file {problem}")
    counts = _ply_header_counts(path)
    o3d = _open3d()
    mesh = o3d.io.read_triangle_mesh(str(path), enable_post_processing=False, print_progress=False)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int64)
    announced = (counts.get("vertex", 0), counts.get("face", 0))
    if announced != (vertices.shape[0], triangles.shape[0]):
        raise DatasetFileError(path, f"truncated or corrupt: the header announces {announced[0]} vertices and "
                                     f"{announced[1]} faces, {vertices.shape[0]} and {triangles.shape[0]} were read")
    if vertices.shape[0] == 0:
        raise DatasetFileError(path, "the mesh holds no vertices")
    if not np.all(np.isfinite(vertices)) or np.abs(vertices).max() > np.finfo(np.float32).max:
        raise DatasetFileError(path, "the mesh has NaN or infinite vertex coordinates")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= vertices.shape[0]):
        raise DatasetFileError(path, f"triangle vertex index out of range: {triangles.min()}..{triangles.max()} "
                                     f"for {vertices.shape[0]} vertices")
    return vertices.astype(np.float32), triangles


def _numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value
