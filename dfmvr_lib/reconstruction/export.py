"""Writing a reconstruction: the mesh (OBJ and PLY with vertex colours, millimetres, head frame), the
coefficients (JSON and NPZ) and the overlay figure, all or nothing.

:class:`StagedOutputs` writes every file into a hidden temporary folder beside the destination and moves them into
place only when all were written, so an error (or Ctrl-C) part-way leaves no output file behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scene import FaceCoefficients

OUTPUT_KINDS = ("obj", "ply", "json", "npz", "png")


@dataclass(frozen=True)
class OutputPaths:
    """The files of one reconstruction, named after the OBJ path ``face.obj``: ``face.obj``, ``face.ply``,
    ``face_coefficients.json``, ``face_coefficients.npz``, ``face_overlay.png``."""

    obj: Path
    ply: Path
    json: Path
    npz: Path
    png: Path

    @classmethod
    def for_mesh(cls, obj_path: str | os.PathLike) -> "OutputPaths":
        obj_path = Path(obj_path)
        if obj_path.suffix.lower() != ".obj":
            raise ValueError(f"the output must be an .obj path (the other files are named after it), got {obj_path}")
        stem = obj_path.with_suffix("")
        return cls(obj=obj_path, ply=stem.with_suffix(".ply"),
                   json=stem.parent / f"{stem.name}_coefficients.json",
                   npz=stem.parent / f"{stem.name}_coefficients.npz", png=stem.parent / f"{stem.name}_overlay.png")

    def all(self) -> list[Path]:
        return [getattr(self, kind) for kind in OUTPUT_KINDS]


class StagedOutputs:
    """Context manager: ``staged(path)`` gives the temporary path to write ``path``'s content to; on a clean exit
    every staged file is moved onto its destination (``os.replace``, same file system), on an exception none is and
    the temporary folder is removed.

    >>> with StagedOutputs(Path("out")) as staged:           # doctest: +SKIP
    ...     write_mesh(staged(Path("out/face.obj")), vertices, triangles, colours)
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._folder: Path | None = None
        self._moves: list[tuple[Path, Path]] = []

    def __enter__(self) -> "StagedOutputs":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._folder = Path(tempfile.mkdtemp(prefix=".dfmvr-staging-", dir=self.directory))
        return self

    def __call__(self, destination: str | os.PathLike) -> Path:
        if self._folder is None:
            raise RuntimeError("StagedOutputs: use it as a context manager")
        destination = Path(destination)
        temporary = self._folder / f"{len(self._moves)}{destination.suffix}"
        self._moves.append((temporary, destination))
        return temporary

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                missing = [str(d) for t, d in self._moves if not t.is_file()]
                if missing:
                    raise OSError(f"outputs not written: {missing}")
                umask = os.umask(0)
                os.umask(umask)
                for temporary, destination in self._moves:
                    os.chmod(temporary, 0o666 & ~umask)       # ordinary files, not mkdtemp's private ones
                    os.replace(temporary, destination)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def write_mesh(path: str | os.PathLike, vertices, triangles, colours=None) -> Path:
    """Write a triangle mesh with optional per-vertex colours through open3d; the format follows the suffix
    (``.obj`` as text ``v x y z r g b`` lines, ``.ply`` binary).

    Args:
        vertices: (V, 3) float, millimetres (written as they are).
        triangles: (F, 3) int, 0-based.
        colours: (V, 3) float RGB in [0, 1] (clipped), or None.
    """
    import open3d as o3d

    path = Path(path)
    vertices = np.asarray(_numpy(vertices), dtype=np.float64)
    triangles = np.asarray(_numpy(triangles), dtype=np.int32)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    if colours is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.clip(np.asarray(_numpy(colours), np.float64), 0.0, 1.0))
    ok = o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=path.suffix.lower() == ".obj",
                                    write_vertex_normals=False, write_vertex_colors=colours is not None,
                                    write_triangle_uvs=False, print_progress=False)
    if not ok:
        raise OSError(f"open3d could not write the mesh {path}")
    return path


def coefficient_arrays(coefficients: FaceCoefficients, sample: int = 0) -> dict[str, np.ndarray]:
    """One face's coefficients as float32 arrays: identity (K_id,), expression (K_exp,), albedo (K_alb,), lighting
    (27,), angles (S, 3) radians (pitch, yaw, roll), translation (S, 3) mm."""
    return {name: _numpy(getattr(coefficients, name)[sample]).astype(np.float32)
            for name in ("identity", "expression", "albedo", "lighting", "angles", "translation")}


def write_json(path: str | os.PathLike, record: dict) -> Path:
    """``record`` as indented JSON (numpy values converted)."""
    def convert(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, (np.floating, np.integer, np.bool_)):
            return value.item()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    Path(path).write_text(json.dumps(record, indent=1, default=convert))
    return Path(path)


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


__all__ = ["OUTPUT_KINDS", "OutputPaths", "StagedOutputs", "coefficient_arrays", "write_json", "write_mesh"]
