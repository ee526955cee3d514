"""Geometry of the procedural face: an analytic head built from smooth primitives on a base prism.

Everything here is plain numpy and deterministic. Frame: x right (subject's left), y up, z towards the camera,
millimetres; during construction y = 0 is the line of the eye corners and z = 0 is near the corneal apices (the
model is re-centred at the end).

How a face vertex is placed (``embed_face``):

1. its tissue coordinate ``c = (u, y)`` (fixed per vertex) slides by the expression field to ``c' = c + d(c)``
   (lids open/close, brows rise, mouth corners pull ...);
2. the skin height ``H`` above a fixed base prism is the smooth union of bone-like primitives cast at ``c'``
   (skull, midface, lower face, jaw angles, neck, with sockets, brow ridge, cheekbones, chin) and of the nose cast
   at ``c``, plus soft tissue at ``c`` (lips, philtrum, brows, folds, puffs);
3. the identity warp moves ``c'`` to ``s = W(c')`` on the prism (eye spacing, nose length, face proportions);
4. ``p = B(s) + H N(s)`` with the prism point ``B`` and its horizontal outward normal ``N``; around the eyes ``H`` is
   blended with the height of the (spatial) eyeball so the lids drape over it and their margins touch it;
5. the jaw rotation (and its soft weight) is applied in 3D.
"""
from __future__ import annotations

import math

import numpy as np

BIG = 1.0e3


# ----------------------------------------------------------------------------------------------------------------
# small smooth helpers
def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def sstep(x, lo, hi):
    """0 below ``lo``, 1 above ``hi``, C1 in between (``lo > hi`` gives the reversed step)."""
    return smoothstep((x - lo) / (hi - lo))


def smax(a, b, k):
    """Polynomial smooth maximum with blend width ``k`` (exact max when |a - b| > k)."""
    h = np.clip(0.5 + 0.5 * (a - b) / k, 0.0, 1.0)
    return b + (a - b) * h + k * h * (1.0 - h)


def smin(a, b, k):
    return -smax(-a, -b, k)


def gauss(u, y, cu, cy, su, sy):
    return np.exp(-0.5 * (((u - cu) / su) ** 2 + ((y - cy) / sy) ** 2))


def bump(u, y, cu, cy, su, sy):
    """Compact C1 bump: (1 - r^2)^2 inside the ellipse of semi-axes (su, sy), 0 outside."""
    r2 = ((u - cu) / su) ** 2 + ((y - cy) / sy) ** 2
    return np.clip(1.0 - r2, 0.0, None) ** 2


# ----------------------------------------------------------------------------------------------------------------
# base prism: a superellipse section, parametrised by arc length u
class BaseSection:
    """Superellipse |x/a|^n + |(z + c)/c|^n = 1 (front at z = 0), tabulated by signed arc length ``u``."""

    def __init__(self, a: float = 68.0, c: float = 78.0, n: float = 2.5, samples: int = 8000):
        psi = np.linspace(0.0, 0.85 * math.pi, samples)
        s, co = np.sin(psi), np.cos(psi)
        x = a * np.abs(s) ** (2.0 / n)
        z = -c + c * np.sign(co) * np.abs(co) ** (2.0 / n)
        seg = np.hypot(np.diff(x), np.diff(z))
        u = np.concatenate([[0.0], np.cumsum(seg)])
        # resample uniformly in arc length
        self.u = np.linspace(0.0, u[-1], samples)
        self.x = np.interp(self.u, u, x)
        self.z = np.interp(self.u, u, z)
        tx = np.gradient(self.x, self.u)
        tz = np.gradient(self.z, self.u)
        norm = np.hypot(tx, tz)
        self.tx, self.tz = tx / norm, tz / norm
        # outward normal: the tangent at u = 0 is (1, 0) and outward there is (0, 1), i.e. (-tz, tx)
        self.nx, self.nz = -self.tz, self.tx
        self.u_max = float(self.u[-1])

    def __call__(self, u):
        """(x, z, nx, nz, tx, tz) at signed arc length ``u`` (mirrored for u < 0; linear in the uniform table)."""
        if not hasattr(self, "_cols"):
            cols = [self.x, self.z, self.nx, self.nz, self.tx, self.tz]
            self._cols = [(c[:-1].copy(), np.diff(c)) for c in cols]
            self._inv_step = 1.0 / float(self.u[1] - self.u[0])
        au = np.abs(u)
        a = au * self._inv_step
        i = np.minimum(a.astype(np.int64), len(self.u) - 2)
        t = np.clip(a - i, 0.0, 1.0)
        x, z, nx, nz, tx, tz = (c0[i] + d[i] * t for c0, d in self._cols)
        sg = np.where(u < 0, -1.0, 1.0)
        return x * sg, z, nx * sg, nz, tx, tz * sg

    def u_at_x(self, x: float) -> float:
        """Front arc length where the section reaches |x| (front half only)."""
        front = self.nz > 0
        return float(np.interp(abs(x), self.x[front], self.u[front])) * (1 if x >= 0 else -1)


BASE = BaseSection()


def ray_ellipsoid(ox, oy, oz, dx, dz, centre, axes, yaw: float = 0.0):
    """Signed distance along horizontal rays (dx, 0, dz) from (ox, oy, oz) to the outer side of an ellipsoid.

    Where the ray misses, the value continues smoothly past the silhouette (the root formula with a signed square
    root), so unions of primitives never jump. ``yaw`` rotates the ellipsoid about its vertical axis.
    """
    cx, cy, cz = centre
    ax, ay, az = axes
    px, pz = ox - cx, oz - cz
    if yaw:
        cs, sn = math.cos(yaw), math.sin(yaw)
        px, pz = cs * px - sn * pz, sn * px + cs * pz
        dx, dz = cs * dx - sn * dz, sn * dx + cs * dz
    q = 1.0 - ((oy - cy) / ay) ** 2
    A = (dx / ax) ** 2 + (dz / az) ** 2
    B = 2.0 * (px * dx / ax ** 2 + pz * dz / az ** 2)
    C = (px / ax) ** 2 + (pz / az) ** 2 - q
    disc = B * B - 4.0 * A * C
    root = np.sign(disc) * np.sqrt(np.abs(disc))
    return (-B + root) / (2.0 * A)


# ----------------------------------------------------------------------------------------------------------------
# the mean face specification (mm); identity and expression components perturb these numbers
def mean_spec() -> dict:
    """The mean face's parameters: every entry the construction reads, so its keys are the known spec keys (the
    named components of :mod:`.procedural_components` move only these)."""
    return dict(
        # bone-like primitives (canonical frame)
        skull_c=(0.0, 32.0, -95.0), skull_a=(79.0, 100.0, 105.0),
        mid_c=(0.0, -25.0, -62.0),  mid_a=(68.0, 55.0, 70.0),
        low_c=(0.0, -78.0, -70.0), low_a=(61.0, 52.0, 72.0),
        neck_z=-108.0, neck_r=(57.0, 60.0),
        k_union=10.0,
        # jaw line (face / neck border) y at |u| knots
        jaw_u=(0.0, 20.0, 40.0, 60.0, 80.0, 95.0, 105.0, 115.0, 130.0, 150.0),
        jaw_y=(-123.0, -122.0, -117.0, -107.0, -97.0, -90.0, -83.0, -70.0, -50.0, -36.0),
        jaw_wu=(0.0, 30.0, 60.0, 100.0), jaw_w=(10.0, 9.0, 7.0, 6.0),
        sub_u=(0.0, 40.0, 90.0, 120.0, 170.0), sub_dy=(19.0, 20.0, 22.0, 25.0, 26.0),
        sub_ang=(22.0, 22.0, 27.0, 38.0, 45.0), jaw_round=10.0, neck_round=12.0, jaw_corner=4.0,
        chin=0.0, chin_y=-100.0, arch_scale=1.0,
        prof_y=(-16.0, -28.0, -36.0, -41.0, -46.0, -51.0, -57.0, -63.0, -68.0, -74.0, -80.0, -86.0, -93.0, -100.0,
                -105.0,
                -109.0, -113.0, -118.0, -124.0, -132.0),
        prof_z=(-40.0, -6.0, 5.0, 10.0, 11.0, 11.3, 10.0, 8.0, 7.5, 6.5, 3.5, 3.0, 5.5, 7.0, 5.5, 2.0, -4.0, -13.0,
                -28.0, -60.0),
        socket=11.0, brow_ridge=2.5, brow_ridge_y=17.0, glabella=2.0, cheekbone=2.5, zygoma=3.0, temple=0.5, buccal=0.0,
        malar_fat=3.0, buccal_fat=2.5, masseter=1.0, temple_fill=4.0, mandible=3.0,
        # eyes
        eye_u=31.0, eye_cx=30.5, eye_y=1.0, eye_depth=-13.5, eye_axes=(18.0, 14.5, 12.0), eye_yaw=0.12,
        eye_slit_y=0.0, lid_up=4.4, lid_low=5.4, eye_en=15.5, eye_ex=45.0,
        # nose (tissue)
        nose_n_y=9.0, nose_tip_y=-33.5, nose_sn_y=-44.0, nose_tip_z=31.0, nose_root_z=12.0,
        nose_bridge_w=4.0, nose_slope=1.35, nose_tip_r=(9.0, 6.0, 8.5), ala_u=11.5, ala_y=-37.0,
        ala_r=(6.5, 5.5, 7.5), ala_z=13.0, nostril=4.5, nose_hump=0.0,
        # mouth (tissue)
        mouth_slit_y=-65.0, mouth_u=25.5, mouth_gap=1.6, lip_up_h=8.5, lip_low_h=10.0, lip_up=5.5,
        lip_low=6.5,
        philtrum=1.0, lip_protrusion=0.0, cheek_fat=3.5,
        cavity_depth=28.0, cavity_up=9.0, cavity_down=12.0,
        # brows (tissue)
        brow_y=15.0, brow_u0=17.0, brow_u1=58.0, ear_u=118.0, hairline_y=72.0,
        # identity warps of the tissue (mm; eye size and canthal tilt are slopes, mm per mm; 0 = none)
        w_eye_spacing=0.0, w_eye_size=0.0, w_eye_height=0.0, w_canthal=0.0, w_nose_length=0.0, w_upper_lip=0.0,
        w_lower_face=0.0, w_forehead=0.0, w_mouth_width=0.0, w_nose_width=0.0, w_asym=0.0,
        # expressions (0 = neutral): jaw rotation (radians) about the pivot and sideways shift, lids, brows, mouth
        jaw_open=0.0, jaw_pivot=(-12.0, -80.0), jaw_evert=80.0, jaw_x=0.0,
        close_l=0.0, close_r=0.0, squint_l=0.0, squint_r=0.0,
        brow_in_l=0.0, brow_in_r=0.0, brow_out_l=0.0, brow_out_r=0.0, frown=0.0,
        smile_l=0.0, smile_r=0.0, stretch=0.0, corner_down=0.0, mouth_x=0.0, pucker=0.0, funnel=0.0, press=0.0,
        upper_raise=0.0, lower_depress=0.0, puff=0.0, puff_l=0.0, puff_r=0.0, wrinkle=0.0, sneer_l=0.0,
        sneer_r=0.0,
    )


def ux(x: float) -> float:
    """Canonical u of the front point of the base section at |x| (sign kept)."""
    return BASE.u_at_x(x)


def _interp_knots(x, knots_x, knots_y):
    """Smooth monotone cubic (PCHIP-like) interpolation through knots, constant outside their range."""
    kx = np.asarray(knots_x, float)
    ky = np.asarray(knots_y, float)
    order = np.argsort(kx)
    kx, ky = kx[order], ky[order]
    h = np.diff(kx)
    d = np.diff(ky) / h
    m = np.zeros_like(ky)
    same = d[:-1] * d[1:] > 0
    safe0 = np.where(same, d[:-1], 1.0)
    safe1 = np.where(same, d[1:], 1.0)
    m[1:-1] = np.where(same, 2.0 / (1.0 / safe0 + 1.0 / safe1), 0.0)
    xc = np.clip(x, kx[0], kx[-1])
    i = np.clip(np.searchsorted(kx, xc) - 1, 0, len(kx) - 2)
    t = (xc - kx[i]) / h[i]
    h00 = (1 + 2 * t) * (1 - t) ** 2
    h10 = t * (1 - t) ** 2
    h01 = t * t * (3 - 2 * t)
    h11 = t * t * (t - 1)
    return h00 * ky[i] + h10 * h[i] * m[i] + h01 * ky[i + 1] + h11 * h[i] * m[i + 1]


def lid_profiles(t):
    """Opening profiles (upper, lower) over the fissure, t = 0 inner corner .. 1 outer corner, peak 1."""
    t = np.clip(t, 0.0, 1.0)
    up = np.sin(math.pi * t ** 0.87) ** 0.75
    low = np.sin(math.pi * t ** 1.16) ** 0.75
    return up, low


def eye_slide(spec, u, y, side, sign: int, close: float = 0.0, squint: float = 0.0):
    """Vertical tissue slide that opens the fissure of one eye (sign -1: left = x < 0, +1: right).

    ``close``: fraction of closure (1 = the lids meet along a line a little below the middle of the fissure);
    ``squint``: fraction by which the lower lid rises towards that line.
    """
    en, ex = spec["eye_en"], spec["eye_ex"]
    t = (sign * u - en) / (ex - en)
    inside = (t > 0) & (t < 1)
    p_up, p_low = lid_profiles(t)
    p_up = np.where(inside, p_up, 0.0)
    p_low = np.where(inside, p_low, 0.0)
    dy = y - spec["eye_slit_y"]
    upper = (dy > 1e-9) | (side > 0)
    lower = (dy < -1e-9) | (side < 0)
    open_up = spec["lid_up"] * p_up
    open_low = -spec["lid_low"] * p_low
    meet = 0.3 * open_low + 0.2 * open_up
    up_pos = open_up + close * (meet - open_up)
    low_pos = open_low + (close + squint) * (meet - open_low)
    g_up = np.exp(-0.5 * (dy / 9.0) ** 2)
    g_low = np.exp(-0.5 * (dy / 7.0) ** 2)
    return np.where(upper, up_pos * g_up, 0.0) + np.where(lower, low_pos * g_low, 0.0)


def mouth_slide(spec, u, y, side, gap_extra: float = 0.0):
    """Vertical tissue slide that parts the lips by ``mouth_gap`` (+ ``gap_extra``) at the middle."""
    mu = spec["mouth_u"]
    t = np.clip((u + mu) / (2.0 * mu), 0.0, 1.0)
    prof = np.sin(math.pi * t) ** 0.6
    dy = y - spec["mouth_slit_y"]
    upper = (dy > 1e-9) | (side > 0)
    lower = (dy < -1e-9) | (side < 0)
    half = 0.5 * (spec["mouth_gap"] + gap_extra) * prof
    g = np.exp(-0.5 * (dy / 4.0) ** 2)
    return np.where(upper, half * g, 0.0) - np.where(lower, half * g, 0.0)


def jaw_weight(spec, u, y, side):
    """How much a face vertex follows the jaw (0 above the mouth line, 1 on the chin), cut along the lips."""
    mu = spec["mouth_u"]
    ym = spec["mouth_slit_y"]
    au = np.abs(u)
    # the border rises from the mouth corners back towards the jaw joint in front of the ear
    border = ym + np.clip(au - mu, 0.0, None) * 0.55
    width = np.minimum(1.2 + 0.3 * np.clip(au - mu + 2.0, 0.0, None), 10.0)
    w = sstep(border - y, -width, width)
    on_slit = (side != 0) & (np.abs(y - ym) < 1e-6)
    w = np.where(on_slit, np.where(side < 0, 1.0, 0.0), w)
    # the neck follows less, the region behind the jaw joint not at all
    w = w * (1.0 - 0.6 * sstep(y, -118.0, -150.0)) * (1.0 - sstep(au, 95.0, 120.0))
    return w


def rotate_about_x(p, pivot, angle):
    cy, cz = pivot
    c, s = math.cos(angle), math.sin(angle)
    y = p[..., 1] - cy
    z = p[..., 2] - cz
    out = p.copy()
    out[..., 1] = cy + c * y - s * z
    out[..., 2] = cz + s * y + c * z
    return out


def base_point(u, y):
    x, z, nx, nz, tx, tz = BASE(u)
    return np.stack([x, y, z], -1), np.stack([nx, np.zeros_like(nx), nz], -1)


def cast(spec_c, spec_a, P, N, yaw: float = 0.0):
    return ray_ellipsoid(P[:, 0], P[:, 1], P[:, 2], N[:, 0], N[:, 2], spec_c, spec_a, yaw)


def _face_primitives(spec, u, y, P, N):
    """Height of the bony face (with its fixed soft tissue) above the prism, valid above the jaw line."""
    au = np.abs(u)
    k = spec["k_union"]
    h_skull = cast(spec["skull_c"], spec["skull_a"], P, N)
    h_mid = cast(spec["mid_c"], spec["mid_a"], P, N)
    h_low = cast(spec["low_c"], spec["low_a"], P, N)
    face = smax(smax(h_skull, h_mid, k), h_low, k)
    # muzzle (dental arches) and chin
    prof = _interp_knots(y, spec["prof_y"], spec["prof_z"])
    prof = prof + spec["chin"] * np.exp(-0.5 * ((y - spec["chin_y"]) / 6.0) ** 2)
    prof = prof + spec["lip_protrusion"] * np.exp(-0.5 * ((y + 62.0) / 10.0) ** 2)
    radius = _interp_knots(y, (-110.0, -95.0, -75.0, -50.0, -40.0), (28.0, 33.0, 38.0, 38.0, 30.0)) * spec["arch_scale"]
    face = smax(face, prof - 0.5 * u * u / radius, 6.0)
    # forehead: glabella, brow ridge; orbit sockets; cheekbones, zygomatic arches, temples, buccal hollows
    eu, ey = spec["eye_u"], spec["eye_y"]
    face = face + spec["glabella"] * gauss(u, y, 0.0, 16.0, 9.0, 6.0)
    face = face + spec["brow_ridge"] * (gauss(au, y, eu - 2.0, spec["brow_ridge_y"], 14.0, 5.0))
    face = face - spec["socket"] * bump(au, y, eu, ey - 0.5, 16.0, 12.0)
    face = face + spec["cheekbone"] * gauss(au, y, ux(46.0), -20.0, 11.0, 9.0)
    face = face + spec["zygoma"] * gauss(au, y, ux(64.0), -12.0, 12.0, 6.0)
    face = face - spec["temple"] * gauss(au, y, ux(60.0), 28.0, 9.0, 12.0)
    face = face - spec["buccal"] * gauss(au, y, ux(50.0), -55.0, 9.0, 10.0)
    # soft tissue: malar and buccal fat pads, the soft jaw angle (masseter), the temple fill
    face = face + spec["malar_fat"] * gauss(au, y, ux(40.0), -30.0, 16.0, 13.0)
    face = face + spec["buccal_fat"] * gauss(au, y, ux(48.0), -58.0, 18.0, 18.0)
    face = face + spec["masseter"] * gauss(au, y, ux(64.0), -70.0, 20.0, 24.0)
    face = face + spec["temple_fill"] * gauss(au, y, ux(64.0), 30.0, 14.0, 18.0)
    # the body of the mandible: a rounder, squarer lower face between the chin and the jaw angles
    face = face + spec["mandible"] * gauss(au, y, ux(36.0), -106.0, 15.0, 10.0)
    return face


def jaw_line(spec, au):
    """(y_top, depth) of the submandibular blend at |u|: the face is pure above ``y_top`` and turns under the jaw
    into the neck over ``depth`` mm of height below it."""
    y_top = _interp_knots(au, spec["jaw_u"], spec["jaw_y"]) + _interp_knots(au, spec["jaw_wu"], spec["jaw_w"])
    depth = _interp_knots(au, spec["sub_u"], spec["sub_dy"])
    return y_top, depth


def neck_height(spec, P, N):
    """Height of the neck: an elliptic cylinder of radii ``neck_r`` (x, z) about ``neck_z``."""
    axes = (spec["neck_r"][0], 1e6, spec["neck_r"][1])
    return cast((0.0, 0.0, spec["neck_z"]), axes, P, N)


def _round_intersect(a, b, r):
    """Intersection of two regions (signed distances, negative inside) with a circular fillet of radius ``r``."""
    return np.minimum(-r, np.maximum(a, b)) + np.hypot(np.maximum(r + a, 0.0), np.maximum(r + b, 0.0))


def _round_union(a, b, r):
    """Union of two regions (signed distances, negative inside) with a circular (concave) fillet of radius ``r``."""
    return np.maximum(r, np.minimum(a, b)) - np.hypot(np.maximum(r - a, 0.0), np.maximum(r - b, 0.0))


def bone_height(spec, u, y):
    """Height of the bony face above the base prism at canonical (u, y) (after the expression slide).

    Under the jaw the profile (in the plane of height and y at fixed u) is built from three regions with circular
    fillets: the face (continued below the jaw line by its tangent), the half-plane above the submandibular line
    (through the mandible border, rising towards the neck at ``sub_ang`` degrees) and the neck cylinder. The face
    rolls under the mandible border with radius ``jaw_round`` and the underside meets the neck in a concave fillet
    of radius ``neck_round``: continuous normals, no shelf, no undercut. Each height is the root (in h) of the
    combined field, found by bisection (the field increases with h, so the surface is a height field).
    """
    P, N = base_point(u, y)
    au = np.abs(u)
    y_top, depth = jaw_line(spec, au)
    r1, r2 = spec["jaw_round"], spec["neck_round"]
    margin = 2.0 * r1 + 4.0
    band = y < y_top + margin
    face = _face_primitives(spec, u, y, P, N)
    h = face.copy()
    s = np.ones_like(u)
    if band.any():
        ub, yb, yt, dep = u[band], y[band], y_top[band], depth[band]
        Pt, Nt = base_point(ub, yt)
        d_eps = 1.5
        Pe, Ne = base_point(ub, yt + d_eps)
        h_top = _face_primitives(spec, ub, yt, Pt, Nt)
        slope = np.clip((_face_primitives(spec, ub, yt + d_eps, Pe, Ne) - h_top) / d_eps, -2.5, 2.5)
        below = yb < yt
        F = np.where(below, h_top + slope * (yb - yt), face[band])
        inv1 = 1.0 / np.sqrt(1.0 + slope * slope)
        y_c = yt - spec["jaw_corner"]
        h_c = h_top - slope * spec["jaw_corner"]
        ang = np.radians(_interp_knots(np.abs(ub), spec["sub_u"], spec["sub_ang"]))
        sa, ca = np.sin(ang), np.cos(ang)
        # where a thick neck would poke out of the face behind the ears, it stays just inside (no shelf)
        h_neck = smin(neck_height(spec, P[band], N[band]), h_c - 2.0, 3.0)

        def field(hh):
            d1 = (hh - F) * inv1
            d2 = (hh - h_c) * sa - (yb - y_c) * ca
            d3 = np.maximum(hh - h_neck, yb - y_c)
            return _round_union(d3, _round_intersect(d1, d2, r1), r2)

        lo = np.minimum(F, h_neck) - 80.0
        hi = np.maximum(F, h_neck) + 80.0
        for _ in range(22):  # bracket 160+ mm -> ~4e-5 mm
            mid = 0.5 * (lo + hi)
            inside = field(mid) < 0.0
            lo = np.where(inside, mid, lo)
            hi = np.where(inside, hi, mid)
        h[band] = 0.5 * (lo + hi)
        t = np.clip((yt - yb) / dep, 0.0, 1.0)
        s[band] = 1.0 - smoothstep(t)
    return h, face, s


def nose_height(spec, u, y):
    """Height of the nose (dorsum, tip lobule, alae) above the prism, -large far from the nose."""
    P, N = base_point(u, y)
    ny, ty = spec["nose_n_y"], spec["nose_tip_y"]
    t = (ny - y) / (ny - ty)
    rz, tz = spec["nose_root_z"], spec["nose_tip_z"]
    dors = rz + (tz - 3.0 - rz) * np.clip(t, 0.0, None) ** 0.95 + spec["nose_hump"] * np.sin(math.pi * np.clip(t, 0, 1))
    dors = dors - 400.0 * np.clip(t - 0.97, 0.0, None) ** 2 - 10.0 * np.clip(-t, 0.0, None) ** 2
    w = spec["nose_bridge_w"] * (1.0 + 0.3 * np.clip(t, 0.0, 1.0))
    h_dors = dors - spec["nose_slope"] * (1.0 + 0.6 * np.clip(t, 0.0, 1.0) ** 2) * (np.sqrt(u * u + w * w) - w)
    r = spec["nose_tip_r"]
    h_tip = cast((0.0, ty, tz - r[2]), r, P, N)
    ar = spec["ala_r"]
    h_ala_l = cast((-spec["ala_u"], spec["ala_y"], spec["ala_z"] - ar[2]), ar, P, N)
    h_ala_r = cast((spec["ala_u"], spec["ala_y"], spec["ala_z"] - ar[2]), ar, P, N)
    nose = smax(h_dors, h_tip, 3.0)
    nose = smax(nose, smax(h_ala_l, h_ala_r, 1.0), 2.0)
    return nose


def _corner_w(spec, u, y, sign):
    """Soft weight around one mouth corner (sign -1: left = x < 0)."""
    return gauss(u, y, sign * spec["mouth_u"], spec["mouth_slit_y"], 11.0, 10.0)


def _side_masks(spec, y, side, slit_y):
    dy = y - slit_y
    return (dy > 1e-9) | (side > 0), (dy < -1e-9) | (side < 0)


def expression_slide(spec, u, y, side):
    """Tangential tissue motion (du, dy) of the expressions (besides lids and lip parting)."""
    du = np.zeros_like(u)
    dy = np.zeros_like(u)
    my = spec["mouth_slit_y"]
    upper, lower = _side_masks(spec, y, side, my)
    for sign, smile, stretch in ((-1, spec["smile_l"], spec["stretch"]), (1, spec["smile_r"], spec["stretch"])):
        wc = _corner_w(spec, u, y, sign)
        du = du + sign * wc * (0.55 * smile + 0.6 * stretch)
        dy = dy + wc * (1.0 * smile - 0.15 * stretch - 1.0 * spec["corner_down"])
    # brows: inner / outer raise per side, frown (down and together)
    above = sstep(y, spec["eye_slit_y"] + 2.0, spec["eye_slit_y"] + 11.0)
    eu = spec["eye_u"]
    for sign, bi, bo in ((-1, spec["brow_in_l"], spec["brow_out_l"]),
                         (1, spec["brow_in_r"], spec["brow_out_r"])):
        dy = dy + above * (bi * gauss(u, y, sign * (eu - 9.0), 18.0, 10.0, 16.0)
                           + bo * gauss(u, y, sign * (eu + 13.0), 18.0, 11.0, 16.0))
    fr = spec["frown"]
    wf = above * (gauss(u, y, -(eu - 8.0), 16.0, 12.0, 9.0) + gauss(u, y, eu - 8.0, 16.0, 12.0, 9.0))
    dy = dy - fr * wf
    du = du - fr * 0.5 * np.sign(u) * wf
    # mouth: sideways, pucker / funnel narrowing, upper lip raise, lower lip depress
    wm = gauss(u, y, 0.0, my, 30.0, 16.0)
    du = du + spec["mouth_x"] * wm
    wl = gauss(u, y, 0.0, my, 26.0, 12.0)
    du = du - (spec["pucker"] + 0.6 * spec["funnel"]) * 0.12 * u * wl
    dy = dy + spec["upper_raise"] * gauss(u, y, 0.0, my + 4.0, 16.0, 9.0) * upper
    dy = dy - spec["lower_depress"] * gauss(u, y, 0.0, my - 5.0, 16.0, 9.0) * lower
    # nose wrinkle and sneer lift the alae and the upper lip
    for sign, sn in ((-1, spec["sneer_l"]), (1, spec["sneer_r"])):
        wa = gauss(u, y, sign * spec["ala_u"], spec["ala_y"], 9.0, 9.0)
        dy = dy + (spec["wrinkle"] + sn) * wa
        dy = dy + sn * 0.8 * gauss(u, y, sign * 12.0, my + 5.0, 10.0, 7.0) * upper
    return du, dy


def expression_height(spec, u, y, side):
    """Height changes (mm along the normal) of the expressions."""
    my = spec["mouth_slit_y"]
    h = np.zeros_like(u)
    for sign, smile, puff in ((-1, spec["smile_l"], spec["puff_l"]), (1, spec["smile_r"], spec["puff_r"])):
        h = h + smile * gauss(u, y, sign * ux(40.0), -35.0, 13.0, 11.0)  # cheeks rise
        h = h + (spec["puff"] + puff) * gauss(u, y, sign * ux(42.0), -58.0, 15.0, 15.0)
    lips = gauss(u, y, 0.0, my, 20.0, 7.0)
    h = h + (spec["pucker"] + spec["funnel"]) * lips
    h = h - spec["press"] * lips
    h = h + spec["frown"] * gauss(u, y, 0.0, 14.0, 9.0, 7.0)
    h = h + spec["wrinkle"] * (gauss(u, y, -9.0, 0.0, 6.0, 6.0) + gauss(u, y, 9.0, 0.0, 6.0, 6.0))
    return h


def identity_warp(spec, u, y):
    """Identity tissue warp (du, dy) on the prism: proportions that landmarks must follow."""
    du = np.zeros_like(u)
    dy = np.zeros_like(u)
    eu, ey = spec["eye_u"], spec["eye_y"]
    au = np.abs(u)
    sg = np.where(u < 0, -1.0, 1.0)
    we = gauss(au, y, eu, ey, 17.0, 15.0)
    du = du + sg * we * (spec["w_eye_spacing"] + spec["w_eye_size"] * (au - eu))
    dy = dy + we * (spec["w_eye_height"] + spec["w_eye_size"] * (y - ey) + spec["w_canthal"] * (au - eu))
    ny, sn = spec["nose_n_y"], spec["nose_sn_y"]
    my = spec["mouth_slit_y"]
    # vertical proportions (every column moves together so the head stays whole)
    dy = dy - spec["w_nose_length"] * sstep(y, ny, sn)
    dy = dy - spec["w_upper_lip"] * sstep(y, sn, my)
    dy = dy - spec["w_lower_face"] * sstep(y, my, -118.0)
    dy = dy + spec["w_forehead"] * sstep(y, 20.0, 80.0)
    # widths
    wm = gauss(u, y, 0.0, my, 24.0, 14.0)
    du = du + spec["w_mouth_width"] * np.clip(u / spec["mouth_u"], -1.5, 1.5) * wm
    wn = gauss(u, y, 0.0, spec["ala_y"], 16.0, 9.0)
    du = du + spec["w_nose_width"] * np.clip(u / 17.0, -1.5, 1.5) * wn
    du = du + spec["w_asym"] * gauss(u, y, 0.0, -20.0, 60.0, 60.0) * 0.5
    return du, dy


def eye_centre(spec, sign: int) -> np.ndarray:
    """Spatial centre of the eyeball (sign -1: left = x < 0), carried by the identity warp."""
    cu = sign * ux(spec["eye_cx"])
    P0, N0 = base_point(np.array([cu]), np.array([spec["eye_y"]]))
    # normal coordinate of the construction centre (x = eye_cx, z = eye_depth) above the prism point
    target = np.array([sign * spec["eye_cx"], spec["eye_y"], spec["eye_depth"]])
    d = float(np.dot(target - P0[0], N0[0]))
    du, dy = identity_warp(spec, np.array([cu]), np.array([spec["eye_y"]]))
    P, N = base_point(cu + du, spec["eye_y"] + dy)
    tangent_offset = target - (P0[0] + d * N0[0])
    return P[0] + d * N[0] + tangent_offset


def eye_scale(spec) -> float:
    return 1.0 + spec["w_eye_size"]


_MISSING = object()


class _Reads(dict):
    """A spec copy that records which entries a computation reads (and their values)."""

    def __init__(self, base):
        super().__init__(base)
        self.used = {}

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        self.used[key] = value
        return value

    def get(self, key, default=None):
        self.used[key] = dict.get(self, key, _MISSING)
        return dict.get(self, key, default)


class Memo:
    """Caches stages of :func:`embed_face` by (stage, input arrays, the spec entries the stage read).

    Named components change a few spec entries each; every stage that does not read them is reused from the mean
    face, which makes the finite-difference bases several times cheaper. Results are exact (same code, same inputs).
    """

    def __init__(self, max_entries: int = 4):
        self.store = {}
        self.max_entries = max_entries

    def __call__(self, name, fn, spec, *arrays):
        entries = self.store.setdefault(name, [])
        for used, inputs, result in entries:
            if (all(_same(spec.get(k, _MISSING), v) for k, v in used.items())
                    and all(np.array_equal(a, b) for a, b in zip(arrays, inputs))):
                return result
        reads = _Reads(spec)
        result = fn(reads, *arrays)
        entries.append((reads.used, tuple(np.array(a, copy=True) for a in arrays), result))
        if len(entries) > self.max_entries:
            entries.pop(1)  # the first entry (the mean face) is the one reused most
        return result


def _same(a, b):
    return a is b or (type(a) is type(b) and a == b)


def _no_memo(name, fn, spec, *arrays):
    return fn(spec, *arrays)


def _stage_slide(spec, u, y, side):
    du, dy = expression_slide(spec, u, y, side)
    dy = dy + eye_slide(spec, u, y, side, -1, spec["close_l"], spec["squint_l"])
    dy = dy + eye_slide(spec, u, y, side, +1, spec["close_r"], spec["squint_r"])
    dy = dy + mouth_slide(spec, u, y, side, 1.5 * spec["funnel"])
    return u + du, y + dy


def _stage_tissue(spec, u, y, side):
    nose = nose_height(spec, u, y)
    nyy = spec["nose_tip_y"] - spec["nose_tip_r"][1] + 0.5
    nostrils = spec["nostril"] * (gauss(u, y, -6.0, nyy, 2.6, 1.6) + gauss(u, y, 6.0, nyy, 2.6, 1.6))
    soft = lips_height(spec, u, y, side) + expression_height(spec, u, y, side)
    return nose, nostrils, soft


def _stage_warp(spec, us, ys):
    wu, wy = identity_warp(spec, us, ys)
    return us + wu, ys + wy


def embed_face(spec, uv, side, with_info: bool = False, memo=None):
    """3D positions (Vf, 3) of the face sheet for canonical coordinates ``uv`` (see module docstring).

    ``memo``: an optional :class:`Memo` shared by calls with the same ``uv`` (finite-difference bases).
    """
    call = memo if memo is not None else _no_memo
    u, y = uv[:, 0].copy(), uv[:, 1].copy()
    # 1. expression slide of the tissue (lids, lip parting, muscles)
    us, ys = call("slide", _stage_slide, spec, u, y, side)
    # 2. heights: bone at the slid position, nose and soft tissue at the tissue position
    bone, face_only, jaw_s = call("bone", bone_height, spec, us, ys)
    nose, nostrils, soft = call("tissue", _stage_tissue, spec, u, y, side)
    h = smax(bone, nose, 3.0)
    nose_w = sstep(nose - bone, -1.0, 3.0)
    h = h - nose_w * nostrils + soft
    # 3. identity warp
    su, sy = call("warp", _stage_warp, spec, us, ys)
    P, N = base_point(su, sy)
    # 4. lids drape over the eyeballs; their margins touch them
    for sign in (-1, 1):
        t = (sign * u - spec["eye_en"]) / (spec["eye_ex"] - spec["eye_en"])
        d_t = np.abs(y - spec["eye_slit_y"])
        near = (t > -0.4) & (t < 1.4) & (d_t < 25.0)
        if not near.any():
            continue
        hl = lid_height(spec, P[near], N[near], sign)
        dn = d_t[near]
        hl = hl + 0.7 + 1.3 * sstep(dn, 0.0, 6.0)
        blended = smax(h[near], hl, 1.5)
        inside = (t[near] > 0) & (t[near] < 1)
        hug = np.where(inside, 1.0 - sstep(dn, 0.0, 2.5), 0.0)
        h[near] = blended + hug * (hl - blended)
    p = P + h[:, None] * N
    if with_info:
        return p, dict(h=h, bone=bone, nose=nose, nose_w=nose_w, jaw_s=jaw_s)
    return p


def lips_height(spec, u, y, side):
    mu = spec["mouth_u"]
    m = u / mu
    inside = np.clip(1.0 - m * m, 0.0, None)
    dy = y - spec["mouth_slit_y"]
    upper = (dy > 1e-9) | (side > 0)
    # upper lip: vermilion border with a cupid's bow
    vb = spec["lip_up_h"] * inside ** 0.35 * (1.0 - 0.12 * np.exp(-0.5 * (m / 0.08) ** 2)
                                             + 0.06 * np.exp(-0.5 * ((np.abs(m) - 0.2) / 0.1) ** 2))
    t_up = dy / np.maximum(vb, 0.5)
    k_up = np.exp(-((t_up - 0.45) / 0.42) ** 2) * inside ** 0.6
    vl = spec["lip_low_h"] * inside ** 0.45
    t_low = -dy / np.maximum(vl, 0.5)
    k_low = np.exp(-((t_low - 0.42) / 0.45) ** 2) * inside ** 0.6
    h = np.where(upper, spec["lip_up"] * k_up, spec["lip_low"] * k_low)
    # cheek fat pads (fuller lower cheeks)
    h = h + spec["cheek_fat"] * (gauss(u, y, -ux(42.0), -48.0, 15.0, 15.0) + gauss(u, y, ux(42.0), -48.0, 15.0, 15.0))
    # philtrum columns and groove
    yb = spec["mouth_slit_y"] + spec["lip_up_h"]
    win = sstep(y, yb - 1.0, yb + 2.0) * sstep(y, spec["nose_sn_y"] + 1.0, spec["nose_sn_y"] - 3.0)
    h = h + spec["philtrum"] * win * (gauss(u, y, -4.5, y, 1.6, 1.0) + gauss(u, y, 4.5, y, 1.6, 1.0))
    return h


# ----------------------------------------------------------------------------------------------------------------
# eyeballs and the mouth cavity
def eye_yaw(spec, sign: int) -> float:
    return sign * spec["eye_yaw"]


def eyeball_points(spec, sign: int, directions: np.ndarray) -> np.ndarray:
    """Eyeball surface points along gaze-frame ``directions`` (n, 3) from the centre (gaze = +z)."""
    yaw = eye_yaw(spec, sign)
    cs, sn = math.cos(yaw), math.sin(yaw)
    dx, dy, dz = directions.T
    lx, lz = cs * dx - sn * dz, sn * dx + cs * dz
    ax, ay, az = np.asarray(spec["eye_axes"]) * eye_scale(spec)
    r = 1.0 / np.sqrt((lx / ax) ** 2 + (dy / ay) ** 2 + (lz / az) ** 2)
    return eye_centre(spec, sign) + r[:, None] * directions


def lid_height(spec, P, N, sign: int):
    """Height along the normals N from base points P to the eyeball surface (smoothly continued past it)."""
    axes = tuple(np.asarray(spec["eye_axes"]) * eye_scale(spec))
    return ray_ellipsoid(P[:, 0], P[:, 1], P[:, 2], N[:, 0], N[:, 2], eye_centre(spec, sign), axes,
                         eye_yaw(spec, sign))


def cavity_points(spec, edge: np.ndarray, loop_side: np.ndarray, loop_m: np.ndarray, rings: int) -> np.ndarray:
    """Rings of the inner mouth behind the lip loop.

    ``edge`` (L, 3) lip-edge positions around the loop, ``loop_side`` +1 upper lip, -1 lower lip, 0 corners,
    ``loop_m`` position across the mouth (-1 left corner .. 1 right corner). Returns (rings, L, 3); the last ring is
    the back wall (closed by a cap in the topology).
    """
    out = []
    centre_x = 0.5 * (edge[:, 0].max() + edge[:, 0].min())
    taper = np.sqrt(np.clip(1.0 - loop_m ** 2, 0.0, 1.0))
    for k in range(1, rings + 1):
        f = k / rings
        depth = spec["cavity_depth"] * f ** 0.9 + 1.5 * min(k, 1)
        spread = np.where(loop_side > 0, spec["cavity_up"], spec["cavity_down"]) * (1.0 - (1.0 - f) ** 2)
        spread = spread * (0.25 + 0.75 * taper) * np.sign(loop_side)
        p = edge.copy()
        p[:, 0] = centre_x + (edge[:, 0] - centre_x) * (1.0 - 0.45 * f ** 1.2)
        p[:, 1] = edge[:, 1] + spread + np.sign(loop_side) * 1.0 * min(k, 1) * taper
        p[:, 2] = edge[:, 2] - depth
        out.append(p)
    return np.stack(out, 0)
