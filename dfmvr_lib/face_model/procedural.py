"""The embedded default face model, built deterministically by code (no downloads, nothing cached on disk).

:func:`build_procedural_model` returns a :class:`~dfmvr_lib.face_model.base.MorphableModel` whose mean is an
analytic human head (forehead to upper neck, ear to ear) with eyeballs under draped lids, a nose with nostrils, lips
around a mouth slit that opens onto a dark inner-mouth cavity. Identity and expression bases are finite differences
of that construction with one named parameter raised by one standard deviation (plus, past the named ones, small
smooth random variations); albedo components are smooth colour fields. See docs/conventions.md for the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import MorphableModel, MorphableModelData, vertex_normals
from . import procedural_albedo as pa
from . import procedural_components as pc
from . import procedural_mesh as pm
from . import procedural_semantics as sem
from . import procedural_shape as ps


@dataclass
class _Topology:
    grid: pm.FaceGrid
    n_face: int
    eye_caps: list  # [(offset, CapTopology)] for left (x < 0) then right eye
    cavity_loop: np.ndarray  # (L,) face vertex ids around the lips
    loop_side: np.ndarray
    loop_m: np.ndarray
    cavity_offset: int
    cavity_rings: int
    cavity_cap: int  # id of the back-wall centre vertex
    triangles: np.ndarray
    n_vertices: int


U_MAX = 172.0  # the sheet wraps round behind the ears (its back edge stays hidden up to about +-70 deg yaw)
Y_MIN, Y_MAX = -165.0, 88.0


def _spacing_for(vertex_target: int) -> float:
    # the face sheet holds ~ 95 % of the vertices; its canonical area is (2 U_MAX) x (Y_MAX - Y_MIN)
    return math.sqrt(2.0 * U_MAX * (Y_MAX - Y_MIN) / (0.95 * vertex_target))


def _face_density(uv):
    """Finer triangles on the face than on the neck and behind the ears (the sheet wraps far round the head)."""
    return 1.0 + 0.9 * ps.gauss(uv[:, 0], uv[:, 1], 0.0, -20.0, 40.0, 40.0)


def _build_topology(spec: dict, vertex_target: int, relax_iterations: int = 18) -> _Topology:
    h = _spacing_for(vertex_target)
    u_max = U_MAX
    grid = pm.build_grid(u_max=u_max, y_min=Y_MIN, y_max=Y_MAX, spacing=h, eye_y=spec["eye_slit_y"],
                         eye_u=(spec["eye_en"], spec["eye_ex"]), mouth_y=spec["mouth_slit_y"],
                         mouth_u=spec["mouth_u"])
    if relax_iterations:
        pm.relax_grid(grid, lambda uv: ps.embed_face(spec, uv, grid.side), iterations=relax_iterations, step=0.55,
                      density=_face_density)
    face = ps.embed_face(spec, grid.uv, grid.side)
    tris = [pm.triangulate_quads(grid.quads, face)]
    n_face = len(grid.uv)
    offset = n_face
    # eyeballs
    caps = []
    for sign in (-1, 1):
        cap = pm.build_cap(12.5, math.radians(112.0), 0.75 * h, theta_keys=(math.radians(9.0), math.radians(27.0)))
        caps.append((offset, cap))
        tris.append(cap.triangles + offset)
        offset += len(cap.directions)
    # mouth cavity: loop = upper edge left -> right, then lower edge right -> left
    r, c0, c1 = grid.slit_rows[pm.SLIT_MOUTH]
    upper = r * grid.cols + np.arange(c0, c1 + 1)
    lower = grid.lower_copy[upper[1:-1]][::-1]
    loop = np.concatenate([upper, lower])
    loop_side = np.concatenate([[0], np.ones(len(upper) - 2, np.int64), [0], -np.ones(len(lower), np.int64)])
    mu = spec["mouth_u"]
    loop_m = np.clip(grid.uv[loop, 0] / mu, -1.0, 1.0)
    L = len(loop)
    rings = max(3, int(round(spec["cavity_depth"] / (1.3 * h))))
    cavity_offset = offset
    ring_ids = [loop] + [cavity_offset + k * L + np.arange(L) for k in range(rings)]
    quads = []
    for k in range(rings):
        a, b = ring_ids[k], ring_ids[k + 1]
        quads.append(np.stack([a, np.roll(a, -1), np.roll(b, -1), b], 1))
    quads = np.concatenate(quads)
    cap_id = cavity_offset + rings * L
    last = ring_ids[-1]
    fan = np.stack([last, np.roll(last, -1), np.full(L, cap_id)], 1)
    cav = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]], fan])
    # the cavity must traverse the lip edges opposite to the face triangles (consistent orientation)
    face_t = tris[0]
    directed = set(map(tuple, np.concatenate([face_t[:, [0, 1]], face_t[:, [1, 2]], face_t[:, [2, 0]]]).tolist()))
    if (int(loop[0]), int(loop[1])) in directed:
        cav = cav[:, ::-1]
    tris.append(cav)
    n_vertices = cap_id + 1
    return _Topology(grid=grid, n_face=n_face, eye_caps=caps, cavity_loop=loop, loop_side=loop_side, loop_m=loop_m,
                     cavity_offset=cavity_offset, cavity_rings=rings, cavity_cap=cap_id,
                     triangles=np.concatenate(tris).astype(np.int64), n_vertices=n_vertices)


def _geometry(spec: dict, topo: _Topology, memo=None) -> np.ndarray:
    """All vertex positions (V, 3) for one parameter set (construction frame, not yet centred)."""
    g = topo.grid
    V = topo.n_vertices
    out = np.zeros((V, 3))
    face = ps.embed_face(spec, g.uv, g.side, memo=memo)
    out[:topo.n_face] = face
    for (offset, cap), sign in zip(topo.eye_caps, (-1, 1)):
        out[offset:offset + len(cap.directions)] = ps.eyeball_points(spec, sign, cap.directions)
    edge = face[topo.cavity_loop]
    rings = ps.cavity_points(spec, edge, topo.loop_side, topo.loop_m, topo.cavity_rings)
    L = len(topo.cavity_loop)
    out[topo.cavity_offset:topo.cavity_offset + rings.shape[0] * L] = rings.reshape(-1, 3)
    out[topo.cavity_cap] = rings[-1].mean(0)
    # jaw rotation
    angle = spec["jaw_open"]
    if angle:
        w = _jaw_weights(spec, topo)
        rotated = ps.rotate_about_x(out, spec["jaw_pivot"], angle)
        out = out + w[:, None] * (rotated - out)
        # the lips roll outwards as the mouth opens (and tuck in behind each other for negative values)
        out[:, 2] += _evert_weights(spec, topo) * spec["jaw_evert"] * angle
    return out


def _geometry_with_jaw_x(spec: dict, topo: _Topology, memo=None) -> np.ndarray:
    out = _geometry(spec, topo, memo)
    shift = spec["jaw_x"]
    if shift:
        out = out + shift * _jaw_weights(spec, topo)[:, None] * np.array([1.0, 0.0, 0.0])
    return out


def _jaw_weights(spec: dict, topo: _Topology) -> np.ndarray:
    g = topo.grid
    L = len(topo.cavity_loop)
    w = np.zeros(topo.n_vertices)
    w[:topo.n_face] = ps.jaw_weight(spec, g.uv[:, 0], g.uv[:, 1], g.side)
    loop_w = np.where(topo.loop_side > 0, 0.0, np.where(topo.loop_side < 0, 1.0, 0.5))
    for k in range(topo.cavity_rings):
        f = (k + 1) / topo.cavity_rings
        w[topo.cavity_offset + k * L:topo.cavity_offset + (k + 1) * L] = loop_w + (0.5 - loop_w) * f ** 3
    w[topo.cavity_cap] = 0.5
    return w


def _evert_weights(spec: dict, topo: _Topology) -> np.ndarray:
    g = topo.grid
    u, y = g.uv[:, 0], g.uv[:, 1]
    m = u / spec["mouth_u"]
    dy = y - spec["mouth_slit_y"]
    upper = (dy > 1e-9) | (g.side > 0)
    lower = (dy < -1e-9) | (g.side < 0)
    near = np.exp(-0.5 * (dy / 4.5) ** 2) * np.clip(1.0 - m * m, 0.0, 1.0) ** 0.5
    w = np.zeros(topo.n_vertices)
    w[:topo.n_face] = near * np.where(upper, 0.35, 0.0) + near * np.where(lower, 1.0, 0.0)
    L = len(topo.cavity_loop)
    edge = w[topo.cavity_loop]
    for k in range(topo.cavity_rings):
        w[topo.cavity_offset + k * L:topo.cavity_offset + (k + 1) * L] = edge * max(0.0, 1.0 - 0.35 * (k + 1))
    return w


def _random_shape_field(rng, mean, normals, mask, centres_pool, amplitude, sigma_range, topo):
    """A smooth random displacement along the mean normals, ``amplitude`` mm at its largest."""
    symmetric = rng.random() < 0.6
    centres, sigmas, weights = [], [], []
    for _ in range(int(rng.integers(2, 6))):
        c = mean[centres_pool[rng.integers(len(centres_pool))]]
        sigma = rng.uniform(*sigma_range)
        a = rng.normal()
        centres.append(c)
        sigmas.append(sigma)
        weights.append(a)
        if symmetric:
            centres.append(c * np.array([-1.0, 1.0, 1.0]))
            sigmas.append(sigma)
            weights.append(a)
    field = pa._blobs(mean, np.sum(mean ** 2, 1), np.array(centres), np.array(sigmas), np.array(weights))
    field = field * mask
    field *= amplitude / max(np.abs(field).max(), 1e-9)
    disp = field[:, None] * normals
    # the inner mouth follows its lip edge, fading towards the back
    L = len(topo.cavity_loop)
    edge = disp[topo.cavity_loop]
    for k in range(topo.cavity_rings):
        f = (k + 1) / topo.cavity_rings
        disp[topo.cavity_offset + k * L:topo.cavity_offset + (k + 1) * L] = edge * (1.0 - f)
    disp[topo.cavity_cap] = 0.0
    return disp


def _shape_basis(spec, topo, mean_raw, components, count, kind, seed, normals, labels, memo=None):
    V = topo.n_vertices
    basis = np.zeros((V, 3, count))
    named = min(count, len(components))
    for k in range(named):
        name, delta = components[k]
        # central difference: symmetric in the coefficient's sign (lids and lips stay consistent both ways)
        plus = _geometry_with_jaw_x(pc.apply_delta(spec, delta, 1.0), topo, memo)
        minus = _geometry_with_jaw_x(pc.apply_delta(spec, delta, -1.0), topo, memo)
        basis[:, :, k] = 0.5 * (plus - minus)
    if count > named:
        nf = topo.n_face
        mask = np.zeros(V)
        mask[:nf] = 1.0
        for sign in (-1, 1):
            d = np.linalg.norm(mean_raw - ps.eye_centre(spec, sign), axis=1)
            mask *= ps.sstep(d, 17.0, 26.0)
        uv = topo.grid.uv
        if kind == 1:  # expressions: the mobile lower face, cheeks, brows and forehead
            mobile = np.zeros(V)
            mobile[:nf] = ps.sstep(uv[:, 1], -135.0, -115.0) * ps.sstep(np.abs(uv[:, 0]), 100.0, 70.0)
            mask *= mobile
        pool = np.nonzero((mask > 0.5) & (np.arange(V) < nf) & (labels > 0))[0]
        for k in range(named, count):
            rng = pc.random_component_rng(seed, kind, k)
            j = k - len(components)
            if kind == 0:
                amp, sig = 1.0 * 0.97 ** j, (16.0, 34.0)
            else:
                # unnamed expressions stay small and broad (no lumps when many are mixed)
                amp, sig = 0.3 * 0.97 ** j, (22.0, 36.0)
            basis[:, :, k] = _random_shape_field(rng, mean_raw, normals, mask, pool, amp, sig, topo)
    return basis


def build_procedural_model(vertex_target: int = 20000, identity_components: int = 80, expression_components: int = 64,
                           albedo_components: int = 80, seed: int = 0) -> MorphableModel:
    """Build the embedded procedural face model (deterministic for the same arguments; ~1-3 s).

    Args:
        vertex_target: approximate number of vertices (about 6k for quick tests up to about 36k).
        identity_components, expression_components, albedo_components: basis sizes. The first components are the
            named ones (``procedural_components.IDENTITY`` / ``EXPRESSION``, ``procedural_albedo.NAMED_ALBEDO``),
            the rest are smaller smooth random variations; column k never depends on the requested count, so a
            larger model is a superset of a smaller one.
        seed: seeds the random (unnamed) components only.
    Returns:
        :class:`MorphableModel`, mean centred on its centroid, coefficients ~ N(0, 1).
    """
    if vertex_target < 1000:
        raise ValueError(f"vertex_target must be at least 1000, got {vertex_target}")
    for name, count in (("identity_components", identity_components), ("expression_components",
                        expression_components), ("albedo_components", albedo_components)):
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
    spec = ps.mean_spec()
    topo = _build_topology(spec, vertex_target)
    memo = ps.Memo()
    mean_raw = _geometry_with_jaw_x(spec, topo, memo)
    _, info = ps.embed_face(spec, topo.grid.uv, topo.grid.side, with_info=True, memo=memo)
    labels = sem.part_labels(spec, topo, info, mean_raw)
    lm68, lm101, align7 = sem.landmarks(spec, topo, labels, mean_raw)
    region = sem.evaluation_region(spec, topo, labels, mean_raw)
    normals = vertex_normals(torch.as_tensor(mean_raw)[None], torch.as_tensor(topo.triangles))[0].numpy()
    id_basis = _shape_basis(spec, topo, mean_raw, pc.IDENTITY, identity_components, 0, seed, normals, labels,
                            memo)
    exp_basis = _shape_basis(spec, topo, mean_raw, pc.EXPRESSION, expression_components, 1, seed, normals,
                             labels, memo)
    albedo, masks = pa.mean_albedo(spec, topo, labels)
    alb_basis = pa.albedo_basis(spec, topo, labels, masks, mean_raw, albedo_components, seed)
    centre = mean_raw.mean(0)
    data = MorphableModelData(
        mean_shape=(mean_raw - centre).astype(np.float32),
        identity_basis=id_basis.astype(np.float32),
        expression_basis=exp_basis.astype(np.float32),
        mean_albedo=albedo.astype(np.float32),
        albedo_basis=alb_basis.astype(np.float32),
        triangles=topo.triangles.astype(np.int64),
        landmark_68=lm68, landmark_101=lm101, alignment_7=align7,
        part_labels=labels, evaluation_region=region,
        name=f"procedural face ({topo.n_vertices} vertices)",
    )
    return MorphableModel(data)
