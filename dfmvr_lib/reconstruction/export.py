"""Writing a reconstruction: the mesh (OBJ and PLY with vertex colours, millimetres, head frame), the
coefficients (JSON and NPZ) and the overlay figure, all or nothing.

:func:`staged_outputs` writes every file into a hidden temporary folder beside the destination and moves them into
place only when all were written, so an error (or Ctrl-C) part-way leaves no output file and no new folder behind.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

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


@contextmanager
def staged_outputs(destinations: Sequence[str | os.PathLike]) -> Iterator[Callable[[Path], Path]]:
    """Write a set of files all or nothing: ``staged(destination)`` gives the temporary path to write each of
    ``destinations`` (files of one folder) to; on a clean exit of the ``with`` block they are committed together,
    on an exception (or Ctrl-C) none is, and no folder is left behind.

    The temporary folder (``.dfmvr-staging-*``) is made beside the destination, on the same file system: when the
    destination folder does not exist yet, in its nearest existing parent, holding the missing folders, so that the
    commit is one rename of the new top folder; when it exists, in it, and the files are moved in one by one (each
    ``os.replace`` is atomic); should one of these moves fail, the files moved so far are taken out again and the
    files they replaced put back. The temporary folder is always removed.

    Raises:
        ValueError when the destinations are not in one folder; IsADirectoryError when one is a folder;
        NotADirectoryError when the path to them crosses a file; FileExistsError when the missing folder appeared
        while writing; OSError from the file system (nothing is left behind).

    >>> with staged_outputs([Path("out/face.obj"), Path("out/face.json")]) as staged:      # doctest: +SKIP
    ...     write_mesh(staged(Path("out/face.obj")), vertices, triangles, colours)
    ...     write_json(staged(Path("out/face.json")), record)
    """
    destinations = [Path(os.path.abspath(destination)) for destination in destinations]
    folders = {destination.parent for destination in destinations}
    if len(folders) != 1:
        raise ValueError(f"staged_outputs: the destinations must be in one folder, got {sorted(map(str, folders))}")
    folder = folders.pop()
    for destination in destinations:
        if destination.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way of an output file", str(destination))
    anchor = folder                                 # the nearest existing folder on the way to the destination
    while not anchor.exists() and not anchor.is_symlink() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder (or a link that leads nowhere)", str(anchor))
    staging = Path(tempfile.mkdtemp(prefix=".dfmvr-staging-", dir=anchor))
    inner = staging / folder.relative_to(anchor)
    written: dict[Path, Path] = {}

    def staged(destination: str | os.PathLike) -> Path:
        destination = Path(os.path.abspath(destination))
        if destination not in destinations:
            raise ValueError(f"staged_outputs: {destination} is not one of the destinations")
        written[destination] = inner / destination.name
        return written[destination]

    try:
        inner.mkdir(parents=True, exist_ok=True)
        yield staged
        missing = [str(d) for d in destinations if not (inner / d.name).is_file()]
        if missing:
            raise OSError(f"outputs not written: {missing}")
        if folder != anchor:                        # a new folder: one rename commits every file
            top = folder.relative_to(anchor).parts[0]
            if (anchor / top).exists() or (anchor / top).is_symlink():
                raise FileExistsError(errno.EEXIST, "appeared while the outputs were written", str(anchor / top))
            os.rename(staging / top, anchor / top)
        else:
            _move_in_or_restore(staging, [(inner / d.name, d) for d in destinations])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in_or_restore(staging: Path, moves: list[tuple[Path, Path]]) -> None:
    """Move each staged file onto its destination; on a failure, undo: remove the files moved in and put back the
    files they replaced (kept in ``staging`` meanwhile)."""
    replaced: list[tuple[Path, Path]] = []
    moved: list[Path] = []
    try:
        for index, (source, destination) in enumerate(moves):
            if destination.exists() or destination.is_symlink():
                kept = staging / f".replaced-{index}"
                os.replace(destination, kept)
                replaced.append((kept, destination))
            os.replace(source, destination)
            moved.append(destination)
    except BaseException:
        for destination in moved:
            destination.unlink(missing_ok=True)
        for kept, destination in replaced:
            os.replace(kept, destination)
        raise


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


__all__ = ["OUTPUT_KINDS", "OutputPaths", "coefficient_arrays", "staged_outputs", "write_json", "write_mesh"]
