"""The embedded procedural face model: determinism, anatomy, semantics and expression behaviour."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from dfmvr_lib.face_model import NUM_PARTS, MorphableModel
from dfmvr_lib.face_model import procedural_components as pc
from dfmvr_lib.face_model import procedural_shape as ps
from dfmvr_lib.face_model.procedural import build_procedural_model

SMALL = dict(vertex_target=6000, identity_components=50, expression_components=32, albedo_components=24)

# indices into landmark_101[51:] (the 50 extra semantic points), see procedural_semantics.landmarks
EX_NASION, EX_ALARE_L, EX_ALARE_R, EX_ZYGION_L, EX_ZYGION_R = 6, 21, 22, 29, 30


@pytest.fixture(scope="module")
def model() -> MorphableModel:
    return build_procedural_model(**SMALL)


def _extras(model):
    return model.landmark_101[51:]


def _measure(model, vertices):
    """Anthropometric distances (mm) of one face (V, 3) from its landmarks."""
    lm = model.landmark_68
    ex = _extras(model)
    p = vertices

    def d(a, b):
        return float(torch.linalg.norm(p[a] - p[b]))

    return dict(
        face_width=float(p[ex[EX_ZYGION_R], 0] - p[ex[EX_ZYGION_L], 0]),
        nasion_chin=d(ex[EX_NASION], lm[8]),
        biocular=d(lm[36], lm[45]),
        intercanthal=d(lm[39], lm[42]),
        eye_fissure=0.5 * (d(lm[36], lm[39]) + d(lm[42], lm[45])),
        nose_height=d(ex[EX_NASION], lm[33]),
        alar_width=float(p[ex[EX_ALARE_R], 0] - p[ex[EX_ALARE_L], 0]),
        nose_protrusion=float(p[lm[30], 2] - p[lm[33], 2]),
        mouth_width=d(lm[48], lm[54]),
    )


def test_deterministic_and_well_formed(model):
    again = build_procedural_model(**SMALL)
    a, b = model.to_data(), again.to_data()
    for field in ("mean_shape", "identity_basis", "expression_basis", "mean_albedo", "albedo_basis", "triangles",
                  "landmark_68", "landmark_101", "alignment_7", "part_labels", "evaluation_region"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    V = model.num_vertices
    assert 4500 < V < 7500
    assert model.mean_shape.shape == (V, 3) and model.mean_shape.dtype == torch.float32
    assert model.identity_basis.shape == (V, 3, SMALL["identity_components"])
    assert model.expression_basis.shape == (V, 3, SMALL["expression_components"])
    assert model.albedo_basis.shape == (V, 3, SMALL["albedo_components"])
    assert model.mean_albedo.shape == (V, 3) and model.identity_basis.dtype == torch.float32
    assert model.triangles.dtype == torch.int64 and model.triangles.shape[1] == 3
    assert model.landmark_68.shape == (68,) and model.landmark_101.shape == (101,) and model.alignment_7.shape == (7,)
    assert model.part_labels.dtype == torch.int64 and model.part_labels.shape == (V,)
    assert model.evaluation_region.dtype == torch.bool and model.evaluation_region.shape == (V,)
    # centred on the mean shape's centroid, albedo in range, every vertex used
    assert torch.allclose(model.mean_shape.mean(0), torch.zeros(3), atol=1e-3)
    assert 0.0 <= float(model.mean_albedo.min()) and float(model.mean_albedo.max()) <= 1.0
    assert torch.unique(model.triangles).numel() == V
    assert len(torch.unique(model.landmark_101)) == 101


def test_vertex_count_follows_target():
    big = build_procedural_model(vertex_target=12000, identity_components=2, expression_components=2,
                                 albedo_components=2)
    assert 10000 < big.num_vertices < 14000


def test_mean_face_has_human_dimensions(model):
    measured = _measure(model, model.mean_shape)
    norms = dict(face_width=135, nasion_chin=120, biocular=90, intercanthal=32, eye_fissure=30, nose_height=52,
                 alar_width=35, nose_protrusion=20, mouth_width=50)
    for name, norm in norms.items():
        assert abs(measured[name] - norm) <= 0.12 * norm, (name, measured[name], norm)


def test_larger_bases_are_supersets():
    small = build_procedural_model(vertex_target=6000, identity_components=45, expression_components=28,
                                   albedo_components=18)
    large = build_procedural_model(vertex_target=6000, identity_components=52, expression_components=34,
                                   albedo_components=24)
    torch.testing.assert_close(large.mean_shape, small.mean_shape)
    torch.testing.assert_close(large.identity_basis[:, :, :45], small.identity_basis)
    torch.testing.assert_close(large.expression_basis[:, :, :28], small.expression_basis)
    torch.testing.assert_close(large.albedo_basis[:, :, :18], small.albedo_basis)
    assert large.identity_basis[:, :, 45:].abs().max() > 0.1  # the extra columns are real variations


def test_named_components_and_scales(model):
    assert len(pc.IDENTITY) >= 40 and len(pc.EXPRESSION) >= 20
    id_norm = model.identity_basis.norm(dim=1).amax(0)
    exp_norm = model.expression_basis.norm(dim=1).amax(0)
    # one unit moves some vertex by a few millimetres (a standard deviation), never by centimetres
    assert bool((id_norm[:40] > 0.4).all()) and bool((id_norm < 12.0).all()), id_norm
    assert bool((exp_norm[:20] > 1.0).all()) and bool((exp_norm < 12.0).all()), exp_norm
    # named components come first: they are larger than the smooth extras on average
    assert float(id_norm[:40].mean()) > float(id_norm[44:].mean())


def test_component_keys_are_checked_against_the_spec():
    spec = ps.mean_spec()
    pc.check_component_keys(pc.IDENTITY + pc.EXPRESSION, spec)          # the shipped components (also at import)
    with pytest.raises(KeyError, match=r"'nose_lenght'.*'w_nose_lenght'"):
        pc.check_component_keys([("nose_lenght", dict(w_nose_lenght=3.0))], spec)
    with pytest.raises(ValueError, match="'neck_r'"):
        pc.check_component_keys([("neck", dict(neck_r=pc._J(1.0, 1.0, 1.0)))], spec)   # 2-tuple entry
    with pytest.raises(ValueError, match="'chin'"):
        pc.check_component_keys([("chin", dict(chin=pc._J(1.0)))], spec)
    with pytest.raises(KeyError, match="'smile_left'"):
        pc.apply_delta(spec, dict(smile_left=1.0))
    moved = pc.apply_delta(spec, dict(smile_l=3.0, neck_r=pc._J(4.0, 4.0)), -0.5)
    assert moved["smile_l"] == -1.5 and moved["neck_r"] == (spec["neck_r"][0] - 2.0, spec["neck_r"][1] - 2.0)
    assert set(moved) == set(spec) and spec["smile_l"] == 0.0                 # a copy, no new entries


class _RecordingSpec(dict):
    """A spec that records the keys read from it."""

    def __init__(self, base):
        super().__init__(base)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self.read.add(key)
        return dict.get(self, key, default)


def test_every_spec_entry_is_read_by_the_construction(monkeypatch):
    """The known keys of the component check are exactly the entries the construction reads: the mean face reads
    all but the jaw-rotation ones, which an open jaw reads."""
    from dfmvr_lib.face_model import procedural

    spec = _RecordingSpec(ps.mean_spec())
    with monkeypatch.context() as patch:
        patch.setattr(ps, "mean_spec", lambda: spec)
        patch.setattr(ps, "Memo", lambda: ps._no_memo)          # no memo: it would read from copies
        procedural.build_procedural_model(vertex_target=6000, identity_components=0, expression_components=0,
                                          albedo_components=0)
    open_jaw = _RecordingSpec(pc.apply_delta(ps.mean_spec(), dict(jaw_open=0.05)))
    procedural._geometry(open_jaw, procedural._build_topology(ps.mean_spec(), 6000, relax_iterations=0))
    assert set(ps.mean_spec()) - spec.read - open_jaw.read == set()


def test_random_faces_stay_human(model):
    g = torch.Generator().manual_seed(3)
    n = 24
    identity = torch.randn(n, model.num_identity, generator=g)
    expression = torch.randn(n, model.num_expression, generator=g)
    albedo = torch.randn(n, model.num_albedo, generator=g)
    vertices, colours = model(identity, expression, albedo)
    assert torch.isfinite(vertices).all() and torch.isfinite(colours).all()
    widths, heights = [], []
    for i in range(n):
        m = _measure(model, vertices[i])
        widths.append(m["face_width"])
        heights.append(m["nasion_chin"])
        assert 115.0 < m["face_width"] < 160.0, m
        assert 95.0 < m["nasion_chin"] < 150.0, m
        assert 20.0 < m["intercanthal"] < 45.0 and 35.0 < m["mouth_width"] < 70.0, m
    assert np.std(widths) > 2.0 and np.std(heights) > 2.0  # and they differ from each other
    assert float((vertices - model.mean_shape).norm(dim=-1).max()) < 45.0
    skin = model.part_labels == 1
    mean_tone = colours[:, skin].mean(1).mean(1)
    assert float(mean_tone.max() - mean_tone.min()) > 0.1  # light and dark skins


def _expression(model, name, value):
    e = torch.zeros(1, model.num_expression)
    e[0, pc.EXPRESSION_NAMES.index(name)] = value
    return model(None, e)[0][0]


def test_jaw_open_opens_the_mouth(model):
    lm = model.landmark_68
    gap = lambda v: float(v[lm[62], 1] - v[lm[66], 1])  # noqa: E731
    closed, opened = gap(model.mean_shape), gap(_expression(model, "jaw_open", 2.0))
    assert 0.0 < closed < 4.0
    assert opened > closed + 7.0
    # the chin follows the jaw; the nose does not move
    v = _expression(model, "jaw_open", 2.0)
    assert float(model.mean_shape[lm[8], 1] - v[lm[8], 1]) > 7.0
    assert float((v[lm[30]] - model.mean_shape[lm[30]]).norm()) < 0.5


@pytest.mark.parametrize("side,upper,lower", [("left", (37, 38), (41, 40)), ("right", (43, 44), (47, 46))])
def test_eye_close_closes_the_lids(model, side, upper, lower):
    lm = model.landmark_68

    def gap(v):
        return min(float(v[lm[up], 1] - v[lm[low], 1]) for up, low in zip(upper, lower))

    open_gap = gap(model.mean_shape)
    closed = _expression(model, f"eye_close_{side}", 1.0 / 0.42)  # full closure
    assert open_gap > 6.0
    assert abs(gap(closed)) < 1.0
    half = _expression(model, f"eye_close_{side}", 1.0)
    assert 0.3 * open_gap < gap(half) < 0.8 * open_gap
    # the other eye stays open
    other = (43, 47) if side == "left" else (37, 41)
    assert float(closed[lm[other[0]], 1] - closed[lm[other[1]], 1]) > 6.0


def test_normals_point_outwards_and_mesh_is_clean(model):
    v = model.mean_shape
    n = model.normals(v[None])[0]
    lm = model.landmark_68
    assert float(n[lm[30], 2]) > 0.8  # nose tip faces the camera
    ex = _extras(model)
    assert float(n[ex[EX_ZYGION_L], 0]) < -0.3 and float(n[ex[EX_ZYGION_R], 0]) > 0.3  # cheeks face sideways
    assert float(n[ex[0], 2]) > 0.7  # forehead
    pupils = ex[13:15]
    assert bool((n[pupils, 2] > 0.95).all())  # eyeballs face forwards
    t = model.triangles
    area = 0.5 * torch.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]], dim=-1).norm(dim=-1)
    assert float(area.min()) > 1e-3
    edges = torch.cat([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    assert len(torch.unique(edges, dim=0)) == len(edges)  # consistent winding, manifold
    # triangle sizes: reasonably uniform over the face
    face = model.part_labels[t].min(1).values > 0
    a = area[face]
    assert float(a.quantile(0.95) / a.quantile(0.05)) < 25.0


def test_landmark_semantics(model):
    v = model.mean_shape
    lm, lm101, al = model.landmark_68, model.landmark_101, model.alignment_7
    assert int(torch.argmax(v[lm, 2])) == 30
    assert float(v[lm101, 2].max()) == float(v[lm[30], 2])
    assert bool((v[lm[36:42], 0] < 0).all()) and bool((v[lm[42:48], 0] > 0).all())
    assert bool((v[lm[17:22], 0] < 0).all()) and bool((v[lm[22:27], 0] > 0).all())
    assert bool((v[lm[0:8], 0] < 0).all()) and bool((v[lm[9:17], 0] > 0).all())
    assert int(torch.argmin(v[lm, 1])) == 8 and abs(float(v[lm[8], 0])) < 3.0
    assert float(v[lm[36], 0]) < float(v[lm[39], 0]) < float(v[lm[42], 0]) < float(v[lm[45], 0])
    assert float(v[lm[48], 0]) < float(v[lm[51], 0]) < float(v[lm[54], 0])
    assert float(v[lm[51], 1]) > float(v[lm[62], 1]) > float(v[lm[66], 1]) > float(v[lm[57], 1])
    assert float(v[lm[27], 1]) > float(v[lm[30], 1]) > float(v[lm[33], 1]) > float(v[lm[51], 1])
    torch.testing.assert_close(al, lm[[36, 39, 42, 45, 30, 48, 54]])
    assert set(al.tolist()) <= set(lm101.tolist())
    torch.testing.assert_close(lm101[:51], lm[17:])
    labels = model.part_labels
    assert int(labels[lm[30]]) == 6 and int(labels[lm[51]]) == 8 and int(labels[lm[57]]) == 9
    assert set(labels[lm[36:42]].tolist()) == {4} and set(labels[lm[42:48]].tolist()) == {5}


def test_parts_albedo_and_region(model):
    labels = model.part_labels
    counts = torch.bincount(labels, minlength=NUM_PARTS)
    assert bool((counts > 0).all()), counts
    v = model.mean_shape
    for left, right in ((2, 3), (4, 5)):
        assert float(v[labels == left, 0].max()) < 0 < float(v[labels == right, 0].min())
    albedo = model.mean_albedo
    luminance = albedo.mean(1)
    assert float(luminance[labels == 7].mean()) < 0.25  # dark inner mouth
    assert float(luminance[labels == 2].mean()) < float(luminance[labels == 1].mean()) - 0.15  # darker brows
    lips = albedo[labels == 8].mean(0)
    assert float(lips[0] - lips[2]) > 0.2  # pinkish lips
    pupils = _extras(model)[13:15]
    assert float(luminance[pupils].max()) < 0.1
    region = model.evaluation_region
    assert not bool(region[labels == 7].any()) and bool(region[labels == 6].all())
    assert 0.3 < float(region.float().mean()) < 0.9


def test_expressions_keep_lips_and_lids_in_order(model):
    lm = model.landmark_68
    g = torch.Generator().manual_seed(5)
    e = torch.randn(16, model.num_expression, generator=g).clamp(-2, 2)
    v, _ = model(None, e)
    # where the lower inner lip rises above the upper one (negative jaw opening) it tucks in behind it instead of
    # poking through in front; the lids never swap far
    overlap = v[:, lm[66], 1] - v[:, lm[62], 1]
    upper_front = v[:, model.part_labels == 8, 2].max(1).values
    in_front = v[:, lm[66], 2] - upper_front
    assert bool((overlap > 2.0).any())  # the test does exercise closing the mouth "too far"
    assert float(in_front[overlap > 2.0].max()) < -1.0, (overlap, in_front)
    lid_order = torch.minimum(v[:, lm[37], 1] - v[:, lm[41], 1], v[:, lm[44], 1] - v[:, lm[46], 1])
    assert float(lid_order.min()) > -2.5


def test_renders_as_a_face(model):
    render = pytest.importorskip("dfmvr_lib.render")
    from dfmvr_lib.camera import PerspectiveCamera

    camera = PerspectiveCamera.for_image_size(112)
    closed = model.mean_shape[None]
    opened = _expression(model, "jaw_open", 2.5)[None]
    colours = model.mean_albedo[None].expand(2, -1, -1)
    out = render.render_views(torch.cat([closed, opened]), model.triangles, colours, camera,
                              vertex_labels=model.part_labels)
    labels = out.part_labels
    for part in (1, 2, 3, 4, 5, 6, 8, 9):
        assert int((labels[0] == part).sum()) > 3, part
    assert int((labels[1] == 7).sum()) > 3 * max(int((labels[0] == 7).sum()), 5)  # the cavity shows
