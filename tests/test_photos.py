"""Real-photo preparation: landmark detectors, POS crop alignment, parse masks, cache, bad input, folder runs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfmvr_lib.camera import PerspectiveCamera
from dfmvr_lib.config import get_config
from dfmvr_lib.data import landmarks as landmarks_module
from dfmvr_lib.data.photo_crop import (REFERENCE_SIZE, align_face, alignment_template, apply_affine, fit_pos,
                                      fit_similarity, warp_affine)
from dfmvr_lib.data.landmarks import (FaceDetection, LandmarkDetectorUnavailable, NoFaceFound,
                                      normalised_mean_error, read_pts)
from dfmvr_lib.data.photos import (PhotoError, PhotoPreparer, PhotoWarning, discover_photos, load_photo,
                                   prepare_folder)
from dfmvr_lib.face_model.factory import load_face_model
from dfmvr_lib.scene import FaceCoefficients, render_faces
from shared_fixtures import FIXTURES, needs_fixtures

HAVE_DLIB = importlib.util.find_spec("dlib") is not None
needs_dlib = pytest.mark.skipif(not HAVE_DLIB, reason="dlib is not installed (pip install dlib-bin)")


@pytest.fixture(scope="module")
def model():
    return load_face_model(get_config("smoke").face_model)


@pytest.fixture(scope="module")
def template(model):
    return alignment_template(model)


@pytest.fixture(scope="module")
def dlib_detector():
    if not HAVE_DLIB:
        pytest.skip("dlib is not installed")
    return landmarks_module.DlibLandmarkDetector()


def render_mean_face(model, yaw: float = 0.0, translation=(0.0, 0.0, 0.0), size: int = 224):
    coefficients = FaceCoefficients.neutral(model, yaws=torch.tensor([yaw]))
    coefficients.translation[:] = torch.tensor(translation)
    render = render_faces(model, coefficients, PerspectiveCamera.for_image_size(size), background=(1.0, 1.0, 1.0))
    image = (render.render.image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return image, render.landmarks_2d[0, 0].numpy().astype(np.float64), render


class TemplateDetector:
    """A fake detector: the template's landmarks scaled to the image, unless the image is uniform (no face)."""

    name = "fake"

    def __init__(self, template):
        self.template = template
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        if np.asarray(image).std() == 0:
            raise NoFaceFound("uniform image")
        height, width = image.shape[:2]
        points = self.template.landmarks_2d * np.array([width, height]) / REFERENCE_SIZE
        return FaceDetection(points, np.array([0.0, 0.0, width, height]), 1.0, "fake")


def noise_image(size=(120, 100), seed=0, channels=3):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return rng.integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------------ landmarks and NME
def test_read_pts_converts_one_based_to_pixel_centres(tmp_path):
    path = tmp_path / "a.pts"
    lines = ["version: 1", "n_points:  68", "{"] + [f"{i + 1}.0 {2 * i + 1}.5" for i in range(68)] + ["}"]
    path.write_text("\n".join(lines) + "\n")
    points = read_pts(path)
    assert points.shape == (68, 2)
    # 1-based pixel index 1 (the top-left pixel's centre) -> 0.5 in our convention
    np.testing.assert_allclose(points[0], [0.5, 1.0])
    np.testing.assert_allclose(points[:, 0], np.arange(68) + 0.5)


def test_nme_definition():
    truth = np.random.default_rng(0).normal(size=(68, 2)) * 20
    iod = np.linalg.norm(truth[36] - truth[45])
    assert normalised_mean_error(truth, truth) == 0.0
    assert normalised_mean_error(truth + [0.1 * iod, 0.0], truth) == pytest.approx(0.1)


@needs_fixtures
@needs_dlib
def test_dlib_nme_on_300w_fixture(dlib_detector):
    image = np.asarray(Image.open(FIXTURES / "landmarks68" / "image_0010.png").convert("RGB"))
    truth = read_pts(FIXTURES / "landmarks68" / "image_0010.pts")
    np.testing.assert_allclose(truth[0], [611.284152 - 0.5, 272.773913 - 0.5])
    detection = dlib_detector.detect(image)
    assert detection.landmarks.shape == (68, 2)
    assert normalised_mean_error(detection.landmarks, truth) < 0.08


@needs_fixtures
@needs_dlib
def test_dlib_finds_faces_in_every_real_multiview_fixture(dlib_detector):
    folder = FIXTURES / "real_multiview"
    files = sorted(folder.glob("*/*.jpg")) + sorted(folder.glob("*/*/*.png"))
    assert len(files) == 12
    for file in files:
        detection = dlib_detector.detect(np.asarray(Image.open(file).convert("RGB")))
        centre = detection.landmarks.mean(0)
        assert 40 < centre[0] < 184 and 40 < centre[1] < 184, file


@needs_dlib
def test_dlib_no_face_on_blank_image(dlib_detector):
    with pytest.raises(NoFaceFound):
        dlib_detector.detect(np.full((100, 100, 3), 128, np.uint8))


def test_fan_unavailable_gives_clear_message(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    with pytest.raises(LandmarkDetectorUnavailable) as caught:
        landmarks_module.FanLandmarkDetector()
    message = str(caught.value)
    assert "s3fd-619a316812.pth" in message and "2DFAN4" in message and "dlib" in message
    assert str(tmp_path / "empty_hub") in message
    if HAVE_DLIB:
        with pytest.warns(UserWarning, match="FAN weights not found"):
            detector = landmarks_module.default_landmark_detector()
        assert detector.name == "dlib"


def test_fan_load_failure_is_reported_not_raised_raw(monkeypatch):
    face_alignment = pytest.importorskip("face_alignment")
    monkeypatch.setattr(landmarks_module, "missing_fan_weights", lambda checkpoints_dir=None: [])

    def fail(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(face_alignment, "FaceAlignment", fail)
    with pytest.raises(LandmarkDetectorUnavailable, match="network unreachable"):
        landmarks_module.FanLandmarkDetector()


# -------------------------------------------------------------------------------------------------- alignment
def test_pos_and_similarity_recover_known_transforms(template):
    points_3d = template.landmarks_3d
    projection = np.array([[1.3, 0.1, 0.05], [-0.1, -1.3, 0.02]])
    points_2d = points_3d @ projection.T + [50.0, 70.0]
    scale, translation, fitted = fit_pos(points_2d, points_3d)
    np.testing.assert_allclose(fitted, projection, atol=1e-9)
    np.testing.assert_allclose(translation, [50.0, 70.0], atol=1e-9)
    assert scale == pytest.approx(0.5 * (np.linalg.norm(projection[0]) + np.linalg.norm(projection[1])))

    source = template.landmarks_2d
    angle = 0.3
    similarity = 1.7 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ similarity.T + [12.0, -30.0]
    recovered = fit_similarity(source, target)
    np.testing.assert_allclose(recovered, np.concatenate([similarity, [[12.0], [-30.0]]], 1), atol=1e-9)


def test_known_scale_and_shift_of_landmarks_is_undone_exactly(template):
    image = np.zeros((600, 700, 3), np.uint8)
    base = template.landmarks_at(224)
    moved = base * 2.3 + [40.0, -17.0]
    aligned = align_face(image, moved, template, 224)
    reference = align_face(np.zeros((224, 224, 3), np.uint8), base, template, 224)
    np.testing.assert_allclose(aligned.landmarks, reference.landmarks, atol=1e-9)
    np.testing.assert_allclose(aligned.affine[:, :2], reference.affine[:, :2] / 2.3, atol=1e-12)
    # the template's own landmarks are a fixed point of the alignment at any crop size
    np.testing.assert_allclose(reference.landmarks, base, atol=1e-9)
    np.testing.assert_allclose(align_face(image, moved, template, 112).landmarks, template.landmarks_at(112), atol=1e-9)


def test_warp_affine_follows_pixel_centre_convention():
    image = noise_image((40, 30))
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(warp_affine(image, identity, (30, 40)), image)
    # shrinking by 2 about the corner averages 2x2 blocks (box prefilter path and bilinear path agree)
    half = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    expected = image.astype(float).reshape(15, 2, 20, 2, 3).mean((1, 3))
    assert np.abs(warp_affine(image, half, (15, 20)).astype(float) - expected).max() <= 1.0
    quarter = np.array([[0.25, 0.0, 0.0], [0.0, 0.25, 0.0]])     # box-filter path (factor 4)
    expected = image[:28].astype(float).reshape(7, 4, 10, 4, 3).mean((1, 3))
    assert np.abs(warp_affine(image, quarter, (7, 10)).astype(float) - expected).max() <= 1.0


def test_synthetic_render_round_trip(model, template):
    """A render of the mean face, shifted, comes back at the template's scale and position."""
    centred_image, centred_landmarks, centred = render_mean_face(model)
    np.testing.assert_allclose(centred_landmarks, template.landmarks_at(224), atol=1e-3)
    image, landmarks, render = render_mean_face(model, translation=(12.0, -8.0, 30.0))
    aligned = align_face(image, landmarks, template, 224)
    error = np.linalg.norm(aligned.landmarks - template.landmarks_at(224), axis=1)
    assert error.mean() < 0.8 and error.max() < 2.0
    # the face pixels land where the centred render has them (not exactly: under perspective a shifted head is
    # also seen from a slightly different direction, which moves its silhouette by a pixel or two)
    alpha = render.render.alpha[0].reshape(224, 224, 1).numpy()
    warped = warp_affine(alpha.astype(np.float32), aligned.affine, 224)[..., 0] > 0.5
    target = centred.render.alpha[0].reshape(224, 224).numpy() > 0.5
    assert (warped & target).sum() / (warped | target).sum() > 0.93
    # a 112 crop is the same framing at half the size
    small = align_face(image, landmarks, template, 112)
    np.testing.assert_allclose(small.landmarks, aligned.landmarks / 2, atol=1e-9)


@pytest.mark.parametrize("yaw", [-0.6, 0.6])
def test_side_view_round_trip_keeps_scale_and_head_centre(model, template, yaw):
    image, landmarks, render = render_mean_face(model, yaw=yaw, translation=(-6.0, 4.0, 0.0))
    aligned = align_face(image, landmarks, template, 224)
    head_origin = PerspectiveCamera.for_image_size(224).project(torch.tensor([[-6.0, 4.0, 0.0]]))[0].double().numpy()
    assert aligned.affine[0, 0] == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(apply_affine(aligned.affine, head_origin[None])[0], template.target_centre, atol=4.0)


# --------------------------------------------------------------------------------------------- loading and cache
def test_cache_hit_and_invalidation(tmp_path, template):
    photo = tmp_path / "face.png"
    Image.fromarray(noise_image(seed=1)).save(photo)
    detector = TemplateDetector(template)
    preparer = PhotoPreparer(detector=detector, template=template, output_size=64, cache_dir=tmp_path / "cache")
    first = preparer.prepare(photo)
    assert not first.from_cache and detector.calls == 1
    assert first.image.shape == (64, 64, 3) and first.mask.shape == (64, 64) and first.mask.max() > 0
    assert preparer.cache_path(photo).is_file()
    second = preparer.prepare(photo)
    assert second.from_cache and detector.calls == 1
    for name in ("image", "landmarks", "source_landmarks", "affine", "mask", "box"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert second.mask.dtype == np.int64
    Image.fromarray(noise_image(seed=2)).save(photo)         # rewrite the file: new content, new key
    third = preparer.prepare(photo)
    assert not third.from_cache and detector.calls == 2
    assert not np.array_equal(third.image, first.image)
    # other settings -> other entry
    other = PhotoPreparer(detector=detector, template=template, output_size=32, cache_dir=tmp_path / "cache")
    assert other.cache_path(photo) != preparer.cache_path(photo)
    # a damaged entry is recomputed
    preparer.cache_path(photo).write_bytes(b"garbage")
    assert not preparer.prepare(photo).from_cache and detector.calls == 3


def test_parse_provider_is_pluggable(tmp_path, template):
    photo = tmp_path / "face.png"
    Image.fromarray(noise_image(seed=3)).save(photo)

    class Constant:
        name = "constant"

        def __call__(self, image, landmarks):
            return np.ones(image.shape[:2], np.int64)

    preparer = PhotoPreparer(detector=TemplateDetector(template), template=template, output_size=48,
                             parse_provider=Constant(), use_cache=False)
    assert (preparer.prepare(photo).mask == 1).all()


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    cases = {}
    text = folder / "notes_not_image.png"
    text.write_text("this is not a png")
    cases["not image"] = (text, "not a readable image")
    good = folder / "good_source.png"
    Image.fromarray(noise_image((200, 200), seed=4)).save(good)
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    cases["truncated"] = (truncated, "truncated")
    good.unlink()
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty")
    tiny = folder / "tiny.png"
    Image.fromarray(noise_image((40, 50), seed=5)).save(tiny)
    cases["tiny"] = (tiny, "too small")
    blank = folder / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 90, np.uint8)).save(blank)
    cases["no face"] = (blank, "no face")
    return cases


@pytest.mark.parametrize("case", ["not image", "truncated", "empty", "tiny", "no face", "missing"])
def test_bad_input_errors_name_the_file(tmp_path, template, case):
    cases = _bad_files(tmp_path / "bad")
    cases["missing"] = (tmp_path / "bad" / "does_not_exist.png", "cannot read")
    path, reason = cases[case]
    preparer = PhotoPreparer(detector=TemplateDetector(template), template=template, output_size=64,
                             cache_dir=tmp_path / "cache")
    with pytest.raises(PhotoError) as caught:
        preparer.prepare(path)
    assert caught.value.path == path and path.name in str(caught.value)
    assert reason in caught.value.reason


def test_conversions_warn_and_give_rgb(tmp_path, template):
    gray = tmp_path / "gray.png"
    Image.fromarray(noise_image(channels=1)).save(gray)
    rgba = tmp_path / "rgba.png"
    pixels = np.zeros((100, 120, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[:, :60, 3] = 255
    Image.fromarray(pixels, "RGBA").save(rgba)
    deep = tmp_path / "deep16.png"
    values = (np.arange(120 * 100).reshape(100, 120) * 5).astype(np.uint16)
    Image.fromarray(values).save(deep)
    assert Image.open(deep).mode.startswith("I")

    image, notes = load_photo(gray)
    assert image.shape == (100, 120, 3) and np.array_equal(image[..., 0], image[..., 2])
    assert any("grayscale" in note for note in notes)
    image, notes = load_photo(rgba)
    assert image.shape == (100, 120, 3) and any("alpha" in note for note in notes)
    np.testing.assert_array_equal(image[0, 0], [200, 0, 0])            # opaque
    np.testing.assert_array_equal(image[0, 100], [255, 255, 255])      # transparent -> white
    image, notes = load_photo(deep)
    assert image.dtype == np.uint8 and any("16-bit" in note for note in notes)
    assert image[..., 0].max() == round(int(values.max()) * 255 / 65535)

    preparer = PhotoPreparer(detector=TemplateDetector(template), template=template, output_size=64,
                             cache_dir=tmp_path / "cache")
    for path in (gray, rgba, deep):
        for attempt in range(2):      # also announced on a cache hit
            with pytest.warns(PhotoWarning, match=path.name):
                preparer.prepare(path)


# ------------------------------------------------------------------------------------------------- folder runs
def test_discover_layouts(tmp_path):
    views = tmp_path / "views"
    for v in range(3):
        (views / str(v)).mkdir(parents=True)
        Image.fromarray(noise_image(seed=v)).save(views / str(v) / f"0012345{v}.png")
    groups = discover_photos(views)
    assert len(groups) == 1 and groups[0].kind == "triplet"
    assert [f.name for f in groups[0].files] == ["00123450.png", "00123451.png", "00123452.png"]

    named = tmp_path / "named"
    named.mkdir()
    for view in ("Right", "left", "front"):
        Image.fromarray(noise_image()).save(named / f"anna_{view}.jpg")
    Image.fromarray(noise_image()).save(named / "bob-front.png")
    Image.fromarray(noise_image()).save(named / "portrait.png")
    groups = {g.name: g for g in discover_photos(named)}
    assert [f.name for f in groups["anna"].files] == ["anna_left.jpg", "anna_front.jpg", "anna_Right.jpg"]
    assert groups["bob"].files[0] is None and groups["bob"].files[1].name == "bob-front.png"
    assert groups["portrait"].kind == "single"


def test_folder_run_continues_after_failures(tmp_path, template):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, view in enumerate(("left", "front", "right")):
        Image.fromarray(noise_image(seed=10 + i)).save(folder / f"anna_{view}.png")
    Image.fromarray(noise_image(seed=20)).save(folder / "single.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(noise_image(seed=21)).save(folder / "bob_front.png")
    preparer = PhotoPreparer(detector=TemplateDetector(template), template=template, output_size=64,
                             cache_dir=tmp_path / "cache")
    run = prepare_folder(folder, preparer, progress=False)
    summary = run.summary.set_index("file")
    assert {"status", "reason"} <= set(summary.columns)
    assert summary.loc[str(folder / "broken.jpg"), "status"] == "failed"
    assert "truncated" in summary.loc[str(folder / "broken.jpg"), "reason"]
    for name in ("anna_left.png", "anna_front.png", "anna_right.png", "single.png", "bob_front.png"):
        assert summary.loc[str(folder / name), "status"] == "ok"
    assert (run.summary["status"] == "missing").sum() == 2          # bob's left and right views
    assert len(run.failures) == 3
    samples = run.samples()
    assert len(samples) == 1 and samples[0].subject_id == "anna"
    samples[0].validate("anna")
    assert len(run.samples(complete_only=False)) == 2
    again = prepare_folder(folder, preparer, progress=False)
    assert again.summary.loc[again.summary["status"] == "ok", "cached"].all()


@needs_fixtures
@needs_dlib
def test_folder_run_on_real_multiview_fixture(tmp_path, template, dlib_detector):
    preparer = PhotoPreparer(detector=dlib_detector, template=template, output_size=64, cache_dir=tmp_path / "c")
    run = prepare_folder(FIXTURES / "real_multiview" / "pixelface_crops", preparer, progress=False)
    assert (run.summary["status"] == "ok").all(), run.summary
    assert len(run.samples()) == 3
