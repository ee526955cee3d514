"""The one morphable-model interface every face model source (procedural, BFM09) produces.

Conventions (docs/conventions.md): head frame x right, y up, z towards the camera; millimetres; the mean shape is
centred on its centroid; triangles counter-clockwise seen from outside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import nn

PART_NAMES = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye",
    "nose", "mouth", "upper_lip", "lower_lip",
)
"""The 10 face-part classes, index = label id (docs/conventions.md)."""
NUM_PARTS = len(PART_NAMES)

# Colours for overlays of part labels (RGB in [0, 1]), index = label id.
PART_COLOURS = np.array([
    [0.0, 0.0, 0.0], [0.85, 0.65, 0.55], [0.55, 0.27, 0.07], [0.75, 0.45, 0.15], [0.10, 0.45, 0.95],
    [0.20, 0.80, 0.95], [0.95, 0.85, 0.10], [0.45, 0.0, 0.35], [0.95, 0.15, 0.20], [0.70, 0.05, 0.45],
], dtype=np.float32)


@dataclass
class MorphableModelData:
    """Plain arrays that define a morphable model; :class:`MorphableModel` turns them into torch buffers.

    Shapes (V vertices, F triangles, K_* components):
        mean_shape (V, 3) float, mm, centred on its centroid
        identity_basis (V, 3, K_id), expression_basis (V, 3, K_exp): mm per unit coefficient (coefficients ~ N(0, 1))
        mean_albedo (V, 3) float in [0, 1]
        albedo_basis (V, 3, K_alb): albedo change per unit coefficient
        triangles (F, 3) int, counter-clockwise seen from outside
        landmark_68 (68,) int vertex ids, iBUG order
        landmark_101 (101,) int vertex ids (3D landmarks)
        alignment_7 (7,) int vertex ids: left-eye outer, left-eye inner, right-eye inner, right-eye outer,
            nose tip, left mouth corner, right mouth corner
        part_labels (V,) int in [0, 10)
        evaluation_region (V,) bool: the front face used for evaluation and losses
        name: a short human-readable name (for reports)
    """

    mean_shape: np.ndarray
    identity_basis: np.ndarray
    expression_basis: np.ndarray
    mean_albedo: np.ndarray
    albedo_basis: np.ndarray
    triangles: np.ndarray
    landmark_68: np.ndarray
    landmark_101: np.ndarray
    alignment_7: np.ndarray
    part_labels: np.ndarray
    evaluation_region: np.ndarray
    name: str = "morphable model"

    def validate(self, source: str = "model") -> None:
        """Raise ``ValueError`` naming ``source`` and the offending field when shapes or ranges are wrong."""
        V = self.mean_shape.shape[0]

        def fail(field_name: str, message: str) -> None:
            raise ValueError(f"{source}: field {field_name!r} {message}")

        if self.mean_shape.ndim != 2 or self.mean_shape.shape[1] != 3:
            fail("mean_shape", f"must be (V, 3), got {self.mean_shape.shape}")
        for name in ("identity_basis", "expression_basis", "albedo_basis"):
            basis = getattr(self, name)
            if basis.ndim != 3 or basis.shape[:2] != (V, 3):
                fail(name, f"must be (V={V}, 3, K), got {basis.shape}")
        if self.mean_albedo.shape != (V, 3):
            fail("mean_albedo", f"must be (V={V}, 3), got {self.mean_albedo.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            fail("triangles", f"must be (F, 3), got {self.triangles.shape}")
        if self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= V):
            fail("triangles", f"index out of range [0, {V})")
        for name, count in (("landmark_68", 68), ("landmark_101", 101), ("alignment_7", 7)):
            ids = np.asarray(getattr(self, name))
            if ids.shape != (count,):
                fail(name, f"must have shape ({count},), got {ids.shape}")
            if ids.min() < 0 or ids.max() >= V:
                fail(name, f"vertex id out of range [0, {V})")
        if self.part_labels.shape != (V,) or self.part_labels.min() < 0 or self.part_labels.max() >= NUM_PARTS:
            fail("part_labels", f"must be (V={V},) with values in [0, {NUM_PARTS})")
        if self.evaluation_region.shape != (V,):
            fail("evaluation_region", f"must be (V={V},), got {self.evaluation_region.shape}")
        for name in ("mean_shape", "identity_basis", "expression_basis", "mean_albedo", "albedo_basis"):
            if not np.all(np.isfinite(getattr(self, name))):
                fail(name, "contains NaN or infinite values")


def vertex_triangle_table(triangles: np.ndarray, num_vertices: int) -> np.ndarray:
    """One-ring adjacency: for every vertex, the ids of the triangles around it.

    Returns (V, M) int64, padded with F (an index one past the last triangle, for a zero row appended to the face
    normals), M the largest valence.
    """
    triangles = np.asarray(triangles, dtype=np.int64)
    F = triangles.shape[0]
    vertex_of_corner = triangles.reshape(-1)
    triangle_of_corner = np.repeat(np.arange(F), 3)
    order = np.argsort(vertex_of_corner, kind="stable")
    vertex_sorted = vertex_of_corner[order]
    counts = np.bincount(vertex_of_corner, minlength=num_vertices)
    M = max(int(counts.max()) if counts.size else 1, 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(vertex_sorted.size) - starts[vertex_sorted]
    table = np.full((num_vertices, M), F, dtype=np.int64)
    table[vertex_sorted, slot] = triangle_of_corner[order]
    return table


@numba.njit(cache=True, nogil=True)
def _vertex_normals_kernel(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    B, V = vertices.shape[0], vertices.shape[1]
    out = np.zeros((B, V, 3), dtype=np.float32)
    for b in range(B):
        for f in range(triangles.shape[0]):
            i, j, k = triangles[f, 0], triangles[f, 1], triangles[f, 2]
            ax = vertices[b, j, 0] - vertices[b, i, 0]
            ay = vertices[b, j, 1] - vertices[b, i, 1]
            az = vertices[b, j, 2] - vertices[b, i, 2]
            bx = vertices[b, k, 0] - vertices[b, i, 0]
            by = vertices[b, k, 1] - vertices[b, i, 1]
            bz = vertices[b, k, 2] - vertices[b, i, 2]
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            length = np.sqrt(nx * nx + ny * ny + nz * nz)
            if length <= 1e-12:
                continue
            for corner in (i, j, k):
                out[b, corner, 0] += nx / length
                out[b, corner, 1] += ny / length
                out[b, corner, 2] += nz / length
        for v in range(V):
            length = np.sqrt(out[b, v, 0] ** 2 + out[b, v, 1] ** 2 + out[b, v, 2] ** 2)
            if length > 1e-12:
                out[b, v, 0] /= length
                out[b, v, 1] /= length
                out[b, v, 2] /= length
    return out


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals: the normalised sum of the unit normals of the triangles around each vertex (one ring).

    Differentiable (scatter-add of face normals) when ``vertices`` needs a gradient; a numba kernel otherwise on CPU
    (same result up to float rounding, several times faster; meshes with high-valence fans make a gather over the
    one-ring table slow, so neither path uses it).

    Args:
        vertices: (B, V, 3)
        triangles: (F, 3) long, counter-clockwise seen from outside
    Returns:
        (B, V, 3) unit normals pointing outwards (zero for vertices in no triangle).
    """
    if vertices.device.type == "cpu" and not (torch.is_grad_enabled() and vertices.requires_grad):
        array = np.ascontiguousarray(vertices.detach().numpy(), dtype=np.float32)
        corners = np.ascontiguousarray(triangles.detach().cpu().numpy(), dtype=np.int64)
        return torch.from_numpy(_vertex_normals_kernel(array, corners)).to(vertices.dtype)
    v0, v1, v2 = (vertices[:, triangles[:, k]] for k in range(3))
    face_normals = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1, eps=1e-12)
    summed = torch.zeros_like(vertices)
    for k in range(3):
        summed = summed.index_add(1, triangles[:, k], face_normals)
    return torch.nn.functional.normalize(summed, dim=-1, eps=1e-12)


class MorphableModel(nn.Module):
    """A linear 3D morphable model: ``model(identity, expression, albedo) -> (vertices, albedo)``.

    Buffers (move with ``.to(device)``): ``mean_shape (V,3)``, ``identity_basis (V,3,K_id)``,
    ``expression_basis (V,3,K_exp)``, ``mean_albedo (V,3)``, ``albedo_basis (V,3,K_alb)``, ``triangles (F,3)``,
    ``landmark_68 (68,)``, ``landmark_101 (101,)``, ``alignment_7 (7,)``,
    ``part_labels (V,)``, ``evaluation_region (V,)``. The one-ring adjacency is the property ``vertex_triangles``.

    Coefficient vectors may be shorter than the basis (the first K components are used): a network that regresses
    80 identity coefficients works with a model that has more.
    """

    def __init__(self, data: MorphableModelData):
        super().__init__()
        data.validate(data.name)
        self.name = data.name
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
        self.register_buffer("mean_shape", f32(data.mean_shape))
        self.register_buffer("identity_basis", f32(data.identity_basis))
        self.register_buffer("expression_basis", f32(data.expression_basis))
        self.register_buffer("mean_albedo", f32(data.mean_albedo))
        self.register_buffer("albedo_basis", f32(data.albedo_basis))
        self.register_buffer("triangles", i64(data.triangles))
        self.register_buffer("landmark_68", i64(data.landmark_68))
        self.register_buffer("landmark_101", i64(data.landmark_101))
        self.register_buffer("alignment_7", i64(data.alignment_7))
        self.register_buffer("part_labels", i64(data.part_labels))
        self.register_buffer("evaluation_region", torch.as_tensor(np.asarray(data.evaluation_region, dtype=bool)))

    @property
    def vertex_triangles(self) -> torch.Tensor:
        """One-ring adjacency (V, M): the triangles around each vertex, padded with F (see
        :func:`vertex_triangle_table`); derived from ``triangles`` when asked for (normals do not need it)."""
        table = vertex_triangle_table(self.triangles.cpu().numpy(), self.num_vertices)
        return torch.as_tensor(table, device=self.triangles.device)

    @property
    def num_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_identity(self) -> int:
        return self.identity_basis.shape[2]

    @property
    def num_expression(self) -> int:
        return self.expression_basis.shape[2]

    @property
    def num_albedo(self) -> int:
        return self.albedo_basis.shape[2]

    @staticmethod
    def _combine(mean: torch.Tensor, basis: torch.Tensor, coefficients: torch.Tensor | None, name: str) -> torch.Tensor:
        if coefficients is None:
            return mean.unsqueeze(0)
        if coefficients.ndim != 2:
            raise ValueError(f"{name} coefficients must be (B, K), got {tuple(coefficients.shape)}")
        K = coefficients.shape[1]
        if K > basis.shape[2]:
            raise ValueError(f"{name} coefficients have {K} components but the model has {basis.shape[2]}")
        V = mean.shape[0]
        offset = coefficients @ basis[:, :, :K].reshape(V * 3, K).T
        return mean.unsqueeze(0) + offset.reshape(-1, V, 3)

    def shape(self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None) -> torch.Tensor:
        """Vertices (B, V, 3) in mm for identity (B, K_id) and expression (B, K_exp) coefficients."""
        vertices = self._combine(self.mean_shape, self.identity_basis, identity, "identity")
        if expression is not None:
            vertices = vertices + self._combine(torch.zeros_like(self.mean_shape), self.expression_basis,
                                                expression, "expression")
        return vertices

    def albedo(self, albedo: torch.Tensor | None = None) -> torch.Tensor:
        """Per-vertex albedo (B, V, 3) in [0, 1] (clamped) for albedo coefficients (B, K_alb)."""
        return self._combine(self.mean_albedo, self.albedo_basis, albedo, "albedo").clamp(0.0, 1.0)

    def forward(self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None,
                albedo: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(vertices (B,V,3) mm, albedo (B,V,3) in [0,1])``. ``None`` coefficients mean zeros."""
        vertices = self.shape(identity, expression)
        colours = self.albedo(albedo)
        if colours.shape[0] != vertices.shape[0]:
            colours = colours.expand(vertices.shape[0], -1, -1)
        return vertices, colours

    def normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Unit vertex normals (B, V, 3) of ``vertices`` (B, V, 3) with this model's topology."""
        return vertex_normals(vertices, self.triangles)

    def to_data(self) -> MorphableModelData:
        """Back to plain numpy arrays (for saving)."""
        n = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return MorphableModelData(
            mean_shape=n(self.mean_shape), identity_basis=n(self.identity_basis),
            expression_basis=n(self.expression_basis), mean_albedo=n(self.mean_albedo),
            albedo_basis=n(self.albedo_basis), triangles=n(self.triangles), landmark_68=n(self.landmark_68),
            landmark_101=n(self.landmark_101), alignment_7=n(self.alignment_7), part_labels=n(self.part_labels),
            evaluation_region=n(self.evaluation_region), name=self.name,
        )

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, vertices={self.num_vertices}, triangles={self.triangles.shape[0]}, "
                f"identity={self.num_identity}, expression={self.num_expression}, albedo={self.num_albedo}")
