"""Settings of the synthetic multi-view benchmark generator (see :mod:`dfmvr_lib.data.synthetic`).

:class:`SyntheticSettings` holds every value that changes the generated files; it is built from a
:class:`~dfmvr_lib.config.WorkbookConfig` and a preset name with :meth:`SyntheticSettings.from_config`, and is written
to ``settings.json`` so that a re-run with identical settings is recognised and skipped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import FaceModelConfig, WorkbookConfig, dataclass_from_dict

PRESETS = ("pixelface-like", "bosphorus-like")
YAW_MODES = ("fixed", "choice", "uniform")
LEFT_YAW_MODES = ("mirror",) + YAW_MODES
LIGHTING_MODES = ("fixed", "random")
BACKGROUND_KINDS = ("flat", "gradient", "noise", "shapes", "stripes")
SPLITS = ("train", "validation", "test")
SETTINGS_VERSION = 1


@dataclass(frozen=True)
class SyntheticSettings:
    """Everything that determines a generated benchmark (angles typed by people are in degrees, lengths in mm).

    Sizes and split: ``train_subjects``, ``validation_subjects``, ``test_subjects`` (split by subject, in this order
    of subject index), ``samples_per_subject``.

    Views (A left, B front, C right): C's yaw is ``+side`` and A's ``-side`` where ``side`` follows ``yaw_mode``:
    ``"fixed"`` (``side_yaw_degrees``), ``"choice"`` (uniformly from ``yaw_choices_degrees`` per sample) or
    ``"uniform"`` (uniform in ``yaw_range_degrees``). ``left_yaw_mode`` lets A differ from C (robustness table):
    ``"mirror"`` (A = -C), ``"fixed"`` (A = -``left_yaw_degrees``), ``"choice"`` / ``"uniform"`` (drawn
    independently of C). Each view gets Gaussian jitter: yaw ``yaw_jitter_degrees``, pitch ``pitch_jitter_degrees``,
    roll ``roll_jitter_degrees`` (std) and translation ``translation_jitter_mm`` (std per x, y, z).

    Faces: identity ~ N(0, ``identity_scale``^2) over ``face_model.identity_components`` components (the ground-truth
    model, larger than the reconstruction model's ``reconstruction_identity_components``), expression ~
    N(0, ``expression_scale``^2), albedo ~ N(0, ``albedo_scale``^2). Identity and albedo are per subject, expression,
    lighting and pose per sample. The displacement field (per subject) is a sum of ``displacement_bumps`` Gaussian
    bumps (sigma uniform in ``displacement_sigma_mm``) centred on random front-face points of the mean shape, made
    zero-mean and scaled to an RMS of ``displacement_mm`` over the front face, applied along the vertex normals.

    Lighting (SH, shared by the three views): ``"fixed"``: every sample gets the same white light from
    ``fixed_light_direction`` (head frame, towards the light) with band-1 strength ``fixed_light_strength``;
    ``"random"``: direction from the front hemisphere, strength uniform in ``light_strength_range``, colour tint
    ``1 + N(0, light_tint_std^2)`` per channel, ambient offset ``N(0, ambient_std^2)``.

    Pictures: backgrounds drawn uniformly from ``background_kinds`` per view; Gaussian blur sigma uniform in
    ``blur_sigma_range`` pixels then Gaussian pixel noise with std uniform in ``noise_std_range`` (per sample).

    Output: ground-truth meshes (PLY) for the splits in ``mesh_splits``; PNG ``png_compress_level``; ``batch_size``
    samples are rendered together (bit-exact reproducibility holds for the same batch size).
    """

    preset: str = "pixelface-like"
    seed: int = 0
    image_size: int = 112
    focal_length_at_224: float = 1015.0
    camera_distance_mm: float = 1000.0
    face_model: FaceModelConfig = field(default_factory=lambda: FaceModelConfig(identity_components=120))
    reconstruction_identity_components: int = 80
    render_backend: str = "auto"
    train_subjects: int = 8
    validation_subjects: int = 2
    test_subjects: int = 2
    samples_per_subject: int = 2
    yaw_mode: str = "fixed"
    side_yaw_degrees: float = 30.0
    yaw_choices_degrees: tuple[float, ...] = (10.0, 20.0, 30.0, 45.0)
    yaw_range_degrees: tuple[float, float] = (10.0, 45.0)
    left_yaw_mode: str = "mirror"
    left_yaw_degrees: float = 30.0
    yaw_jitter_degrees: float = 1.0
    pitch_jitter_degrees: float = 3.0
    roll_jitter_degrees: float = 2.0
    translation_jitter_mm: tuple[float, float, float] = (4.0, 4.0, 10.0)
    identity_scale: float = 1.0
    expression_scale: float = 0.8
    albedo_scale: float = 1.0
    displacement_mm: float = 2.0
    displacement_bumps: int = 6
    displacement_sigma_mm: tuple[float, float] = (12.0, 30.0)
    lighting: str = "fixed"
    fixed_light_direction: tuple[float, float, float] = (0.0, 0.3, 1.0)
    fixed_light_strength: float = 0.4
    light_strength_range: tuple[float, float] = (0.15, 0.7)
    light_tint_std: float = 0.08
    ambient_std: float = 0.08
    background_kinds: tuple[str, ...] = BACKGROUND_KINDS
    blur_sigma_range: tuple[float, float] = (0.0, 0.7)
    noise_std_range: tuple[float, float] = (0.0, 0.015)
    mesh_splits: tuple[str, ...] = ("validation", "test")
    png_compress_level: int = 1
    batch_size: int = 8

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticSettings: {message}")

        check(self.preset in PRESETS, f"preset must be one of {PRESETS}, got {self.preset!r}")
        check(self.yaw_mode in YAW_MODES, f"yaw_mode must be one of {YAW_MODES}, got {self.yaw_mode!r}")
        check(self.left_yaw_mode in LEFT_YAW_MODES,
              f"left_yaw_mode must be one of {LEFT_YAW_MODES}, got {self.left_yaw_mode!r}")
        check(self.lighting in LIGHTING_MODES, f"lighting must be one of {LIGHTING_MODES}, got {self.lighting!r}")
        check(len(self.yaw_choices_degrees) > 0, "yaw_choices_degrees must not be empty")
        check(len(self.yaw_range_degrees) == 2 and self.yaw_range_degrees[0] <= self.yaw_range_degrees[1],
              f"yaw_range_degrees must be (low, high), got {self.yaw_range_degrees}")
        check(all(0 <= abs(y) < 90 for y in (self.side_yaw_degrees, self.left_yaw_degrees,
                                               *self.yaw_choices_degrees, *self.yaw_range_degrees)),
              "yaw angles must lie in (-90, 90) degrees")
        check(all(k in BACKGROUND_KINDS for k in self.background_kinds) and len(self.background_kinds) > 0,
              f"background_kinds must be a non-empty subset of {BACKGROUND_KINDS}, got {self.background_kinds}")
        check(all(s in SPLITS for s in self.mesh_splits), f"mesh_splits must be a subset of {SPLITS}")
        check(min(self.train_subjects, self.validation_subjects, self.test_subjects) >= 0
              and self.train_subjects + self.validation_subjects + self.test_subjects > 0,
              "subject counts must be >= 0 and not all zero")
        check(self.samples_per_subject >= 1, "samples_per_subject must be >= 1")
        check(self.image_size >= 16, f"image_size must be >= 16, got {self.image_size}")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.face_model.identity_components >= self.reconstruction_identity_components,
              "the ground-truth model needs at least as many identity components as the reconstruction model")
        check(self.displacement_mm >= 0 and self.displacement_bumps >= 1, "displacement must be >= 0 with >= 1 bump")
        check(0 <= self.png_compress_level <= 9, "png_compress_level must be in 0..9")

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: WorkbookConfig, preset: str | None = None, **overrides: Any) -> "SyntheticSettings":
        """Settings for ``config`` (a :class:`~dfmvr_lib.config.WorkbookConfig`) and a preset.

        Presets:
            ``"pixelface-like"``: three fixed cameras at +-``config.data.side_yaw_degrees``, one lighting setup (the
            same front-ish white SH light for every sample), many expressions (expression scale 1.0).
            ``"bosphorus-like"``: side views at +-45 deg, varied lighting (random direction, strength, tint),
            expression scale 0.7.

        ``preset`` defaults to ``config.data.preset``; keyword ``overrides`` replace single fields afterwards, e.g.
        ``left_yaw_mode="fixed", left_yaw_degrees=10`` for the robustness table.
        """
        data = config.data
        preset = preset or data.preset
        if preset not in PRESETS:
            raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {PRESETS}")
        face_model = dataclasses.replace(config.face_model, identity_components=max(
            data.ground_truth_identity_components, config.face_model.identity_components))
        common = dict(
            preset=preset, seed=config.seed, image_size=config.image_size,
            focal_length_at_224=config.camera.focal_length_at_224,
            camera_distance_mm=config.camera.camera_distance_mm, face_model=face_model,
            reconstruction_identity_components=config.face_model.identity_components,
            render_backend=config.render.backend,
            train_subjects=data.train_subjects, validation_subjects=data.validation_subjects,
            test_subjects=data.test_subjects, samples_per_subject=data.samples_per_subject,
            displacement_mm=data.ground_truth_displacement_mm, mesh_splits=tuple(data.mesh_splits),
            batch_size=data.batch_size,
        )
        if preset == "pixelface-like":
            specific = dict(yaw_mode="fixed", side_yaw_degrees=float(data.side_yaw_degrees), lighting="fixed",
                            expression_scale=1.0)
        else:
            specific = dict(yaw_mode="fixed", side_yaw_degrees=45.0, left_yaw_degrees=45.0, lighting="random",
                            expression_scale=0.7)
        settings = cls(**common, **specific)
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        return settings

    # ------------------------------------------------------------------------------------------------------------
    @property
    def num_subjects(self) -> int:
        return self.train_subjects + self.validation_subjects + self.test_subjects

    @property
    def num_samples(self) -> int:
        return self.num_subjects * self.samples_per_subject

    @property
    def focal_length(self) -> float:
        return self.focal_length_at_224 * self.image_size / 224.0

    def split_of(self, subject_index: int) -> str:
        """``"train"``, ``"validation"`` or ``"test"`` for a subject index (contiguous blocks, in that order)."""
        if subject_index < self.train_subjects:
            return "train"
        if subject_index < self.train_subjects + self.validation_subjects:
            return "validation"
        if subject_index < self.num_subjects:
            return "test"
        raise IndexError(f"subject index {subject_index} out of range [0, {self.num_subjects})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (tuples become lists), with the settings version."""
        return json.loads(json.dumps({"version": SETTINGS_VERSION, **dataclasses.asdict(self)}))

    def hash(self) -> str:
        """Short stable hash of :meth:`to_dict`."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SyntheticSettings":
        """Inverse of :meth:`to_dict` (as read back from ``settings.json``)."""
        data = dict(data)
        data.pop("version", None)
        try:
            return dataclass_from_dict(cls, data)
        except KeyError as error:
            raise ValueError(f"unknown synthetic settings: {error}") from None
