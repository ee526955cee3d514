"""Random draws and batched rendering for the synthetic benchmark (see :mod:`dfmvr_lib.data.synthetic`).

Every sample owns its random streams: the subject's (identity, albedo, displacement field) comes from
``SeedSequence([seed, 0, subject])`` and the sample's (expression, views, lighting, backgrounds, blur, noise) from
``SeedSequence([seed, 1, subject, sample])``, so a sample never depends on which batch or worker makes it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..camera import PerspectiveCamera, apply_pose
from ..face_model.base import MorphableModel
from ..lighting import directional_lighting, shade
from ..render import render_views
from ..scene import FaceRender
from .synthetic_settings import SyntheticSettings


@dataclass(frozen=True)
class SampleSpec:
    """Which sample to make: indices, ids and split."""

    subject_index: int
    sample_index: int
    split: str

    @property
    def subject_id(self) -> str:
        return f"subject_{self.subject_index:05d}"

    @property
    def sample_id(self) -> str:
        return f"s{self.subject_index:05d}_e{self.sample_index:02d}"


def sample_specs(settings: SyntheticSettings) -> list[SampleSpec]:
    """All samples of a benchmark in generation order (subject-major)."""
    return [SampleSpec(subject, sample, settings.split_of(subject))
            for subject in range(settings.num_subjects) for sample in range(settings.samples_per_subject)]


@dataclass
class SampleDraw:
    """The random values of one sample (numpy; angles radians, lengths mm).

    ``identity`` (K_id,), ``albedo`` (K_alb,), ``expression`` (K_exp,), ``lighting`` (27,) SH, ``angles`` (3 views, 3)
    pitch/yaw/roll, ``translation`` (3, 3), ``nominal_yaw_degrees`` (3,) the yaws before jitter,
    ``bump_centres`` (K, 3) mean-shape points, ``bump_sigmas`` (K,), ``bump_weights`` (K,) unscaled bump weights,
    ``background`` (3, H, W, 3) float in [0, 1], ``noise`` (3, H, W, 3) unit Gaussian noise.
    """

    spec: SampleSpec
    identity: np.ndarray
    albedo: np.ndarray
    expression: np.ndarray
    lighting: np.ndarray
    light_direction: np.ndarray
    light_strength: float
    angles: np.ndarray
    translation: np.ndarray
    nominal_yaw_degrees: np.ndarray
    bump_centres: np.ndarray
    bump_sigmas: np.ndarray
    bump_weights: np.ndarray
    background: np.ndarray
    background_kinds: tuple[str, str, str]
    blur_sigma: float
    noise_std: float
    noise: np.ndarray


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _side_yaw(rng: np.random.Generator, mode: str, fixed: float, choices, low_high) -> float:
    if mode == "fixed":
        return float(fixed)
    if mode == "choice":
        return float(choices[int(rng.integers(len(choices)))])
    return float(rng.uniform(low_high[0], low_high[1]))


def draw_sample(spec: SampleSpec, settings: SyntheticSettings, model: MorphableModel) -> SampleDraw:
    """The random values of one sample (deterministic for the settings' seed and the sample's indices)."""
    subject = _rng(settings.seed, 0, spec.subject_index)
    identity = settings.identity_scale * subject.standard_normal(model.num_identity)
    albedo = settings.albedo_scale * subject.standard_normal(model.num_albedo)
    region = np.flatnonzero(model.evaluation_region.cpu().numpy())
    K = settings.displacement_bumps
    centres = model.mean_shape.cpu().numpy()[region[subject.integers(region.size, size=K)]]
    sigmas = subject.uniform(*settings.displacement_sigma_mm, size=K)
    weights = subject.standard_normal(K)

    rng = _rng(settings.seed, 1, spec.subject_index, spec.sample_index)
    expression = settings.expression_scale * rng.standard_normal(model.num_expression)
    side = _side_yaw(rng, settings.yaw_mode, settings.side_yaw_degrees, settings.yaw_choices_degrees,
                     settings.yaw_range_degrees)
    left = side if settings.left_yaw_mode == "mirror" else _side_yaw(
        rng, settings.left_yaw_mode, settings.left_yaw_degrees, settings.yaw_choices_degrees,
        settings.yaw_range_degrees)
    nominal = np.array([-left, 0.0, side])
    jitter = rng.standard_normal((3, 3)) * np.array(
        [settings.pitch_jitter_degrees, settings.yaw_jitter_degrees, settings.roll_jitter_degrees])
    angles = np.radians(jitter + np.stack([np.zeros(3), nominal, np.zeros(3)], -1))
    translation = rng.standard_normal((3, 3)) * np.asarray(settings.translation_jitter_mm)

    if settings.lighting == "fixed":
        direction = np.asarray(settings.fixed_light_direction, dtype=np.float64)
        strength, ambient, tint = settings.fixed_light_strength, 0.0, np.ones(3)
    else:
        direction = rng.standard_normal(3) * np.array([0.6, 0.4, 0.3]) + np.array([0.0, 0.3, 1.0])
        strength = float(rng.uniform(*settings.light_strength_range))
        tint = 1.0 + settings.light_tint_std * rng.standard_normal(3)
        ambient = settings.ambient_std * float(rng.standard_normal())
    direction = direction / np.linalg.norm(direction)
    lighting = directional_lighting(torch.as_tensor(direction, dtype=torch.float32)[None], ambient=float(ambient),
                                    strength=float(strength),
                                    colour=torch.as_tensor(tint, dtype=torch.float32)[None])[0].numpy()

    size = settings.image_size
    kinds, backgrounds = [], []
    for _ in range(3):
        kind = settings.background_kinds[int(rng.integers(len(settings.background_kinds)))]
        kinds.append(kind)
        backgrounds.append(random_background(rng, kind, size))
    blur = float(rng.uniform(*settings.blur_sigma_range))
    noise_std = float(rng.uniform(*settings.noise_std_range))
    noise = rng.standard_normal((3, size, size, 3), dtype=np.float32)
    return SampleDraw(
        spec=spec, identity=identity.astype(np.float32), albedo=albedo.astype(np.float32),
        expression=expression.astype(np.float32), lighting=lighting.astype(np.float32),
        light_direction=direction.astype(np.float32), light_strength=float(strength),
        angles=angles.astype(np.float32), translation=translation.astype(np.float32),
        nominal_yaw_degrees=nominal, bump_centres=centres.astype(np.float32), bump_sigmas=sigmas.astype(np.float32),
        bump_weights=weights.astype(np.float32), background=np.stack(backgrounds).astype(np.float32),
        background_kinds=tuple(kinds), blur_sigma=blur, noise_std=noise_std, noise=noise)


# ----------------------------------------------------------------------------------------------------------------
# Backgrounds

def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a (k, k, C) grid to (size, size, C) (corners aligned)."""
    k = grid.shape[0]
    position = np.linspace(0.0, k - 1.0, size)
    low = np.minimum(np.floor(position).astype(int), k - 2)
    frac = (position - low)[:, None, None]
    rows = grid[low] * (1 - frac) + grid[low + 1] * frac  # (size, k, C)
    frac_c = (position - low)[None, :, None]
    return rows[:, low] * (1 - frac_c) + rows[:, low + 1] * frac_c


def random_background(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A (size, size, 3) float background in [0, 1]: ``flat``, ``gradient``, ``noise`` (blurred multi-scale
    noise), ``shapes`` (random discs and rotated rectangles on a gradient) or ``stripes``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size  # in [0, 1)
    colour = lambda: rng.uniform(0.03, 0.97, size=3).astype(np.float32)  # noqa: E731

    def gradient() -> np.ndarray:
        angle = rng.uniform(0, 2 * math.pi)
        t = (x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        first, second = colour(), colour()
        return first * (1 - t[..., None]) + second * t[..., None]

    if kind == "flat":
        image = np.broadcast_to(colour(), (size, size, 3)).copy()
    elif kind == "gradient":
        image = gradient()
    elif kind == "noise":
        image = np.zeros((size, size, 3), np.float32)
        weight_sum = 0.0
        for cells, weight in ((int(rng.integers(2, 5)), 1.0), (int(rng.integers(6, 14)), 0.5),
                              (int(rng.integers(16, 32)), 0.25)):
            image += weight * _upsample(rng.uniform(0, 1, size=(cells, cells, 3)).astype(np.float32), size)
            weight_sum += weight
        image /= weight_sum
        image = 0.5 * image + 0.5 * gradient()
    elif kind == "shapes":
        image = gradient()
        for _ in range(int(rng.integers(3, 9))):
            cx, cy = rng.uniform(-0.1, 1.1, size=2)
            fill = colour()
            if rng.random() < 0.5:
                radius = rng.uniform(0.05, 0.3)
                mask = (x - cx) ** 2 + (y - cy) ** 2 < radius ** 2
            else:
                angle = rng.uniform(0, math.pi)
                half = rng.uniform(0.04, 0.35, size=2)
                u = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
                v = -(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)
                mask = (np.abs(u) < half[0]) & (np.abs(v) < half[1])
            image[mask] = fill
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        frequency = rng.uniform(2.0, 12.0)
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + phase)
        t = np.clip(0.5 + 2.0 * wave, 0.0, 1.0)[..., None]
        image = colour() * (1 - t) + colour() * t
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(image, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Ground truth geometry

def displacement_field(model: MorphableModel, centres: torch.Tensor, sigmas: torch.Tensor,
                       amplitudes: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Per-vertex normal displacement (B, V) mm: ``sum_k a_k exp(-|p - c_k|^2 / (2 s_k^2)) - offset``.

    ``p`` are the mean-shape vertices; centres (B, K, 3) mm, sigmas (B, K) mm, amplitudes (B, K) mm, offset (B,) mm.
    """
    points = model.mean_shape  # (V, 3)
    squared = ((points.square().sum(-1)[None, :, None] + centres.square().sum(-1)[:, None, :]
                - 2.0 * points @ centres.transpose(1, 2))).clamp(min=0.0)  # (B, V, K)
    bumps = torch.exp(-squared / (2.0 * sigmas[:, None, :] ** 2))
    return (bumps * amplitudes[:, None, :]).sum(-1) - offset[:, None]


def scale_displacement(model: MorphableModel, centres: torch.Tensor, sigmas: torch.Tensor, weights: torch.Tensor,
                       rms_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitudes (B, K) and offset (B,) that make the bump field zero-mean with RMS ``rms_mm`` on the front face."""
    B = centres.shape[0]
    raw = displacement_field(model, centres, sigmas, weights, torch.zeros(B))
    region = model.evaluation_region
    offset = raw[:, region].mean(1)
    rms = (raw[:, region] - offset[:, None]).square().mean(1).sqrt().clamp(min=1e-6)
    scale = rms_mm / rms
    return weights * scale[:, None], offset * scale


def ground_truth_vertices(model: MorphableModel, identity: torch.Tensor, expression: torch.Tensor,
                          centres: torch.Tensor, sigmas: torch.Tensor, amplitudes: torch.Tensor,
                          offset: torch.Tensor) -> torch.Tensor:
    """Ground-truth head-frame vertices (B, V, 3) mm: the model shape displaced along its vertex normals.

    ``identity`` may use more components than the reconstruction model (the ground-truth model has them).
    """
    shape = model.shape(identity, expression)
    field = displacement_field(model, centres, sigmas, amplitudes, offset)
    return shape + field.unsqueeze(-1) * model.normals(shape)


# ----------------------------------------------------------------------------------------------------------------
# Rendering

@dataclass
class RenderedSample:
    """Everything written for one sample (numpy): ``images`` (3, H, W, 3) uint8, ``parse_maps`` (3, H, W) uint8,
    ``landmarks_2d`` (3, 68, 2) pixels, ``landmark_visibility`` (3, 68) bool, ``landmarks_3d`` (101, 3) mm,
    ``vertices`` (V, 3) mm head frame (ground truth), ``amplitudes`` (K,) and ``offset`` of the displacement."""

    draw: SampleDraw
    images: np.ndarray
    parse_maps: np.ndarray
    landmarks_2d: np.ndarray
    landmark_visibility: np.ndarray
    landmarks_3d: np.ndarray
    vertices: np.ndarray
    amplitudes: np.ndarray
    offset: float


def render_batch(model: MorphableModel, camera: PerspectiveCamera, draws: list[SampleDraw],
                 settings: SyntheticSettings) -> list[RenderedSample]:
    """Render B samples x 3 views at once (one ``render_views`` call) and post-process the pictures."""
    t = lambda name: torch.as_tensor(np.stack([getattr(d, name) for d in draws]))  # noqa: E731
    B = len(draws)
    with torch.no_grad():
        centres, sigmas = t("bump_centres"), t("bump_sigmas")
        amplitudes, offset = scale_displacement(model, centres, sigmas, t("bump_weights"), settings.displacement_mm)
        vertices = ground_truth_vertices(model, t("identity"), t("expression"), centres, sigmas, amplitudes, offset)
        albedo = model.albedo(t("albedo"))
        colours = shade(albedo, model.normals(vertices), t("lighting"))
        V = vertices.shape[1]
        angles, translation = t("angles"), t("translation")
        posed = apply_pose(vertices.unsqueeze(1).expand(B, 3, V, 3).reshape(B * 3, V, 3), angles.reshape(B * 3, 3),
                           translation.reshape(B * 3, 3))
        background = torch.as_tensor(np.stack([d.background for d in draws]))
        background = background.reshape(B * 3, *draws[0].background.shape[1:])
        output = render_views(posed, model.triangles, colours.unsqueeze(1).expand(B, 3, V, 3).reshape(B * 3, V, 3),
                              camera, vertex_labels=model.part_labels,
                              background=background.permute(0, 3, 1, 2), backend=settings.render_backend)
        landmarks = posed[:, model.landmark_68]
        faces = FaceRender(render=output, vertices=vertices, posed_vertices=posed.reshape(B, 3, V, 3), colours=colours,
                           landmarks_2d=camera.project(landmarks).reshape(B, 3, 68, 2),
                           landmark_depth=camera.depth(landmarks).reshape(B, 3, 68))
        visibility = faces.landmark_visibility().numpy()
        images = output.image.permute(0, 2, 3, 1).reshape(B, 3, *output.image.shape[2:], 3).numpy()
        parse = output.part_labels.reshape(B, 3, *output.part_labels.shape[1:]).numpy().astype(np.uint8)
        landmarks_2d = faces.landmarks_2d.numpy()
        landmarks_3d = vertices[:, model.landmark_101].numpy()
        vertices_np = vertices.numpy()
        amplitudes_np, offset_np = amplitudes.numpy(), offset.numpy()
    results = []
    for b, draw in enumerate(draws):
        pictures = np.empty(images.shape[1:], dtype=np.uint8)
        for view in range(3):
            image = images[b, view]
            if draw.blur_sigma > 0.05:
                image = ndimage.gaussian_filter(image, sigma=(draw.blur_sigma, draw.blur_sigma, 0.0), mode="nearest")
            image = image + draw.noise_std * draw.noise[view]
            pictures[view] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        results.append(RenderedSample(
            draw=draw, images=pictures, parse_maps=parse[b], landmarks_2d=landmarks_2d[b].astype(np.float32),
            landmark_visibility=visibility[b], landmarks_3d=landmarks_3d[b].astype(np.float32),
            vertices=vertices_np[b].astype(np.float32), amplitudes=amplitudes_np[b].astype(np.float32),
            offset=float(offset_np[b])))
    return results
