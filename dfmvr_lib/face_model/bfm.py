"""BFM09 sources: Deep3D's ``BFM_model_front.mat`` loader and the Basel -> front-model converter.

The user brings the (non-redistributable) Basel Face Model 2009 and Guo et al.'s expression basis; the project
converts them with Deep3D's index files (MIT) into the ``BFM_model_front.mat`` layout and loads that.

Units (the facts this module relies on, and how they were checked)
------------------------------------------------------------------
- Basel ``01_MorphableModel.mat`` stores geometry in micrometres (a face is ~1.4e5 wide). Deep3D's converter
  divides shape and expression bases by 1e5 "to unify the scale to decimeter" (the same 1e5 is applied to Guo et al.'s
  expression basis, so it is in the same micrometre scale). Not checkable here (no Basel file in the fixtures); it
  agrees with the next two facts.
- ``BFM_model_front.mat`` (Deep3D) is therefore in decimetres: the mean face is ~1.5 units wide and Deep3D's camera
  sits at distance 10 (= 1000 mm). Checked on the fixtures: the 68 keypoints of the BFM front mean mesh
  ``Deep3D.obj`` (stated to be in millimetres; 149 mm wide), centred, equal 100 x Deep3D's
  ``similarity_Lm3D_all.mat`` (the mean face's 68 landmarks in Deep3D's units, centred) to 1e-5 mm.
  :func:`load_bfm_front` multiplies by :data:`DECIMETRE_TO_MM` = 100 and checks the face width.
- Deep3D's bases already carry the component standard deviations (``idBase = shapePC * shapeEV``,
  ``exBase = expPC * std_exp``, ``texBase = texPC * texEV``), so coefficients are ~N(0, 1). Kept as is.
- ``meantex`` / ``texBase`` are 0-255 (Basel's texMU range); the loader divides both by 255 (albedo in [0, 1]).

Index facts (checked on the fixtures)
-------------------------------------
- All index arrays in the .mat files are 1-based (MATLAB). ``tri`` of ``facemodel_info.mat`` is the 70,789-triangle
  topology of the 35,709-vertex front model, identical to the faces of ``Deep3D.obj``; it is counter-clockwise seen
  from outside (one-ring normals at the nose tip point +z).
- ``point_buf`` (V, 8) lists each vertex's triangles, 1-based, padded with F + 1.
- ``select_vertex_id.mat`` ``select_id`` equals ``trimIndex[idx]``: the Basel (53,490) vertex of every front vertex.
- The 101 3D-landmark ids (:data:`LANDMARK_101`, from the DF-MVR code's ``pre_index_101.npy``) and the 7 alignment
  ids (:data:`ALIGNMENT_7`) are 0-based ids into the 35,709-vertex front model. ``LANDMARK_101`` starts with the
  68-keypoint jaw ids minus one (0-based ids of the same vertices); it lists vertex 4280 twice (positions 69 and 99),
  as the original file does.
- The alignment ids 2215, 5828, 10455, 14065, 8192, 5522, 10795 have x = -43.4, -19.5, +18.5, +43.2, 0.0, -25.5,
  +24.5 mm on ``Deep3D.obj``: already in the project order (left-eye outer, left-eye inner, right-eye inner,
  right-eye outer, nose tip, left mouth corner, right mouth corner; left = image left = negative x).
  They coincide with the 68 keypoints 36, 39, 42, 30, 48, 54; for 45 (right-eye outer) the keypoint is the
  neighbouring vertex 14066 and DF-MVR uses 14065.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import scipy.io

from ..provenance import atomic_path
from .base import MorphableModel, MorphableModelData
from .parts import derive_part_labels

BFM_FRONT_NUM_VERTICES = 35709
BFM_FRONT_NUM_TRIANGLES = 70789
BASEL_NUM_VERTICES = 53490
EXPRESSION_NUM_VERTICES = 53215  # Guo et al.'s trimmed BFM (BFM_exp_idx.mat trimIndex)

DECIMETRE_TO_MM = 100.0
"""Deep3D's ``BFM_model_front.mat`` is in decimetres."""
BASEL_TO_DECIMETRE = 1e-5
"""Basel's micrometre-scale geometry -> decimetres (Deep3D's ``/ 1e5``)."""

FACE_WIDTH_RANGE_MM = (60.0, 400.0)
"""Plausible x-extent of a loaded mean face; outside it the file's units are not Deep3D's decimetres."""

LANDMARK_101 = np.array([
    16644, 16758, 16888, 16467, 16357, 16264, 16275, 32244, 32634, 32939, 33169, 33375, 33526, 33654, 33838, 34022,
    34175, 34312, 34559, 34766, 35075, 35472, 27816, 27608, 27338, 27208, 27329, 27440, 28111, 28787, 29177, 29382,
    29549, 30288, 30454, 30662, 31056, 31716, 8161, 8177, 8187, 8192, 6515, 7243, 8204, 9163, 9883, 2215, 3500, 5181,
    5828, 4932, 3382, 10455, 11225, 12771, 14065, 12911, 11365, 2838, 4515, 5547, 6318, 9931, 10690, 11852, 13399,
    4404, 4157, 4280, 11997, 12138, 12132, 7202, 9241, 6248, 9987, 5357, 10887, 5522, 6025, 7495, 8215, 8935, 10395,
    10795, 9555, 8836, 8236, 7636, 6915, 5909, 7384, 8223, 9064, 10537, 8829, 8229, 7629, 4280, 11745,
], dtype=np.int64)
"""0-based vertex ids of the 101 3D landmarks in the 35,709-vertex BFM front model (DF-MVR ``pre_index_101.npy``)."""

ALIGNMENT_7 = np.array([2215, 5828, 10455, 14065, 8192, 5522, 10795], dtype=np.int64)
"""0-based ids: left-eye outer, left-eye inner, right-eye inner, right-eye outer, nose tip, left/right mouth corner."""

NUM_IDENTITY, NUM_EXPRESSION, NUM_ALBEDO = 80, 64, 80
"""Deep3D's component counts (the first 80 / 64 / 80 of Basel's 199 / Guo's 79 / Basel's 199)."""


# ----------------------------------------------------------------------------------------------------------------
# Reading helpers: every problem names the file and the key.

def _load_mat(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as error:  # MATLAB v7.3 (HDF5)
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save it as '-v7' ({error})") from error
    except Exception as error:  # noqa: BLE001 - scipy raises many kinds for corrupt files
        raise ValueError(f"{path}: cannot be read as a MATLAB .mat file ({type(error).__name__}: {error})") from error


def _key(mat: dict, path, key: str, expected: str) -> np.ndarray:
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: key {key!r} is missing (expected {expected}); keys present: {present}")
    value = mat[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"{path}: key {key!r} must be a real numeric array ({expected}), got dtype {kind}")
    return value


def _float(mat: dict, path, key: str, shape_text: str, check) -> np.ndarray:
    """A real array whose shape passes ``check(shape)``; finite values."""
    value = _key(mat, path, key, shape_text)
    if value.dtype.kind == "b":
        raise ValueError(f"{path}: key {key!r} must be a float array {shape_text}, got dtype bool")
    if not check(value.shape):
        raise ValueError(f"{path}: key {key!r} must have shape {shape_text}, got {value.shape}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{path}: key {key!r} contains NaN or infinite values")
    return value


def _vector(mat: dict, path, key: str, size: int | None, shape_text: str) -> np.ndarray:
    """A row or column vector (or 1-D array), flattened; ``size`` None accepts any length."""
    value = _key(mat, path, key, shape_text)
    ok = value.ndim <= 2 and (value.ndim < 2 or 1 in value.shape) and (size is None or value.size == size)
    if not ok:
        raise ValueError(f"{path}: key {key!r} must have shape {shape_text}, got {value.shape}")
    return value.reshape(-1)


def _indices(value: np.ndarray, path, key: str, low: int, high: int) -> np.ndarray:
    """1-based (MATLAB) indices in [low, high] -> 0-based int64."""
    if value.dtype.kind == "b":
        raise ValueError(f"{path}: key {key!r} must hold integer indices, got dtype bool")
    if value.dtype.kind == "f":
        if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
            raise ValueError(f"{path}: key {key!r} must hold whole-number indices, found fractional or NaN values")
    as_int = value.astype(np.int64)
    if as_int.size and (as_int.min() < low or as_int.max() > high):
        raise ValueError(f"{path}: key {key!r} has indices in [{as_int.min()}, {as_int.max()}], "
                         f"expected 1-based values in [{low}, {high}]")
    return as_int - 1


def _index_matrix(mat: dict, path, key: str, columns: int | None, rows: int | None, high: int,
                  shape_text: str, low: int = 1) -> np.ndarray:
    value = _key(mat, path, key, shape_text)
    if value.ndim != 2 or (columns is not None and value.shape[1] != columns) or \
            (rows is not None and value.shape[0] != rows):
        raise ValueError(f"{path}: key {key!r} must have shape {shape_text}, got {value.shape}")
    return _indices(value, path, key, low, high)


def _atomic_savemat(output_path: Path, arrays: dict) -> None:
    with atomic_path(output_path) as temporary:
        with open(temporary, "wb") as stream:
            scipy.io.savemat(stream, arrays, format="5", do_compression=False, oned_as="column")


# ----------------------------------------------------------------------------------------------------------------
# Evaluation region (spec section 4)

def front_face_region(vertices: np.ndarray, alignment_7: np.ndarray) -> np.ndarray:
    """Vertices inside the front-face sphere of the evaluation protocol (spec section 4).

    ``nose`` = nose tip, ``inner`` = midpoint of the inner eye corners; centre = nose + 0.3 (inner - nose);
    radius = 1.4 (|outer-eye left - outer-eye right| + |inner - nose|) / 2, where the "nose distance" of the spec is
    read as the distance from the nose tip to the inner-eye midpoint.

    Args:
        vertices: (V, 3) mm.  alignment_7: (7,) vertex ids (order of :data:`ALIGNMENT_7`).
    Returns:
        (V,) bool.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    a = np.asarray(alignment_7, dtype=np.int64)
    nose = vertices[a[4]]
    inner = 0.5 * (vertices[a[1]] + vertices[a[2]])
    outer_distance = np.linalg.norm(vertices[a[0]] - vertices[a[3]])
    nose_distance = np.linalg.norm(inner - nose)
    centre = nose + 0.3 * (inner - nose)
    radius = 1.4 * (outer_distance + nose_distance) / 2.0
    return np.linalg.norm(vertices - centre, axis=1) <= radius


# ----------------------------------------------------------------------------------------------------------------
# Loader

def read_bfm_front(path: str | os.PathLike, *, landmark_101: np.ndarray | None = None,
                   alignment_7: np.ndarray | None = None, name: str | None = None,
                   check_size: bool = True) -> MorphableModelData:
    """Read a Deep3D ``BFM_model_front.mat`` into :class:`MorphableModelData` (mm, centred, albedo in [0, 1]).

    Keys used (V vertices, F triangles; shapes as Deep3D writes them, row or column vectors both accepted):
        ``meanshape`` (1, 3V) decimetres, x y z interleaved per vertex; ``meantex`` (1, 3V) 0-255;
        ``idBase`` (3V, K_id), ``exBase`` (3V, K_exp) decimetres per unit coefficient (std included);
        ``texBase`` (3V, K_tex) 0-255 per unit coefficient; ``tri`` (F, 3) 1-based; ``keypoints`` (1, 68) 1-based
        iBUG order. Validated when present (not needed here): ``point_buf`` (V, k) 1-based triangle ids padded with
        F + 1, ``skinmask`` (1, V), ``frontmask2_idx`` (n, 1) 1-based, ``tri_mask2`` (n, 3) 1-based.

    Produces: mean shape x 100 (mm) re-centred on its centroid; bases x 100; ``meantex`` / 255 and
    ``texBase`` / 255; ``part_labels`` from :func:`~dfmvr_lib.face_model.parts.derive_part_labels` on the mean
    shape; ``evaluation_region`` = :func:`front_face_region` of the mean shape (the sphere of the evaluation
    protocol, so losses and evaluation see the same front face; Deep3D's ``skinmask`` is a texture-regulariser
    region and ``frontmask2`` a photometric-loss region, both narrower, and neither is used).

    ``landmark_101`` / ``alignment_7`` default to :data:`LANDMARK_101` / :data:`ALIGNMENT_7` for the 35,709-vertex
    front model; any other vertex count needs them passed explicitly (0-based ids).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a key is missing or has the wrong shape, dtype or values (the message names file and key), or
            the face width is implausible in mm (``check_size``), i.e. the file is not in Deep3D's decimetres.
    """
    path = Path(path)
    mat = _load_mat(path, "BFM front model (BFM_model_front.mat)")
    meanshape, meantex, bases, triangles, keypoints = _front_arrays(mat, path)
    V = meanshape.size // 3
    _check_optional_front_keys(mat, path, V, triangles.shape[0])
    mean_shape = _mean_shape_mm(meanshape, path, check_size)

    def basis(key: str, scale: float) -> np.ndarray:
        b = bases[key]
        return (b.astype(np.float32) * np.float32(scale)).reshape(V, 3, b.shape[1])

    identity_basis = basis("idBase", DECIMETRE_TO_MM)
    expression_basis = basis("exBase", DECIMETRE_TO_MM)
    albedo_basis = basis("texBase", 1.0 / 255.0)
    mean_albedo = meantex.astype(np.float64).reshape(V, 3) / 255.0
    triangles = _outward_winding(triangles, mean_shape, path)
    landmark_101, alignment_7 = _landmark_ids(path, V, landmark_101, alignment_7)

    data = MorphableModelData(
        mean_shape=mean_shape.astype(np.float32),
        identity_basis=identity_basis,
        expression_basis=expression_basis,
        mean_albedo=mean_albedo.astype(np.float32),
        albedo_basis=albedo_basis,
        triangles=triangles,
        landmark_68=keypoints,
        landmark_101=landmark_101,
        alignment_7=alignment_7,
        part_labels=derive_part_labels(mean_shape, keypoints, triangles),
        evaluation_region=front_face_region(mean_shape, alignment_7),
        name=name or f"BFM09 front ({path.name})",
    )
    data.validate(str(path))
    return data


def _front_arrays(mat: dict, path: Path) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, np.ndarray]:
    """The required keys of a front model, validated: ``meanshape`` (3V,), ``meantex`` (3V,), the bases
    ``{"idBase", "exBase", "texBase"}`` (3V, K) each, ``tri`` (F, 3) and ``keypoints`` (68,) 0-based."""
    meanshape = _vector(mat, path, "meanshape", None, "(1, 3V)")
    if meanshape.size == 0 or meanshape.size % 3:
        raise ValueError(f"{path}: key 'meanshape' must have 3V values (x, y, z per vertex), got {meanshape.size}")
    _float(mat, path, "meanshape", "(1, 3V)", lambda s: True)  # dtype / finiteness
    V = meanshape.size // 3
    three_v = f"(3V={3 * V}, K)"
    meantex = _vector(mat, path, "meantex", 3 * V, f"(1, 3V={3 * V})")
    _float(mat, path, "meantex", f"(1, 3V={3 * V})", lambda s: True)
    bases = {}
    for key in ("idBase", "exBase", "texBase"):
        bases[key] = _float(mat, path, key, three_v, lambda s: len(s) == 2 and s[0] == 3 * V and s[1] >= 1)

    tri_raw = _key(mat, path, "tri", f"(F, 3) 1-based vertex ids in [1, {V}]")
    if tri_raw.ndim != 2 or tri_raw.shape[1] != 3 or tri_raw.shape[0] == 0:
        raise ValueError(f"{path}: key 'tri' must have shape (F, 3), got {tri_raw.shape}")
    triangles = _indices(tri_raw, path, "tri", 1, V)
    keypoints = _indices(_vector(mat, path, "keypoints", 68, "(1, 68)"), path, "keypoints", 1, V)
    return meanshape, meantex, bases, triangles, keypoints


def _check_optional_front_keys(mat: dict, path: Path, V: int, F: int) -> None:
    """Validate the optional keys (not used) so a damaged file is reported: ``point_buf``, ``skinmask``,
    ``frontmask2_idx``, ``tri_mask2``."""
    if "point_buf" in mat:
        _index_matrix(mat, path, "point_buf", None, V, F + 1, f"(V={V}, k) 1-based triangle ids in [1, {F + 1}]")
    if "skinmask" in mat:
        _vector(mat, path, "skinmask", V, f"(1, V={V})")
    if "frontmask2_idx" in mat:
        _indices(_vector(mat, path, "frontmask2_idx", None, "(n, 1)"), path, "frontmask2_idx", 1, V)
    if "tri_mask2" in mat:
        _index_matrix(mat, path, "tri_mask2", 3, None, V, f"(n, 3) 1-based vertex ids in [1, {V}]")


def _mean_shape_mm(meanshape: np.ndarray, path: Path, check_size: bool) -> np.ndarray:
    """``meanshape`` (3V,) decimetres -> (V, 3) float64 mm centred on its centroid; with ``check_size`` a face
    width outside :data:`FACE_WIDTH_RANGE_MM` is a ``ValueError`` (not Deep3D's decimetres)."""
    mean_shape = meanshape.astype(np.float64).reshape(-1, 3) * DECIMETRE_TO_MM
    width = float(np.ptp(mean_shape[:, 0]))
    if check_size and not FACE_WIDTH_RANGE_MM[0] <= width <= FACE_WIDTH_RANGE_MM[1]:
        raise ValueError(
            f"{path}: key 'meanshape' gives a face {width:.4g} mm wide after the decimetre -> mm conversion "
            f"(expected {FACE_WIDTH_RANGE_MM[0]:g}-{FACE_WIDTH_RANGE_MM[1]:g} mm): the file is not in Deep3D's "
            f"decimetres (Basel's raw micrometre-scale values? convert with convert_basel_bfm09)")
    mean_shape -= mean_shape.mean(axis=0, keepdims=True)
    return mean_shape


def _outward_winding(triangles: np.ndarray, mean_shape: np.ndarray, path: Path) -> np.ndarray:
    """``triangles`` (F, 3) counter-clockwise seen from outside (normals out of the face, +z on average): flipped,
    with a warning, when the file's are clockwise."""
    v0, v1, v2 = (mean_shape[triangles[:, k]] for k in range(3))
    if np.cross(v1 - v0, v2 - v0)[:, 2].sum() < 0:
        warnings.warn(f"{path}: 'tri' is clockwise seen from outside; flipping the winding", stacklevel=3)
        triangles = triangles[:, [0, 2, 1]]
    return triangles


def _landmark_ids(path: Path, V: int, landmark_101: np.ndarray | None,
                  alignment_7: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The 101 3D-landmark and 7 alignment vertex ids (0-based int64): the given ones, else the built-in
    :data:`LANDMARK_101` / :data:`ALIGNMENT_7` (only for the 35,709-vertex front model); checked against V."""
    if landmark_101 is None or alignment_7 is None:
        if V != BFM_FRONT_NUM_VERTICES:
            raise ValueError(
                f"{path}: the model has {V} vertices, not the {BFM_FRONT_NUM_VERTICES} of the BFM front model, so "
                f"the built-in 101 3D-landmark / 7 alignment vertex ids do not apply: pass landmark_101= and "
                f"alignment_7= (0-based vertex ids)")
    landmark_101 = LANDMARK_101.copy() if landmark_101 is None else np.asarray(landmark_101, dtype=np.int64)
    alignment_7 = ALIGNMENT_7.copy() if alignment_7 is None else np.asarray(alignment_7, dtype=np.int64)
    for what, ids, count in (("landmark_101", landmark_101, 101), ("alignment_7", alignment_7, 7)):
        if ids.shape != (count,) or ids.min() < 0 or ids.max() >= V:
            raise ValueError(f"{path}: {what} must be ({count},) vertex ids in [0, {V}), got shape {ids.shape}")
    return landmark_101, alignment_7


def load_bfm_front(path: str | os.PathLike, **kwargs) -> MorphableModel:
    """Load a Deep3D ``BFM_model_front.mat`` as a :class:`MorphableModel` (see :func:`read_bfm_front`)."""
    return MorphableModel(read_bfm_front(path, **kwargs))


# ----------------------------------------------------------------------------------------------------------------
# Converter

def read_expression_pca(expression_bin: str | os.PathLike, num_vertices: int = EXPRESSION_NUM_VERTICES
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Read Guo et al.'s ``Exp_Pca.bin``: ``(mean (3N,), basis (3N, K))`` float32, micrometre scale.

    Layout (little-endian, as Deep3D reads it with Python's ``array`` on x86): int32 K (79 in the release), then
    the mean expression, 3N float32 (x y z per vertex), then the basis, K x 3N float32 stored component by
    component (each component's 3N values contiguous), so it is read as (K, 3N) and transposed.
    N (53,215) is not stored in the file; it is the length of ``BFM_exp_idx.mat`` ``trimIndex``.
    The mean expression is returned but Deep3D does not use it (neither does the converter).
    A file shorter than 4 + 4 * 3N (K + 1) bytes is an error; trailing bytes are ignored with a warning (the exact
    size of the released file could not be checked here).
    """
    path = Path(expression_bin)
    if not path.is_file():
        raise FileNotFoundError(f"expression basis (Exp_Pca.bin) not found: {path}")
    size = path.stat().st_size
    if size < 4:
        raise ValueError(f"{path}: too short for an Exp_Pca.bin ({size} bytes; expected an int32 component count)")
    with open(path, "rb") as stream:
        count = int(np.frombuffer(stream.read(4), dtype="<i4")[0])
        if not 1 <= count <= 10000:
            raise ValueError(f"{path}: component count {count} in the int32 header is implausible "
                             f"(expected 79 for Guo et al.'s basis); not an Exp_Pca.bin?")
        n = 3 * int(num_vertices)
        needed = 4 + 4 * n * (count + 1)
        if size < needed:
            raise ValueError(f"{path}: {size} bytes, expected {needed} = 4 + 4 x 3N x (K + 1) for K={count} "
                             f"components and N={num_vertices} vertices (from BFM_exp_idx.mat trimIndex)")
        if size > needed:
            warnings.warn(f"{path}: {size - needed} trailing bytes after the expression basis are ignored",
                          stacklevel=2)
        mean = np.frombuffer(stream.read(4 * n), dtype="<f4").astype(np.float32)
        basis = np.frombuffer(stream.read(4 * n * count), dtype="<f4").reshape(count, n).T.astype(np.float32)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(basis))):
        raise ValueError(f"{path}: the expression mean or basis contains NaN or infinite values")
    return mean, basis


def read_expression_std(path: str | os.PathLike, count: int) -> np.ndarray:
    """Read ``std_exp.txt`` (whitespace-separated standard deviations, one per expression component)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expression standard deviations (std_exp.txt) not found: {path}")
    try:
        values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except ValueError as error:
        raise ValueError(f"{path}: cannot be read as whitespace-separated numbers ({error})") from error
    if values.size != count:
        raise ValueError(f"{path}: {values.size} standard deviations, expected {count} (one per component of "
                         f"Exp_Pca.bin)")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{path}: standard deviations must be finite and non-negative")
    return values


def convert_basel_bfm09(morphable_model_mat: str | os.PathLike, expression_bin: str | os.PathLike,
                        deep3d_meta_dir: str | os.PathLike, output_path: str | os.PathLike, *,
                        std_exp_path: str | os.PathLike | None = None, num_identity: int = NUM_IDENTITY,
                        num_expression: int = NUM_EXPRESSION, num_albedo: int = NUM_ALBEDO) -> Path:
    """Convert Basel's ``01_MorphableModel.mat`` + Guo et al.'s ``Exp_Pca.bin`` into Deep3D's ``BFM_model_front.mat``.

    Inputs (format facts relied on):
        ``01_MorphableModel.mat`` (MATLAB v5): ``shapeMU`` (3Nb, 1) micrometre scale, x y z interleaved per vertex
        (Nb = 53,490); ``shapePC`` (3Nb, 199) orthonormal; ``shapeEV`` (199, 1) standard deviations; ``texMU``,
        ``texPC``, ``texEV`` likewise in 0-255. (``tl``, the full-head triangles, is not needed: the front topology
        comes from ``facemodel_info.mat``.)
        ``Exp_Pca.bin``: see :func:`read_expression_pca` (N = 53,215 vertices of the trimmed model).
        ``std_exp.txt``: one standard deviation per expression component (default: in ``deep3d_meta_dir``, else
        beside ``Exp_Pca.bin``).
        ``deep3d_meta_dir`` (Deep3D, MIT): ``BFM_front_idx.mat`` ``idx`` (V, 1) 1-based ids of the V = 35,709 front
        vertices among the N trimmed vertices; ``BFM_exp_idx.mat`` ``trimIndex`` (N, 1) 1-based ids of the trimmed
        vertices among Basel's Nb; ``facemodel_info.mat`` ``tri``, ``keypoints``, ``point_buf`` (required) and
        ``skinmask``, ``frontmask2_idx``, ``tri_mask2`` (copied when present); ``select_vertex_id.mat`` ``select_id``
        (optional) is checked to equal ``trimIndex[idx]``.

    Computation (Deep3D's conversion): front vertex i is Basel vertex ``trimIndex[idx[i]]`` and expression vertex
    ``idx[i]``; ``meanshape = shapeMU / 1e5``, ``idBase = shapePC[:, :80] * shapeEV[:80] / 1e5``,
    ``exBase = expPC[:, :64] * std_exp[:64] / 1e5`` (decimetres); ``meantex = texMU``,
    ``texBase = texPC[:, :80] * texEV[:80]`` (0-255). The expression mean of ``Exp_Pca.bin`` is not added (Deep3D
    drops it too). Arrays are written as float32 (the bases) and unchanged (the metadata), atomically
    (temporary file + ``os.replace``).

    Returns:
        The output path. Raises ``FileNotFoundError`` / ``ValueError`` naming the file and key on bad inputs.
    """
    meta = Path(deep3d_meta_dir)
    if not meta.is_dir():
        raise FileNotFoundError(f"Deep3D metadata folder not found: {meta}")
    output_path = Path(output_path)
    trim_path, trim_raw, front_to_trimmed = _read_front_index(meta)
    num_trimmed = trim_raw.size
    info_arrays = _read_face_model_info(meta, front_to_trimmed.size)
    basel_path = Path(morphable_model_mat)
    basel = _load_mat(basel_path, "Basel Face Model 2009 (01_MorphableModel.mat)")
    shape_mu = _vector(basel, basel_path, "shapeMU", None, "(3Nb, 1)")
    if shape_mu.size == 0 or shape_mu.size % 3:
        raise ValueError(f"{basel_path}: key 'shapeMU' must have 3Nb values, got {shape_mu.size}")
    num_basel = shape_mu.size // 3
    front_to_basel = _indices(trim_raw, trim_path, "trimIndex", 1, num_basel)[front_to_trimmed]
    _check_selected_vertices(meta, front_to_basel, num_basel)

    def component_basis(mu_key: str, pc_key: str, ev_key: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        mu = shape_mu if mu_key == "shapeMU" else _vector(basel, basel_path, mu_key, 3 * num_basel,
                                                           f"(3Nb={3 * num_basel}, 1)")
        _float(basel, basel_path, mu_key, f"(3Nb={3 * num_basel}, 1)", lambda s: True)
        pc = _float(basel, basel_path, pc_key, f"(3Nb={3 * num_basel}, K>={count})",
                    lambda s: len(s) == 2 and s[0] == 3 * num_basel and s[1] >= count)
        ev = _vector(basel, basel_path, ev_key, pc.shape[1], f"({pc.shape[1]}, 1)")
        _float(basel, basel_path, ev_key, f"({pc.shape[1]}, 1)", lambda s: True)
        rows = (3 * front_to_basel[:, None] + np.arange(3)).reshape(-1)
        return (mu[rows].astype(np.float64),
                pc[rows, :count].astype(np.float64) * ev[:count].astype(np.float64)[None, :])

    for what, count in (("num_identity", num_identity), ("num_expression", num_expression),
                        ("num_albedo", num_albedo)):
        if int(count) < 1:
            raise ValueError(f"{what} must be >= 1, got {count}")
    meanshape, id_base = component_basis("shapeMU", "shapePC", "shapeEV", num_identity)
    meantex, tex_base = component_basis("texMU", "texPC", "texEV", num_albedo)
    ex_base = _front_expression_basis(expression_bin, num_trimmed, front_to_trimmed, num_expression, std_exp_path,
                                      meta)
    arrays = {
        "meanshape": (meanshape * BASEL_TO_DECIMETRE).astype(np.float32).reshape(1, -1),
        "meantex": meantex.astype(np.float32).reshape(1, -1),
        "idBase": (id_base * BASEL_TO_DECIMETRE).astype(np.float32),
        "exBase": (ex_base * BASEL_TO_DECIMETRE).astype(np.float32),
        "texBase": tex_base.astype(np.float32),
        **info_arrays,
    }
    _atomic_savemat(output_path, arrays)
    return output_path


def _read_front_index(meta: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Deep3D's index files in ``meta``: ``(BFM_exp_idx.mat path, trimIndex (N,) as stored (1-based),
    front -> trimmed vertex ids (V,) 0-based from BFM_front_idx.mat idx)``."""
    front_path = meta / "BFM_front_idx.mat"
    front_mat = _load_mat(front_path, "Deep3D front-vertex index (BFM_front_idx.mat)")
    trim_path = meta / "BFM_exp_idx.mat"
    trim_mat = _load_mat(trim_path, "Deep3D trimmed-vertex index (BFM_exp_idx.mat)")
    trim_raw = _vector(trim_mat, trim_path, "trimIndex", None, "(N, 1)")
    if trim_raw.size == 0:
        raise ValueError(f"{trim_path}: key 'trimIndex' is empty")
    front_raw = _vector(front_mat, front_path, "idx", None, "(V, 1)")
    if front_raw.size == 0:
        raise ValueError(f"{front_path}: key 'idx' is empty")
    return trim_path, trim_raw, _indices(front_raw, front_path, "idx", 1, trim_raw.size)


def _read_face_model_info(meta: Path, V: int) -> dict:
    """The topology arrays of ``facemodel_info.mat`` for V front vertices, validated and as stored (1-based):
    ``tri``, ``point_buf``, ``keypoints`` and, when present, ``skinmask`` (1, V), ``frontmask2_idx``,
    ``tri_mask2``."""
    info_path = meta / "facemodel_info.mat"
    info = _load_mat(info_path, "Deep3D face-model info (facemodel_info.mat)")
    tri = _key(info, info_path, "tri", f"(F, 3) 1-based vertex ids in [1, {V}]")
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.shape[0] == 0:
        raise ValueError(f"{info_path}: key 'tri' must have shape (F, 3), got {tri.shape}")
    _indices(tri, info_path, "tri", 1, V)
    F = tri.shape[0]
    keypoints = _key(info, info_path, "keypoints", "(1, 68)")
    _indices(_vector(info, info_path, "keypoints", 68, "(1, 68)"), info_path, "keypoints", 1, V)
    point_buf = _key(info, info_path, "point_buf", f"(V={V}, k)")
    _index_matrix(info, info_path, "point_buf", None, V, F + 1, f"(V={V}, k) 1-based triangle ids in [1, {F + 1}]")
    arrays = {"tri": tri, "point_buf": point_buf, "keypoints": keypoints}
    if "skinmask" in info:
        arrays["skinmask"] = _vector(info, info_path, "skinmask", V, f"(1, V={V})").reshape(1, V)
    if "frontmask2_idx" in info:
        _indices(_vector(info, info_path, "frontmask2_idx", None, "(n, 1)"), info_path, "frontmask2_idx", 1, V)
        arrays["frontmask2_idx"] = info["frontmask2_idx"]
    if "tri_mask2" in info:
        _index_matrix(info, info_path, "tri_mask2", 3, None, V, f"(n, 3) 1-based vertex ids in [1, {V}]")
        arrays["tri_mask2"] = info["tri_mask2"]
    return arrays


def _check_selected_vertices(meta: Path, front_to_basel: np.ndarray, num_basel: int) -> None:
    """When ``select_vertex_id.mat`` is in ``meta``: its ``select_id`` must equal ``front_to_basel`` (V,)
    (trimIndex[idx], 0-based ids among the ``num_basel`` Basel vertices)."""
    select_path = meta / "select_vertex_id.mat"
    if not select_path.is_file():
        return
    V = front_to_basel.size
    select_mat = _load_mat(select_path, "Deep3D selected-vertex index (select_vertex_id.mat)")
    select = _indices(_vector(select_mat, select_path, "select_id", V, f"(V={V}, 1)"), select_path,
                      "select_id", 1, num_basel)
    if not np.array_equal(select, front_to_basel):
        raise ValueError(f"{select_path}: key 'select_id' disagrees with trimIndex[idx] of "
                         f"BFM_exp_idx.mat / BFM_front_idx.mat (mismatched Deep3D index files?)")


def _front_expression_basis(expression_bin, num_trimmed: int, front_to_trimmed: np.ndarray, count: int,
                            std_exp_path, meta: Path) -> np.ndarray:
    """Guo et al.'s expression basis on the V front vertices, (3V, count) float64 micrometre scale per unit
    coefficient (``expPC[:, :count] * std_exp[:count]``); ``std_exp.txt`` defaults to ``meta``, else beside
    ``Exp_Pca.bin``."""
    _, exp_pc = read_expression_pca(expression_bin, num_trimmed)
    if exp_pc.shape[1] < count:
        raise ValueError(f"{expression_bin}: {exp_pc.shape[1]} expression components, {count} requested")
    if std_exp_path is None:
        candidates = [meta / "std_exp.txt", Path(expression_bin).parent / "std_exp.txt"]
        std_exp_path = next((c for c in candidates if c.is_file()), candidates[0])
    exp_std = read_expression_std(std_exp_path, exp_pc.shape[1])
    exp_rows = (3 * front_to_trimmed[:, None] + np.arange(3)).reshape(-1)
    return exp_pc[exp_rows, :count].astype(np.float64) * exp_std[None, :count]
