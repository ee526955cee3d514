"""Named identity and expression components of the procedural face.

Each component is ``(name, {spec key: change per unit coefficient})``; a basis column is the difference between the
face built with the spec moved by that change and the mean face. Changes are scaled so that a coefficient of 1 is
about one standard deviation of natural adult variation (anthropometric norms) for identities, and a clear but
moderate expression for expressions (about 2 to 2.5 units reach the extreme: a closed eye, a wide smile).
Order = importance: the global proportions first.
"""
from __future__ import annotations

import numpy as np

from .procedural_shape import mean_spec

_J = lambda *v: tuple(float(x) for x in v)  # noqa: E731  (delta for tuple-valued spec entries)

IDENTITY = [
    ("face_width", dict(mid_a=_J(4.0, 0, 0), skull_a=_J(2.0, 0, 0), low_a=_J(1.5, 0, 0), zygoma=0.4)),
    ("face_height", dict(w_nose_length=1.5, w_upper_lip=0.8, w_lower_face=2.2, w_forehead=2.0)),
    ("jaw_width", dict(low_a=_J(3.5, 0, 0))),
    ("nose_length", dict(w_nose_length=3.0)),
    ("nose_projection", dict(nose_tip_z=2.2, ala_z=0.6)),
    ("nose_width", dict(w_nose_width=1.4)),
    ("eye_spacing", dict(w_eye_spacing=1.25)),
    ("chin_protrusion", dict(chin=2.8)),
    ("lower_face_height", dict(w_lower_face=3.5)),
    ("forehead_slope", dict(skull_a=_J(0, -9.0, 0))),
    ("brow_ridge", dict(brow_ridge=1.2, glabella=0.8)),
    ("cheekbones", dict(cheekbone=1.4, zygoma=0.8)),
    ("upper_lip_thickness", dict(lip_up=1.1, lip_up_h=0.9)),
    ("lower_lip_thickness", dict(lip_low=1.2, lip_low_h=1.1)),
    ("mouth_width", dict(w_mouth_width=1.8)),
    ("eye_size", dict(w_eye_size=0.035)),
    ("eye_opening", dict(lid_up=0.6, lid_low=0.4)),
    ("canthal_tilt", dict(w_canthal=0.045)),
    ("nasal_root_height", dict(nose_root_z=1.8)),
    ("nose_hump", dict(nose_hump=1.1)),
    ("nose_tip_size", dict(nose_tip_r=_J(1.0, 0.5, 0.4))),
    ("nose_tip_rotation", dict(nose_tip_y=1.3)),
    ("nostril_size", dict(nostril=1.0, ala_r=_J(0.5, 0.3, 0))),
    ("alar_prominence", dict(ala_z=1.3)),
    ("upper_lip_height", dict(w_upper_lip=2.0)),
    ("lip_protrusion", dict(lip_protrusion=1.8)),
    ("chin_width", dict(arch_scale=0.1)),
    ("jaw_angle", dict(jaw_y=_J(0, 0, 0, -1.0, -2.5, -4.0, -4.0, -2.0, 0, 0))),
    ("cheek_fullness", dict(cheek_fat=1.2, buccal_fat=1.6, malar_fat=0.8)),
    ("temple_hollowness", dict(temple=0.45)),
    ("forehead_height", dict(w_forehead=4.0)),
    ("face_depth", dict(mid_a=_J(0, 0, 5.0), mid_c=_J(0, 0, -5.0), low_a=_J(0, 0, 4.0), low_c=_J(0, 0, -4.0))),
    ("head_length", dict(skull_a=_J(0, 0, 5.0), skull_c=_J(0, 0, -5.0))),
    ("eye_depth", dict(eye_depth=-1.3, socket=1.2)),
    ("eye_height", dict(w_eye_height=1.8)),
    ("neck_thickness", dict(neck_r=_J(4.0, 4.0))),
    ("nasion_depth", dict(glabella=1.0, nose_root_z=-1.0)),
    ("philtrum_depth", dict(philtrum=0.6)),
    ("maxillary_protrusion",
     dict(prof_z=_J(0, 0, 0, 1.0, 1.8, 2.0, 2.0, 1.8, 1.2, 0.6, 0.3, 0, 0, 0, 0, 0, 0, 0, 0, 0))),
    ("mentolabial_sulcus",
     dict(prof_z=_J(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.6, -1.5, -1.2, -0.3, 0, 0, 0, 0, 0, 0))),
    ("face_asymmetry", dict(w_asym=1.4)),
    ("zygomatic_arch", dict(zygoma=1.5)),
    ("brow_ridge_height", dict(brow_ridge_y=2.0)),
    ("nose_bridge_width", dict(nose_bridge_w=0.9)),
]

EXPRESSION = [
    ("jaw_open", dict(jaw_open=0.055)),
    ("smile_left", dict(smile_l=3.0)),
    ("smile_right", dict(smile_r=3.0)),
    ("eye_close_left", dict(close_l=0.42)),
    ("eye_close_right", dict(close_r=0.42)),
    ("brow_inner_raise_left", dict(brow_in_l=3.0)),
    ("brow_inner_raise_right", dict(brow_in_r=3.0)),
    ("brow_outer_raise_left", dict(brow_out_l=3.0)),
    ("brow_outer_raise_right", dict(brow_out_r=3.0)),
    ("frown", dict(frown=2.5)),
    ("pucker", dict(pucker=2.5)),
    ("lip_funnel", dict(funnel=2.0)),
    ("lip_press", dict(press=1.4)),
    ("cheek_puff", dict(puff=2.4)),
    ("nose_wrinkle", dict(wrinkle=2.2)),
    ("mouth_left_right", dict(mouth_x=3.0)),
    ("jaw_left_right", dict(jaw_x=2.0)),
    ("upper_lip_raise", dict(upper_raise=2.2)),
    ("lower_lip_depress", dict(lower_depress=2.2)),
    ("lip_stretch", dict(stretch=2.5)),
    ("squint_left", dict(squint_l=0.35)),
    ("squint_right", dict(squint_r=0.35)),
    ("mouth_corners_down", dict(corner_down=2.2)),
    ("sneer_left", dict(sneer_l=2.0)),
    ("sneer_right", dict(sneer_r=2.0)),
    ("cheek_puff_left", dict(puff_l=2.0)),
    ("cheek_puff_right", dict(puff_r=2.0)),
]

IDENTITY_NAMES = [name for name, _ in IDENTITY]
EXPRESSION_NAMES = [name for name, _ in EXPRESSION]


def check_component_keys(components: list[tuple[str, dict]], spec: dict) -> None:
    """Raise ``KeyError`` naming the component and the key when a component changes a key ``spec`` does not have
    (a misspelt key would otherwise add an entry that nothing reads: a component that moves nothing), or
    ``ValueError`` when a change does not match its entry (a tuple for a tuple entry, of the same length)."""
    for name, delta in components:
        for key, change in delta.items():
            if key not in spec:
                raise KeyError(f"procedural face component {name!r} changes unknown spec key {key!r} "
                               f"(not in procedural_shape.mean_spec())")
            entry = spec[key]
            if isinstance(change, tuple) != isinstance(entry, tuple) or (
                    isinstance(change, tuple) and len(change) != len(entry)):
                raise ValueError(f"procedural face component {name!r}: the change of {key!r} ({change!r}) does "
                                 f"not match the spec entry {entry!r}")


check_component_keys(IDENTITY + EXPRESSION, mean_spec())


def apply_delta(spec: dict, delta: dict, scale: float = 1.0) -> dict:
    """A copy of ``spec`` moved by ``scale`` times ``delta`` (tuples change element-wise); every key of ``delta``
    must be in ``spec`` (``KeyError`` naming it otherwise)."""
    out = dict(spec)
    for key, change in delta.items():
        if key not in out:
            raise KeyError(f"unknown procedural face spec key {key!r}")
        base = out[key]
        if isinstance(change, tuple):
            out[key] = tuple(float(b) + scale * c for b, c in zip(base, change))
        else:
            out[key] = float(base) + scale * change
    return out


def random_component_rng(seed: int, kind: int, index: int) -> np.random.Generator:
    """Generator for extra component ``index`` of ``kind`` (0 identity, 1 expression, 2 albedo): the same column
    whatever the number of components requested."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, kind, index])
