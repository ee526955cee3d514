"""Albedo (per-vertex linear RGB in [0, 1]) of the procedural face: mean colours and smooth colour components."""
from __future__ import annotations


import numpy as np

from . import procedural_components as pc
from . import procedural_mesh as pm
from . import procedural_semantics as sem
from . import procedural_shape as ps

SKIN = np.array([0.70, 0.49, 0.41])
BROW = np.array([0.26, 0.18, 0.13])
LIP = np.array([0.62, 0.37, 0.35])
SCLERA = np.array([0.86, 0.84, 0.80])
IRIS = np.array([0.33, 0.21, 0.12])
PUPIL = np.array([0.03, 0.03, 0.03])
MOUTH = np.array([0.20, 0.06, 0.06])
TEETH = np.array([0.82, 0.79, 0.70])
LASH = np.array([0.12, 0.09, 0.08])

IRIS_DEG, PUPIL_DEG = 27.0, 9.0


class _Masks:
    """Soft region masks on every vertex (0 where a region does not apply)."""

    def __init__(self, spec, topo, labels):
        g = topo.grid
        V = topo.n_vertices
        nf = topo.n_face
        u, y = g.uv[:, 0], g.uv[:, 1]
        self.face = np.zeros(V)
        self.face[:nf] = 1.0
        self.brow = np.zeros(V)
        self.brow[:nf] = sem.brow_mask(spec, u, y)
        mu, my = spec["mouth_u"], spec["mouth_slit_y"]
        m = u / mu
        dy = y - my
        up_border = sem.upper_vermilion(spec, m)
        low_border = sem.lower_vermilion(spec, m)
        inside = ps.sstep(np.abs(m), 1.02, 0.85)
        lip_up = np.where(dy >= 0, ps.sstep(dy, up_border + 0.8, up_border - 0.6), 0.0)
        lip_low = np.where(dy <= 0, ps.sstep(-dy, low_border + 0.8, low_border - 0.8), 0.0)
        lips = np.clip(inside * (lip_up + lip_low), 0.0, 1.0)
        lips[g.slit == pm.SLIT_MOUTH] = 1.0
        self.lips = np.zeros(V)
        self.lips[:nf] = lips
        # lash line: the upper lid margin and a little above it, a thinner line on the lower lid
        lash = np.zeros(nf)
        for sign in (-1, 1):
            t = (sign * u - spec["eye_en"]) / (spec["eye_ex"] - spec["eye_en"])
            along = ps.sstep(t, -0.02, 0.12) * ps.sstep(t, 1.08, 0.9)
            d = y - spec["eye_slit_y"]
            upper = (d > 1e-9) | (g.side > 0)
            lash += along * np.where(upper, ps.sstep(d, 2.2, 0.8), 0.45 * ps.sstep(-d, 1.2, 0.3))
        self.lash = np.zeros(V)
        self.lash[:nf] = np.clip(lash, 0.0, 1.0)
        nyy = spec["nose_tip_y"] - spec["nose_tip_r"][1] + 0.5
        self.nostril = np.zeros(V)
        self.nostril[:nf] = np.clip(ps.gauss(u, y, -6.0, nyy, 2.2, 1.3) + ps.gauss(u, y, 6.0, nyy, 2.2, 1.3), 0, 1)
        self.cheeks = np.zeros(V)
        self.cheeks[:nf] = (ps.gauss(u, y, -ps.ux(38.0), -32.0, 13.0, 11.0)
                            + ps.gauss(u, y, ps.ux(38.0), -32.0, 13.0, 11.0))
        self.nose_red = np.zeros(V)
        self.nose_red[:nf] = ps.gauss(u, y, 0.0, -30.0, 10.0, 10.0)
        self.under_eye = np.zeros(V)
        self.under_eye[:nf] = (ps.gauss(u, y, -spec["eye_u"], -8.5, 11.0, 4.0)
                               + ps.gauss(u, y, spec["eye_u"], -8.5, 11.0, 4.0))
        self.beard = np.zeros(V)
        self.beard[:nf] = (ps.sstep(y, -38.0, -50.0) * ps.sstep(np.abs(u), 105.0, 85.0)
                           * (1.0 - lips) * ps.sstep(y, -150.0, -128.0))
        self.skin = self.face * (1.0 - self.lips) * (1.0 - self.brow) * (labels > 0) + self.face * (labels == 0)
        self.skin[:nf][g.slit == pm.SLIT_EYE_LEFT] = 0.5
        self.skin[:nf][g.slit == pm.SLIT_EYE_RIGHT] = 0.5
        # eyeballs
        self.iris = np.zeros(V)
        self.pupil = np.zeros(V)
        self.sclera = np.zeros(V)
        for offset, cap in topo.eye_caps:
            th = np.degrees(cap.theta)
            sl = slice(offset, offset + len(th))
            self.pupil[sl] = ps.sstep(th, PUPIL_DEG + 0.8, PUPIL_DEG - 0.8)
            self.iris[sl] = ps.sstep(th, IRIS_DEG + 1.0, IRIS_DEG - 1.0) * (1.0 - self.pupil[sl])
            self.sclera[sl] = 1.0 - self.iris[sl] - self.pupil[sl]
        self.limbus = np.zeros(V)
        for offset, cap in topo.eye_caps:
            th = np.degrees(cap.theta)
            self.limbus[offset:offset + len(th)] = np.exp(-0.5 * ((th - IRIS_DEG + 2.0) / 2.5) ** 2)
        # cavity: depth fraction; teeth just behind the lips
        self.cavity = np.zeros(V)
        self.teeth = np.zeros(V)
        L = len(topo.cavity_loop)
        for k in range(topo.cavity_rings):
            sl = slice(topo.cavity_offset + k * L, topo.cavity_offset + (k + 1) * L)
            self.cavity[sl] = (k + 1) / topo.cavity_rings
            if k in (0, 1) or (k == 2 and topo.cavity_rings > 6):
                across = np.clip(1.0 - np.abs(topo.loop_m) / 0.75, 0.0, 1.0) ** 0.5
                self.teeth[sl] = across * np.where(topo.loop_side > 0, 1.0, 0.55 * (k > 0))
        self.cavity[topo.cavity_cap] = 1.0


def mean_albedo(spec, topo, labels):
    M = _Masks(spec, topo, labels)
    V = topo.n_vertices
    a = np.tile(SKIN, (V, 1))
    a = a + 0.05 * M.cheeks[:, None] * np.array([1.0, -0.4, -0.3])
    a = a + 0.04 * M.nose_red[:, None] * np.array([1.0, -0.3, -0.2])
    a = a - 0.05 * M.under_eye[:, None] * np.array([0.9, 1.0, 0.8])
    a = a * (1 - 0.8 * M.brow[:, None]) + 0.8 * BROW * M.brow[:, None]
    a = a * (1 - 0.85 * M.lips[:, None]) + 0.85 * LIP * M.lips[:, None]
    a = a * (1 - 0.9 * M.lash[:, None]) + 0.9 * LASH * M.lash[:, None]
    a = a * (1 - 0.6 * M.nostril[:, None]) + 0.6 * np.array([0.25, 0.12, 0.10]) * M.nostril[:, None]
    eye = (M.sclera + M.iris + M.pupil) > 0
    a[eye] = (SCLERA * M.sclera[eye, None] + IRIS * M.iris[eye, None] + PUPIL * M.pupil[eye, None])
    a[eye] = a[eye] * (1.0 - 0.35 * M.limbus[eye, None])
    cav = np.arange(V) >= topo.cavity_offset
    dark = MOUTH[None] * (1.0 - 0.6 * M.cavity[cav, None])
    a[cav] = dark * (1 - M.teeth[cav, None]) + TEETH * M.teeth[cav, None]
    return np.clip(a, 0.0, 1.0), M


NAMED_ALBEDO = ["skin_tone", "warm_cool", "olive", "lip_redness", "lip_darkness", "brow_darkness", "brow_colour",
                "iris_colour", "iris_lightness", "cheek_redness", "nose_forehead_redness", "under_eye_darkness",
                "beard_shadow", "sclera_tint", "lash_darkness"]


def albedo_basis(spec, topo, labels, masks, mean_shape, count: int, seed: int) -> np.ndarray:
    """(V, 3, count) albedo change per unit coefficient."""
    M = masks
    V = topo.n_vertices
    skin = M.skin[:, None]
    tone_skin = (M.face * (1.0 - 0.7 * M.brow))[:, None]
    cols = [
        -tone_skin * np.array([0.11, 0.10, 0.092]),  # light to dark (lips and brows follow partly)
        skin * np.array([0.02, -0.002, -0.014]),  # warm (reddish) / cool
        skin * np.array([0.0, 0.012, -0.012]),  # olive / yellow
        M.lips[:, None] * np.array([0.07, -0.04, -0.02]),
        -M.lips[:, None] * np.array([0.08, 0.06, 0.05]),
        -M.brow[:, None] * np.array([0.06, 0.045, 0.035]),
        M.brow[:, None] * np.array([0.08, 0.05, 0.01]),
        (M.iris * (1 - M.pupil))[:, None] * np.array([-0.09, 0.02, 0.12]),
        (M.iris * (1 - M.pupil))[:, None] * np.array([0.06, 0.06, 0.05]),
        M.cheeks[:, None] * np.array([0.05, -0.02, -0.015]),
        (M.nose_red + 0.5 * M.face * _forehead(topo))[:, None] * np.array([0.04, -0.01, -0.01]),
        -M.under_eye[:, None] * np.array([0.04, 0.045, 0.03]),
        -M.beard[:, None] * np.array([0.045, 0.04, 0.03]),
        M.sclera[:, None] * np.array([0.0, -0.02, -0.05]),
        -M.lash[:, None] * np.array([0.04, 0.03, 0.03]),
    ]
    out = np.zeros((V, 3, count))
    for k in range(min(count, len(cols))):
        out[:, :, k] = cols[k]
    # beyond the named ones: smooth blotches (freckle-like, redness, pigment), smaller and smaller
    face_ids = np.nonzero(M.face * (mean_shape[:, 2] > -40.0) > 0)[0]
    sq = np.sum(mean_shape ** 2, 1)
    for k in range(len(cols), count):
        rng = pc.random_component_rng(seed, 2, k)
        scale = 0.016 * 0.985 ** (k - len(cols))
        n_blobs = int(rng.integers(3, 9))
        sigma_lo = 4.0 if k % 3 == 0 else 9.0
        centres, sigmas, weights = [], [], []
        for _ in range(n_blobs):
            c = mean_shape[face_ids[rng.integers(len(face_ids))]]
            sigma = rng.uniform(sigma_lo, sigma_lo + 16.0)
            centres.append(c)
            sigmas.append(sigma)
            weights.append(rng.normal())
            if rng.random() < 0.5:  # mirrored blob: faces are roughly symmetric
                centres.append(c * np.array([-1.0, 1.0, 1.0]))
                sigmas.append(sigma)
                weights.append(rng.normal())
        field = _blobs(mean_shape, sq, np.array(centres), np.array(sigmas), np.array(weights))
        field /= max(np.abs(field).max(), 1e-9)
        colour = np.array([0.9, 0.75, 0.6]) * rng.normal() + np.array([1.0, -0.3, -0.3]) * 0.6 * rng.normal()
        colour /= max(np.linalg.norm(colour), 1e-9)
        out[:, :, k] = scale * field[:, None] * colour[None] * M.skin[:, None]
    return out


def _blobs(points, sq, centres, sigmas, weights):
    """sum_k weights[k] exp(-|p - centres[k]|^2 / (2 sigmas[k]^2)) for all points (V, 3) at once."""
    d2 = sq[:, None] - 2.0 * points @ centres.T + np.sum(centres ** 2, 1)[None]
    return np.exp(-0.5 * np.maximum(d2, 0.0) / sigmas[None] ** 2) @ weights


def _forehead(topo):
    V = topo.n_vertices
    f = np.zeros(V)
    y = topo.grid.uv[:, 1]
    f[:topo.n_face] = ps.sstep(y, 25.0, 45.0) * ps.sstep(np.abs(topo.grid.uv[:, 0]), 60.0, 40.0)
    return f
