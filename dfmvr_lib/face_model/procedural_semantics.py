"""Part labels, landmarks and the evaluation region of the procedural face (docs/conventions.md).

Everything is chosen on the mean face from canonical (tissue) coordinates, so landmarks follow their features
under every identity and expression component.
"""
from __future__ import annotations

import math

import numpy as np

from . import procedural_mesh as pm
from . import procedural_shape as ps

SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = 1, 2, 3, 4, 5, 6, 7, 8, 9


def brow_curve(spec, au):
    """Brow centre line y at |u| (tissue coordinates) and its half thickness."""
    t = np.clip((au - spec["brow_u0"]) / (spec["brow_u1"] - spec["brow_u0"]), 0.0, 1.0)
    y = spec["brow_y"] + 4.0 * np.sin(math.pi * np.clip(t * 1.1, 0.0, 1.0)) ** 1.2 - 2.5 * t ** 3
    half = 3.4 * (1.0 - 0.5 * t) + 0.4
    return y, half


def brow_mask(spec, u, y):
    """Soft brow coverage in [0, 1] at tissue coordinates."""
    au = np.abs(u)
    yc, half = brow_curve(spec, au)
    along = ps.sstep(au, spec["brow_u0"] - 3.0, spec["brow_u0"] + 2.0) * ps.sstep(au, spec["brow_u1"] + 3.0,
                                                                                 spec["brow_u1"] - 4.0)
    across = ps.sstep(np.abs(y - yc), half + 1.2, half - 1.2)
    return along * across


def upper_vermilion(spec, m):
    inside = np.clip(1.0 - m * m, 0.0, None)
    return spec["lip_up_h"] * inside ** 0.35 * (1.0 - 0.12 * np.exp(-0.5 * (m / 0.08) ** 2)
                                                + 0.06 * np.exp(-0.5 * ((np.abs(m) - 0.2) / 0.1) ** 2))


def lower_vermilion(spec, m):
    return spec["lip_low_h"] * np.clip(1.0 - m * m, 0.0, None) ** 0.45


def part_labels(spec, topo, info, mean) -> np.ndarray:
    g = topo.grid
    u, y = g.uv[:, 0], g.uv[:, 1]
    V = topo.n_vertices
    labels = np.zeros(V, np.int64)
    face = np.full(len(u), SKIN)
    # neck (below the jaw line) and behind the ears: background class
    au = np.abs(u)
    jaw_line = (ps._interp_knots(au, spec["jaw_u"], spec["jaw_y"])
                + 0.8 * ps._interp_knots(au, spec["jaw_wu"], spec["jaw_w"]))
    face[y < jaw_line] = 0
    face[au > spec["ear_u"]] = 0
    # brows
    bm = brow_mask(spec, u, y) > 0.5
    face[bm & (u < 0)] = LEFT_BROW
    face[bm & (u > 0)] = RIGHT_BROW
    # nose: where the nose primitive dominates, plus the bridge between the eyes
    nose = (info["nose"] - info["bone"] > 0.8) & (y < spec["nose_n_y"]) & (y > spec["nose_sn_y"] - 3.0)
    nose |= (np.abs(u) < 7.5) & (y < spec["nose_n_y"]) & (y > spec["nose_tip_y"])
    face[nose] = NOSE
    # lips (vermilion), the slit edges included
    mu = spec["mouth_u"]
    m = u / mu
    dy = y - spec["mouth_slit_y"]
    inside = np.abs(m) < 1.0
    up = inside & (((dy > 1e-9) & (dy <= upper_vermilion(spec, m) + 0.3)) | (g.side > 0) & (g.slit == pm.SLIT_MOUTH))
    low = inside & (((dy < -1e-9) & (-dy <= lower_vermilion(spec, m) + 0.3)) | (g.side < 0) & (g.slit == pm.SLIT_MOUTH))
    face[up] = UPPER_LIP
    face[low] = LOWER_LIP
    # lid margins belong to the eyes
    face[g.slit == pm.SLIT_EYE_LEFT] = LEFT_EYE
    face[g.slit == pm.SLIT_EYE_RIGHT] = RIGHT_EYE
    labels[:topo.n_face] = face
    for (offset, cap), lab in zip(topo.eye_caps, (LEFT_EYE, RIGHT_EYE)):
        labels[offset:offset + len(cap.directions)] = lab
    labels[topo.cavity_offset:] = MOUTH
    return labels


def evaluation_region(spec, topo, labels, mean) -> np.ndarray:
    """Front face: forehead to chin, ear to ear in front of the ears; no neck, no cavity, no eyeball backs."""
    g = topo.grid
    u, y = g.uv[:, 0], g.uv[:, 1]
    region = np.zeros(topo.n_vertices, bool)
    face = (labels[:topo.n_face] > 0) & (y < spec["hairline_y"]) & (np.abs(u) < spec["ear_u"] - 10.0)
    region[:topo.n_face] = face
    for (offset, cap), sign in zip(topo.eye_caps, (-1, 1)):
        region[offset:offset + len(cap.directions)] = cap.theta < math.radians(50.0)
    return region


def _nearest(uv, candidates, target, exclude=()):
    ids = np.nonzero(candidates)[0]
    if len(exclude):
        free = ids[~np.isin(ids, np.fromiter(exclude, np.int64))]
        ids = free if len(free) else ids
    d = np.sum((uv[ids] - np.asarray(target)[None]) ** 2, 1)
    return int(ids[np.argmin(d)])


class _Picker:
    """Chooses landmark vertices on the face sheet by canonical (tissue) coordinates, each vertex at most once
    (landmarks stay distinct): ``used`` holds the face vertex ids taken so far."""

    def __init__(self, spec, topo):
        self.spec = spec
        self.grid = topo.grid
        self.uv = topo.grid.uv
        self.plain = (self.grid.side == 0) & (self.grid.slit == 0)   # off the slits (lid and lip edges)
        self.used: set = set()

    def at(self, uu, yy, mask=None):
        """Nearest vertex of ``mask`` (default: the plain sheet) to the canonical point (uu, yy), never one already
        taken; marks it taken."""
        vid = _nearest(self.uv, self.plain if mask is None else mask, (uu, yy), self.used)
        self.used.add(vid)
        return vid

    def slit_vertex(self, sid, uu, want_side):
        """Nearest vertex at |u| = ``uu`` on slit ``sid``'s edge ``want_side`` (+1 upper, -1 lower, 0 the corners);
        may repeat a taken vertex and does not mark it."""
        g = self.grid
        m = (g.slit == sid) & ((g.side == want_side) | (g.side == 0))
        slit_y = self.spec["eye_slit_y"] if sid != pm.SLIT_MOUTH else self.spec["mouth_slit_y"]
        return _nearest(self.uv, m, (uu, slit_y))


def landmarks(spec, topo, labels, mean):
    """(landmark_68, landmark_101, alignment_7) vertex ids on the mean face.

    ``landmark_68`` (68,) iBUG order; ``landmark_101`` (101,) = the 51 inner iBUG points 17-67 then 50 extra
    semantic points (:func:`_extra_landmarks`); ``alignment_7`` (7,) = iBUG 36, 39, 42, 45, 30, 48, 54 (eye corners,
    nose tip, mouth corners). ``labels`` (V,) the part labels, ``mean`` (V, 3) the mean face (construction frame).
    """
    pick = _Picker(spec, topo)
    lm = np.zeros(68, np.int64)
    _jaw_landmarks(lm, pick, labels, mean, topo)
    _brow_and_nose_landmarks(lm, pick, mean)
    _eye_landmarks(lm, pick)
    _mouth_landmarks(lm, pick, labels[:topo.n_face])
    pick.used.update(int(i) for i in lm)
    extra = _extra_landmarks(pick, topo, labels[:topo.n_face], mean)
    lm101 = np.concatenate([lm[17:68], extra])
    align = lm[[36, 39, 42, 45, 30, 48, 54]]
    return lm, lm101, align


def _jaw_landmarks(lm, pick, labels, mean, topo):
    """iBUG 0-16, the jaw contour: frontal outline of the labelled face, swept from the image-left side through
    the chin."""
    g, nf = pick.grid, topo.n_face
    skin = labels[:nf] > 0
    skin &= (g.slit == 0)
    centre = np.array([0.0, -30.0])
    rel = mean[:nf, :2] - centre
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    rad = np.hypot(rel[:, 0], rel[:, 1])
    front = _normals(mean, topo.triangles)[:nf, 2] > 0.02
    for j, a_deg in enumerate(np.linspace(165.0, 375.0, 17)):
        a = math.radians(a_deg)
        diff = np.angle(np.exp(1j * (ang - a)))
        cand = skin & front & (np.abs(diff) < math.radians(2.5))
        ids = np.nonzero(cand)[0]
        lm[j] = ids[np.argmax(rad[ids])]
        if j == 8:  # the chin point sits on the midline: lowest labelled face vertex of the middle column
            mid = np.nonzero(skin & (np.abs(pick.uv[:, 0]) < 0.5))[0]
            lm[j] = mid[np.argmin(mean[mid, 1])]
        pick.used.add(int(lm[j]))


def _brow_and_nose_landmarks(lm, pick, mean):
    """iBUG 17-26 (brows: upper-middle of the brow band, image-left outer to inner, then inner to outer), 27-30
    (nose bridge to tip) and 31-35 (nose base, with the subnasale at 33)."""
    spec, at, plain = pick.spec, pick.at, pick.plain
    u, y = pick.uv[:, 0], pick.uv[:, 1]
    bu = np.linspace(spec["brow_u1"] - 2.0, spec["brow_u0"] + 1.0, 5)
    by, half = brow_curve(spec, bu)
    for k in range(5):
        lm[17 + k] = at(-bu[k], by[k] + 0.35 * half[k])
        lm[26 - k] = at(bu[k], by[k] + 0.35 * half[k])
    ny, ty = spec["nose_n_y"], spec["nose_tip_y"]
    for k, yy in enumerate(np.linspace(ny - 5.0, ty, 4)):
        lm[27 + k] = at(0.0, yy)
    lm[30] = _tip(mean, pick.uv, plain, ty)
    pick.used.update(int(i) for i in lm[27:31])
    base_y = spec["nose_sn_y"] + 1.0
    for k, uu in enumerate((-spec["ala_u"] + 1.0, -5.5, 0.0, 5.5, spec["ala_u"] - 1.0)):
        lm[31 + k] = at(uu, base_y + (0.0 if k == 2 else 1.0 + 1.5 * abs(uu) / spec["ala_u"]))
    # subnasale: the deepest midline point where the columella meets the upper lip
    used = pick.used
    used.discard(int(lm[33]))  # the nose-base pass may have taken it: it is replaced here
    sn = np.nonzero(plain & (np.abs(u) < 2.0) & (np.abs(y - spec["nose_sn_y"]) < 3.0))[0]
    sn = sn[~np.isin(sn, np.fromiter(used, np.int64))] if len(used) else sn
    lm[33] = int(sn[np.argmin(mean[sn, 2])]) if len(sn) else at(0.0, spec["nose_sn_y"])
    used.add(int(lm[33]))


def _eye_landmarks(lm, pick):
    """iBUG 36-47: each eye's fissure corners and its lid margins at 1/3 and 2/3 of the fissure."""
    spec, slit_vertex = pick.spec, pick.slit_vertex
    en, ex = spec["eye_en"], spec["eye_ex"]
    third = (2 * en + ex) / 3.0, (en + 2 * ex) / 3.0
    L, R = pm.SLIT_EYE_LEFT, pm.SLIT_EYE_RIGHT
    lm[36] = slit_vertex(L, -ex, 0)
    lm[37] = slit_vertex(L, -third[1], 1)
    lm[38] = slit_vertex(L, -third[0], 1)
    lm[39] = slit_vertex(L, -en, 0)
    lm[40] = slit_vertex(L, -third[0], -1)
    lm[41] = slit_vertex(L, -third[1], -1)
    lm[42] = slit_vertex(R, en, 0)
    lm[43] = slit_vertex(R, third[0], 1)
    lm[44] = slit_vertex(R, third[1], 1)
    lm[45] = slit_vertex(R, ex, 0)
    lm[46] = slit_vertex(R, third[1], -1)
    lm[47] = slit_vertex(R, third[0], -1)


def _mouth_landmarks(lm, pick, face_labels):
    """iBUG 48-67: the outer contour on the vermilion borders (48-59), the inner contour on the slit edges (60-67).
    ``face_labels`` (Vf,) part labels of the face sheet."""
    spec, at, slit_vertex, plain = pick.spec, pick.at, pick.slit_vertex, pick.plain
    mu, my = spec["mouth_u"], spec["mouth_slit_y"]
    M = pm.SLIT_MOUTH
    lm[48] = slit_vertex(M, -mu, 0)
    lm[54] = slit_vertex(M, mu, 0)
    for k, mm in zip((49, 50, 51, 52, 53), (-0.62, -0.3, 0.0, 0.3, 0.62)):
        lm[k] = at(mm * mu, my + float(upper_vermilion(spec, np.array(mm))), plain & (face_labels == UPPER_LIP))
    for k, mm in zip((55, 56, 57, 58, 59), (0.62, 0.3, 0.0, -0.3, -0.62)):
        lm[k] = at(mm * mu, my - float(lower_vermilion(spec, np.array(mm))), plain & (face_labels == LOWER_LIP))
    step = np.min(np.abs(np.diff(pick.grid.col_u)))
    lm[60] = slit_vertex(M, -mu + 1.01 * step, 1)
    lm[64] = slit_vertex(M, mu - 1.01 * step, 1)
    for k, mm in zip((61, 62, 63), (-0.45, 0.0, 0.45)):
        lm[k] = slit_vertex(M, mm * mu, 1)
    for k, mm in zip((65, 66, 67), (0.45, 0.0, -0.45)):
        lm[k] = slit_vertex(M, mm * mu, -1)


def _extra_landmarks(pick, topo, face_labels, mean):
    """The 50 extra semantic points of the 101 set (50,) int64, in order: forehead, glabella, nasion, lower brow
    edges, pupils, lid creases, infraorbital, nose (alae, nostrils, columella, bridge sides, supratip), zygion,
    cheeks, philtrum, chin, gonion, temples. ``face_labels`` (Vf,) part labels of the face sheet."""
    spec, at, plain = pick.spec, pick.at, pick.plain
    uv = pick.uv
    u, y = uv[:, 0], uv[:, 1]
    ux = ps.ux
    en, ex, ny = spec["eye_en"], spec["eye_ex"], spec["nose_n_y"]
    extra = []
    for uu, yy in ((0.0, 55.0), (-ux(26.0), 50.0), (ux(26.0), 50.0), (-ux(48.0), 40.0), (ux(48.0), 40.0)):
        extra.append(at(uu, yy))  # forehead
    extra.append(at(0.0, 16.0))  # glabella
    extra.append(at(0.0, ny))  # nasion
    for uu in (spec["brow_u0"] + 6.0, 0.5 * (spec["brow_u0"] + spec["brow_u1"]), spec["brow_u1"] - 6.0):
        yy, hh = brow_curve(spec, np.array(uu))
        extra.append(at(-uu, float(yy - 0.5 * hh)))
        extra.append(at(uu, float(yy - 0.5 * hh)))  # lower brow edge
    for (offset, cap) in topo.eye_caps:
        extra.append(offset)  # pupil centres (cap poles)
    for sign in (-1, 1):
        for frac in (0.35, 0.7):
            uu = en + frac * (ex - en)
            extra.append(at(sign * uu, spec["eye_slit_y"] + 9.5))  # upper lid crease
    for sign in (-1, 1):
        extra.append(at(sign * spec["eye_cx"], spec["eye_slit_y"] - 12.0))  # infraorbital
    extra.append(_extreme(mean, uv, plain & (face_labels == NOSE) & (u < 0) & (y < spec["ala_y"] + 4), 0, -1))
    extra.append(_extreme(mean, uv, plain & (face_labels == NOSE) & (u > 0) & (y < spec["ala_y"] + 4), 0, 1))
    nyy = spec["nose_tip_y"] - spec["nose_tip_r"][1] + 0.5
    extra.append(at(-6.0, nyy))
    extra.append(at(6.0, nyy))  # nostrils
    extra.append(at(0.0, 0.5 * (spec["nose_tip_y"] + spec["nose_sn_y"]) - 2.0))  # columella
    extra.append(at(-7.0, -12.0))
    extra.append(at(7.0, -12.0))  # nose bridge sides
    extra.append(at(0.0, spec["nose_tip_y"] + 7.0))  # supratip
    cheek_band = plain & (face_labels == SKIN) & (y > -25) & (y < 0) & (np.abs(u) < 100)
    zy = [_extreme(mean, uv, cheek_band & (u * s > 0), 0, s) for s in (-1, 1)]
    extra.extend(zy)  # zygion
    for uu, yy in ((ux(45.0), -20.0), (ux(38.0), -42.0), (ux(28.0), -52.0), (ux(50.0), -58.0)):
        extra.append(at(-uu, yy))
        extra.append(at(uu, yy))  # malar, mid-cheek, nasolabial fold, buccal
    extra.append(at(-4.5, spec["mouth_slit_y"] + spec["lip_up_h"] + 4.0))
    extra.append(at(4.5, spec["mouth_slit_y"] + spec["lip_up_h"] + 4.0))  # philtrum columns
    extra.append(at(0.0, -84.0))  # mentolabial sulcus
    extra.append(at(0.0, spec["chin_y"]))  # pogonion
    extra.append(at(0.0, -109.0))  # gnathion
    extra.append(at(-16.0, -104.0))
    extra.append(at(16.0, -104.0))  # chin sides
    go_u = 100.0
    go_y = float(ps._interp_knots(np.array(go_u), spec["jaw_u"], spec["jaw_y"])) + 8.0
    extra.append(at(-go_u, go_y))
    extra.append(at(go_u, go_y))  # gonion
    extra.append(at(-ux(62.0), 22.0))
    extra.append(at(ux(62.0), 22.0))  # temples
    return np.array(extra, np.int64)


def _normals(p, t):
    fn = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _tip(mean, uv, mask, tip_y):
    ids = np.nonzero(mask & (np.abs(uv[:, 0]) < 3.0) & (np.abs(uv[:, 1] - tip_y) < 8.0))[0]
    return int(ids[np.argmax(mean[ids, 2])])


def _extreme(mean, uv, mask, axis, sign):
    ids = np.nonzero(mask)[0]
    return int(ids[np.argmax(sign * mean[ids, axis])])
