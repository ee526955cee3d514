"""Topology of the procedural face: a canonical (u, y) grid with slits for the eyes and the mouth.

Canonical coordinates (mm): ``u`` is the arc length along the horizontal section of a fixed base prism (signed,
+u towards +x, the subject's left), ``y`` the height. The grid is cut along three horizontal slits (left eye,
right eye, mouth); vertices inside a slit are duplicated, the original belongs to the upper side and the copy to
the lower side, so the lids and the lips can open. Slit ends (eye corners, mouth corners) are shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLIT_NONE, SLIT_EYE_LEFT, SLIT_EYE_RIGHT, SLIT_MOUTH = 0, 1, 2, 3


def _breakpoints(keys: list[float], spacing: float) -> np.ndarray:
    """Piecewise-uniform 1D samples that contain every key value, spacing close to ``spacing``."""
    keys = sorted(keys)
    pieces = []
    for a, b in zip(keys[:-1], keys[1:]):
        n = max(1, int(round((b - a) / spacing)))
        pieces.append(np.linspace(a, b, n + 1)[:-1])
    pieces.append(np.array([keys[-1]]))
    return np.concatenate(pieces)


@dataclass
class FaceGrid:
    """The face sheet: canonical coordinates, slit bookkeeping and triangles.

    Attributes:
        uv: (Vf, 2) canonical (u, y) of every face vertex (relaxed in place by :func:`relax_grid`).
        side: (Vf,) +1 upper copy of a slit vertex, -1 lower copy, 0 elsewhere (slit ends too).
        slit: (Vf,) slit id of slit vertices (ends included), 0 elsewhere.
        triangles: (F, 3) counter-clockwise seen from outside (u right, y up, normal towards +z at the front).
        rows, cols: grid size; grid vertex (r, c) has id r * cols + c.
        row_y, col_u: the grid lines before relaxation.
        slit_rows: {slit id: (row, first column, last column)}.
        lower_copy: (Vf,) for an upper slit vertex the id of its lower copy, else -1.
        fixed_u, fixed_y: (Vf,) bool masks of coordinates the relaxation keeps.
    """

    uv: np.ndarray
    side: np.ndarray
    slit: np.ndarray
    triangles: np.ndarray
    rows: int
    cols: int
    row_y: np.ndarray
    col_u: np.ndarray
    slit_rows: dict
    lower_copy: np.ndarray
    fixed_u: np.ndarray
    fixed_y: np.ndarray


def build_grid(u_max: float, y_min: float, y_max: float, spacing: float, eye_y: float, eye_u: tuple[float, float],
               mouth_y: float, mouth_u: float, extra_u: tuple = (), extra_y: tuple = ()) -> FaceGrid:
    """Structured grid over [-u_max, u_max] x [y_min, y_max] with the three slits on grid lines.

    ``eye_u`` = (inner, outer) |u| of the eye corners, ``mouth_u`` = |u| of the mouth corners.
    """
    en, ex = eye_u
    col_u = _breakpoints([-u_max, -ex, -en, -mouth_u, 0.0, mouth_u, en, ex, u_max, *extra_u], spacing)
    row_y = _breakpoints([y_min, mouth_y, eye_y, y_max, *extra_y], spacing)
    R, C = len(row_y), len(col_u)
    uu, yy = np.meshgrid(col_u, row_y)
    uv = np.stack([uu.ravel(), yy.ravel()], 1)
    Vg = R * C
    side = np.zeros(Vg, np.int64)
    slit = np.zeros(Vg, np.int64)

    def col_of(value: float) -> int:
        return int(np.argmin(np.abs(col_u - value)))

    r_eye = int(np.argmin(np.abs(row_y - eye_y)))
    r_mouth = int(np.argmin(np.abs(row_y - mouth_y)))
    slit_rows = {
        SLIT_EYE_LEFT: (r_eye, col_of(-ex), col_of(-en)),
        SLIT_EYE_RIGHT: (r_eye, col_of(en), col_of(ex)),
        SLIT_MOUTH: (r_mouth, col_of(-mouth_u), col_of(mouth_u)),
    }
    # Duplicate interior slit vertices: originals = upper side, copies = lower side.
    lower_copy = -np.ones(Vg, np.int64)
    copies = []
    next_id = Vg
    for sid, (r, c0, c1) in slit_rows.items():
        for c in range(c0, c1 + 1):
            v = r * C + c
            slit[v] = sid
            if c0 < c < c1:
                side[v] = 1
                lower_copy[v] = next_id
                copies.append(v)
                next_id += 1
    copies = np.array(copies, np.int64)
    uv = np.concatenate([uv, uv[copies]], 0)
    side = np.concatenate([side, -np.ones(len(copies), np.int64)])
    slit = np.concatenate([slit, slit[copies]])
    lower_copy = np.concatenate([lower_copy, -np.ones(len(copies), np.int64)])

    # Quads (r, c) - (r, c+1) - (r+1, c+1) - (r+1, c); vertices on a slit row take the lower copy when the quad
    # lies below the slit (the quad's top edge is on the slit row).
    r_idx, c_idx = np.meshgrid(np.arange(R - 1), np.arange(C - 1), indexing="ij")
    r_idx, c_idx = r_idx.ravel(), c_idx.ravel()
    v00 = r_idx * C + c_idx
    v01 = v00 + 1
    v10 = v00 + C
    v11 = v10 + 1

    def lower(v: np.ndarray) -> np.ndarray:
        out = v.copy()
        m = lower_copy[v] >= 0
        out[m] = lower_copy[v[m]]
        return out

    v10, v11 = lower(v10), lower(v11)  # top edge of a quad = the quad is below that row
    quads = np.stack([v00, v01, v11, v10], 1)

    fixed_u = np.zeros(len(uv), bool)
    fixed_y = np.zeros(len(uv), bool)
    fixed_u[:Vg][(uv[:Vg, 0] <= col_u[0] + 1e-9) | (uv[:Vg, 0] >= col_u[-1] - 1e-9)] = True
    fixed_y[:Vg][(uv[:Vg, 1] <= row_y[0] + 1e-9) | (uv[:Vg, 1] >= row_y[-1] + -1e-9)] = True
    for sid, (r, c0, c1) in slit_rows.items():
        row_ids = r * C + np.arange(C)
        fixed_y[row_ids] = True
        ids = r * C + np.arange(c0, c1 + 1)
        fixed_u[ids] = True
        fixed_u[lower(ids)] = True
        fixed_y[lower(ids)] = True
    grid = FaceGrid(uv=uv, side=side, slit=slit, triangles=np.zeros((0, 3), np.int64), rows=R, cols=C,
                    row_y=row_y, col_u=col_u, slit_rows=slit_rows, lower_copy=lower_copy, fixed_u=fixed_u,
                    fixed_y=fixed_y)
    grid.quads = quads
    return grid


def triangulate_quads(quads: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Split every quad (a, b, c, d counter-clockwise) along its shorter 3D diagonal."""
    a, b, c, d = quads.T
    ac = np.linalg.norm(points[a] - points[c], axis=1)
    bd = np.linalg.norm(points[b] - points[d], axis=1)
    use_ac = ac <= bd
    t1 = np.where(use_ac[:, None], np.stack([a, b, c], 1), np.stack([a, b, d], 1))
    t2 = np.where(use_ac[:, None], np.stack([a, c, d], 1), np.stack([b, c, d], 1))
    return np.concatenate([t1, t2], 0)


def relax_grid(grid: FaceGrid, embed, iterations: int = 40, step: float = 0.5, power: float = 1.0,
               density=None) -> None:
    """Move grid vertices in canonical space so that the embedded 3D edges become more uniform.

    ``embed(uv) -> (Vf, 3)`` maps canonical coordinates to the mean 3D surface. A vertex moves towards the
    length-weighted average of its grid neighbours (weights = 3D edge length ** power), so stretched regions (the
    underside of the nose, under the chin, the sides of the nose) gain vertices. ``density(uv) -> (Vf,)``
    optionally asks for more vertices where it is > 1.
    """
    # grid edges only (no diagonals): the four sides of each quad
    q = grid.quads
    e = np.concatenate([q[:, [0, 1]], q[:, [1, 2]], q[:, [2, 3]], q[:, [3, 0]]], 0)
    edges = np.unique(np.sort(e, 1), axis=0)
    i, j = edges[:, 0], edges[:, 1]
    V = len(grid.uv)
    uv = grid.uv.copy()
    lo = np.array([grid.col_u[0], grid.row_y[0]])
    hi = np.array([grid.col_u[-1], grid.row_y[-1]])
    move = np.stack([~grid.fixed_u, ~grid.fixed_y], 1).astype(float)
    # keep vertices on their side of the slit rows: clamp y between the neighbouring slit rows
    slit_ys = sorted({float(grid.row_y[r]) for r, _, _ in grid.slit_rows.values()})
    for _ in range(iterations):
        p = embed(uv)
        length = np.linalg.norm(p[i] - p[j], axis=1)
        if density is not None:
            dens = density(uv)
            length = length * 0.5 * (dens[i] + dens[j])
        w = np.clip(length / np.median(length), 0.25, 4.0) ** power
        wsum = np.bincount(i, w, V) + np.bincount(j, w, V)
        avg = np.stack([np.bincount(i, w * uv[j, k], V) + np.bincount(j, w * uv[i, k], V) for k in range(2)], 1)
        avg = avg / np.maximum(wsum, 1e-12)[:, None]
        new = uv + step * move * (avg - uv)
        # never cross a slit row
        for ys in slit_ys:
            above = grid.uv[:, 1] > ys + 1e-9
            below = grid.uv[:, 1] < ys - 1e-9
            new[above, 1] = np.maximum(new[above, 1], ys + 0.05)
            new[below, 1] = np.minimum(new[below, 1], ys - 0.05)
        uv = np.clip(new, lo, hi)
    grid.uv = uv


def zipper(ring_a: np.ndarray, angle_a: np.ndarray, ring_b: np.ndarray, angle_b: np.ndarray) -> np.ndarray:
    """Triangles joining two closed rings (vertex ids with angles increasing in [0, 2 pi)).

    Walks both rings in angle order and always advances the ring whose next vertex comes first, so rings with
    different vertex counts are stitched without slivers. With ``ring_a`` the inner ring of a cap whose angles run
    counter-clockwise seen from outside, the triangles are counter-clockwise seen from outside.
    """
    na, nb = len(ring_a), len(ring_b)
    tris = []
    i = j = 0
    # start both rings at their smallest angle
    while i < na or j < nb:
        a0, a1 = ring_a[i % na], ring_a[(i + 1) % na]
        b0, b1 = ring_b[j % nb], ring_b[(j + 1) % nb]
        next_a = angle_a[(i + 1) % na] + (2 * np.pi if i + 1 >= na else 0.0)
        next_b = angle_b[(j + 1) % nb] + (2 * np.pi if j + 1 >= nb else 0.0)
        if j >= nb or (i < na and next_a <= next_b):
            tris.append((a0, b0, a1))
            i += 1
        else:
            tris.append((a0, b0, b1))
            j += 1
    return np.array(tris, np.int64)


@dataclass
class CapTopology:
    """A polar cap (eyeball): pole + rings at polar angles ``theta`` (radians from the gaze axis).

    ``directions`` (n, 3) unit vectors of every vertex in the eye frame (gaze = +z), ``triangles`` local ids,
    ``theta`` per vertex.
    """

    directions: np.ndarray
    theta: np.ndarray
    triangles: np.ndarray


def build_cap(radius: float, theta_max: float, spacing: float, theta_keys=()) -> CapTopology:
    """Cap of a sphere of ``radius`` from the pole to ``theta_max`` with edge length about ``spacing``.

    ``theta_keys`` are polar angles that must be rings (pupil and iris borders).
    """
    thetas = _breakpoints([0.0, *theta_keys, theta_max], spacing / radius)[1:]
    dirs = [np.array([[0.0, 0.0, 1.0]])]
    th = [np.zeros(1)]
    rings, angles = [np.array([0])], [np.zeros(1)]
    next_id = 1
    tris = []
    for k, t in enumerate(thetas):
        n = max(6, int(round(2 * np.pi * radius * np.sin(t) / spacing)))
        phi = (np.arange(n) + 0.5 * (k % 2)) * 2 * np.pi / n
        ids = next_id + np.arange(n)
        next_id += n
        dirs.append(np.stack([np.sin(t) * np.cos(phi), np.sin(t) * np.sin(phi), np.full(n, np.cos(t))], 1))
        th.append(np.full(n, t))
        if k == 0:
            tris.append(np.stack([np.zeros(n, np.int64), ids, np.roll(ids, -1)], 1))
        else:
            tris.append(zipper(rings[-1], angles[-1], ids, phi))
        rings.append(ids)
        angles.append(phi)
    return CapTopology(directions=np.concatenate(dirs), theta=np.concatenate(th), triangles=np.concatenate(tris))
