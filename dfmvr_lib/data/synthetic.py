"""The synthetic multi-view face benchmark: generator (:func:`generate_benchmark`) and dataset
(:class:`SyntheticMultiViewDataset`).

What a sample is
    Three views (A left, B front, C right, docs/conventions.md) of one face rendered by the project's forward model
    (morphable model -> SH shading in the head frame -> pose -> renderer), with random backgrounds, mild blur and
    pixel noise. Identity and albedo are per subject; expression, lighting (shared by the three views), pose jitter,
    backgrounds, blur and noise are per sample. Splits are by subject (train, then validation, then test subject
    indices), so no subject appears in two splits.

Ground truth outside the reconstruction model's span
    A perfect network still has a non-zero error: the faces use ``DataConfig.ground_truth_identity_components``
    identity components (default 120; the network regresses ``face_model.identity_components`` = 80; the procedural
    model's first 80 columns are identical for the same seed) and a smooth per-subject displacement along the vertex
    normals: a sum of ``displacement_bumps`` (6) Gaussian bumps, sigma 12-30 mm, centred on random front-face points,
    made zero-mean and scaled to an RMS of ``DataConfig.ground_truth_displacement_mm`` (2 mm) over the front face
    (``model.evaluation_region``). Images, parse maps and landmarks are rendered from these displaced vertices.

Presets (:meth:`SyntheticSettings.from_config`)
    ``"pixelface-like"``: fixed cameras at +-``DataConfig.side_yaw_degrees``, one lighting setup (the same front-ish
    white SH light for every sample), expression scale 1.0. ``"bosphorus-like"``: side views at +-45 deg, random
    lighting (direction from the front hemisphere, strength 0.15-0.7, colour tint, ambient), expression scale 0.7.
    For the robustness table: ``SyntheticSettings.from_config(config, "bosphorus-like", left_yaw_mode="fixed",
    left_yaw_degrees=10)`` (or ``left_yaw_mode="choice"`` for a random yaw from 10/20/30/45 per sample).
    Jitter (std): yaw 1 deg, pitch 3 deg, roll 2 deg, translation (4, 4, 10) mm. Blur sigma 0-0.7 px, noise std
    0-0.015.

Files (``root/``)
    ``settings.json``: the generator settings (:class:`SyntheticSettings`), their hash, the config hash.
    ``samples/<sample_id>/``: ``A.png B.png C.png`` (RGB), ``A_parse.png ...`` (uint8 part labels 0-9, exact, from
    the renderer), ``annotations.npz`` (``landmarks_2d`` (3, 68, 2) pixels, ``landmark_visibility`` (3, 68),
    ``angles`` (3, 3) radians pitch/yaw/roll, ``translation`` (3, 3) mm, ``landmarks_3d`` (101, 3) mm head frame,
    ``nominal_yaw_degrees`` (3,)), ``coefficients.npz`` (``identity`` (K_gt,), ``expression``, ``albedo``,
    ``lighting`` (27,), displacement ``bump_centres``, ``bump_sigmas``, ``bump_amplitudes``, ``bump_offset``:
    :func:`dfmvr_lib.data.synthetic_scene.ground_truth_vertices` rebuilds the mesh), ``mesh.ply`` (ground-truth
    vertices in mm, head frame, model topology; only for ``mesh_splits``, validation and test by default),
    ``row.json`` (its manifest row).
    ``manifest.csv``: one row per sample (``pandas.read_csv``), written last; its presence marks a complete run.

Determinism and resuming
    Each sample draws from its own seeded streams (:mod:`.synthetic_scene`) and samples are rendered in fixed batches
    of ``batch_size``, so the same settings give identical files. Sample folders are written under a temporary name
    and renamed when complete; an interrupted run resumes where it stopped (complete folders are kept, partial ones
    discarded); a finished run with identical settings is skipped.

>>> from dfmvr_lib.config import get_config                          # doctest: +SKIP
>>> root = generate_benchmark("data/synthetic", get_config("smoke"))  # doctest: +SKIP
>>> sample = SyntheticMultiViewDataset(root, "test")[0]               # doctest: +SKIP
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Callable

import numba
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..camera import PerspectiveCamera
from ..config import WorkbookConfig
from ..face_model import load_face_model
from ..provenance import atomic_path, remove_stale_temporaries
from .mesh_io import read_ply, write_ply
from .sample import VIEW_NAMES, MultiViewSample
from .synthetic_scene import (RenderedSample, SampleSpec, draw_sample, ground_truth_vertices, render_batch,
                              sample_specs)
from .synthetic_settings import PRESETS, SPLITS, SyntheticSettings

__all__ = ["PRESETS", "SPLITS", "SyntheticSettings", "SyntheticMultiViewDataset", "generate_benchmark",
           "ground_truth_vertices", "load_manifest", "load_settings"]

SETTINGS_FILE = "settings.json"
MANIFEST_FILE = "manifest.csv"
SAMPLES_DIR = "samples"
PARTIAL_PREFIX = ".partial-"


# ----------------------------------------------------------------------------------------------------------------
# Generator state (one per process: the main process, or each pool worker)

_STATE: dict = {}


def _load_model(settings: SyntheticSettings):
    return load_face_model(settings.face_model)


def _set_threads(threads: int) -> tuple[int, int]:
    """Set torch and numba threads; return the previous (torch, numba) counts."""
    previous = (torch.get_num_threads(), numba.get_num_threads())
    torch.set_num_threads(max(1, threads))
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return previous


def _init_state(settings: SyntheticSettings, root: str, threads: int | None) -> None:
    if threads is not None:
        _set_threads(threads)
    _STATE.clear()
    _STATE.update(settings=settings, root=Path(root), model=_load_model(settings),
                  camera=PerspectiveCamera.for_image_size(settings.image_size, settings.focal_length_at_224,
                                                          settings.camera_distance_mm))


def _make_batch(specs: list[SampleSpec]) -> list[dict]:
    """Render and write the samples of one batch that are not on disk yet; return all their manifest rows."""
    settings, root, model, camera = (_STATE[k] for k in ("settings", "root", "model", "camera"))
    todo = [spec for spec in specs if not (root / SAMPLES_DIR / spec.sample_id / "row.json").is_file()]
    if todo:
        # the whole batch is rendered (fixed batch composition keeps the numbers bit-identical on resume)
        rendered = render_batch(model, camera, [draw_sample(spec, settings, model) for spec in specs], settings)
        for item in rendered:
            if item.draw.spec in todo:
                _write_sample(root, item, settings, model)
    return [json.loads((root / SAMPLES_DIR / spec.sample_id / "row.json").read_text()) for spec in specs]


def _save_png(array: np.ndarray, path: Path, level: int) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=level)


def _write_sample(root: Path, item: RenderedSample, settings: SyntheticSettings, model) -> None:
    draw, spec = item.draw, item.draw.spec
    final = root / SAMPLES_DIR / spec.sample_id
    partial = root / SAMPLES_DIR / f"{PARTIAL_PREFIX}{spec.sample_id}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    relative = lambda name: f"{SAMPLES_DIR}/{spec.sample_id}/{name}"  # noqa: E731
    row = {"sample_id": spec.sample_id, "subject_id": spec.subject_id, "split": spec.split,
           "preset": settings.preset, "subject_index": spec.subject_index, "sample_index": spec.sample_index}
    for view, name in enumerate(VIEW_NAMES):
        _save_png(item.images[view], partial / f"{name}.png", settings.png_compress_level)
        _save_png(item.parse_maps[view], partial / f"{name}_parse.png", settings.png_compress_level)
    for view, name in enumerate(VIEW_NAMES):
        row[f"yaw_{name}_degrees"] = float(draw.nominal_yaw_degrees[view])
    for view, name in enumerate(VIEW_NAMES):
        row[f"pose_yaw_{name}_degrees"] = round(float(np.degrees(draw.angles[view, 1])), 4)
    direction = draw.light_direction
    row.update({
        "light": settings.lighting,
        "light_azimuth_degrees": round(float(np.degrees(np.arctan2(direction[0], direction[2]))), 3),
        "light_elevation_degrees": round(float(np.degrees(np.arcsin(np.clip(direction[1], -1, 1)))), 3),
        "light_strength": round(draw.light_strength, 4),
    })
    for view, name in enumerate(VIEW_NAMES):
        row[f"background_{name}"] = draw.background_kinds[view]
    row.update({"blur_sigma": round(draw.blur_sigma, 4), "noise_std": round(draw.noise_std, 5),
                "visible_landmarks_A": int(item.landmark_visibility[0].sum()),
                "visible_landmarks_B": int(item.landmark_visibility[1].sum()),
                "visible_landmarks_C": int(item.landmark_visibility[2].sum())})
    for name in VIEW_NAMES:
        row[f"image_{name}"] = relative(f"{name}.png")
    for name in VIEW_NAMES:
        row[f"parse_{name}"] = relative(f"{name}_parse.png")
    np.savez(partial / "annotations.npz", landmarks_2d=item.landmarks_2d, landmark_visibility=item.landmark_visibility,
             angles=draw.angles, translation=draw.translation, landmarks_3d=item.landmarks_3d,
             nominal_yaw_degrees=draw.nominal_yaw_degrees.astype(np.float32))
    np.savez(partial / "coefficients.npz", identity=draw.identity, expression=draw.expression, albedo=draw.albedo,
             lighting=draw.lighting, bump_centres=draw.bump_centres, bump_sigmas=draw.bump_sigmas,
             bump_amplitudes=item.amplitudes, bump_offset=np.float32(item.offset))
    row["annotations"] = relative("annotations.npz")
    row["coefficients"] = relative("coefficients.npz")
    if spec.split in settings.mesh_splits:
        write_ply(partial / "mesh.ply", item.vertices, model.triangles.numpy())
        row["mesh"] = relative("mesh.ply")
    else:
        row["mesh"] = ""
    (partial / "row.json").write_text(json.dumps(row))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


# ----------------------------------------------------------------------------------------------------------------
# Entry point

def _settings_record(settings: SyntheticSettings, config_hash: str | None) -> dict:
    return {"settings": settings.to_dict(), "settings_hash": settings.hash(), "config_hash": config_hash}


def _read_settings(root: Path) -> dict | None:
    path = root / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def generate_benchmark(root: str | os.PathLike, settings: SyntheticSettings | WorkbookConfig,
                       preset: str | None = None, *, workers: int | None = None, overwrite: bool = False,
                       progress: bool = True, threads: int | None = None,
                       callback: Callable[[int], None] | None = None) -> Path:
    """Generate (or resume, or recognise) the synthetic benchmark in ``root``; return ``root``.

    Args:
        root: output folder (created).
        settings: :class:`SyntheticSettings`, or a :class:`~dfmvr_lib.config.WorkbookConfig` from which they are
            built with ``preset`` (:meth:`SyntheticSettings.from_config`).
        preset: ``"pixelface-like"`` or ``"bosphorus-like"`` when ``settings`` is a config (default: the config's).
        workers: processes (default ``config.data.workers`` for a config, else 1); each worker builds the face
            model once and renders/writes whole batches; 1 renders in this process.
        overwrite: delete an existing benchmark in ``root`` and regenerate. Without it, a complete benchmark with
            identical settings is returned as is, an incomplete one with identical settings is resumed, and one with
            different settings raises ``FileExistsError``.
        progress: show a tqdm progress bar (samples).
        threads: torch/numba threads per generating process (default 1: the work is many small tensor operations,
            where spinning thread pools of torch and numba slow each other down; use ``workers`` for parallelism).
            With ``workers=1`` this process's thread counts are restored afterwards.
        callback: called with the number of samples done so far after every batch (e.g. for timing).

    Scripts that use ``workers > 1`` must guard their entry point with ``if __name__ == "__main__":`` (the workers
    are started with the ``spawn`` method, which re-imports the main module).
    """
    settings, config_hash, workers = _resolve_settings(settings, preset, workers)
    root = Path(root)
    if _prepare_root(root, _settings_record(settings, config_hash), overwrite):
        return root
    specs = sample_specs(settings)
    batches = [specs[i:i + settings.batch_size] for i in range(0, len(specs), settings.batch_size)]
    bar = tqdm(total=len(specs), desc=f"synthetic {settings.preset}", unit="triplet", disable=not progress)

    def done(batch_rows: list[dict], rows: list[dict]) -> None:
        rows.extend(batch_rows)
        bar.update(len(batch_rows))
        if callback is not None:
            callback(len(rows))

    try:
        if workers == 1:
            rows = _render_in_process(settings, root, batches, threads or 1, done)
        else:
            rows = _render_in_pool(settings, root, batches, workers, threads or 1, done)
    finally:
        bar.close()
    frame = pd.DataFrame(rows).sort_values(["subject_index", "sample_index"], kind="stable")
    with atomic_path(root / MANIFEST_FILE) as temporary:
        frame.to_csv(temporary, index=False)
    return root


def _resolve_settings(settings: SyntheticSettings | WorkbookConfig, preset: str | None, workers: int | None
                      ) -> tuple[SyntheticSettings, str | None, int]:
    """``generate_benchmark``'s arguments -> (settings, hash of the config's generator sections or None, workers
    >= 1): a config gives settings for ``preset`` and its ``data.workers`` default; settings must match ``preset``."""
    config_hash = None
    if isinstance(settings, WorkbookConfig):
        config = settings
        config_hash = config.hash("image_size", "seed", "face_model", "camera", "data")
        settings = SyntheticSettings.from_config(config, preset)
        workers = config.data.workers if workers is None else workers
    elif preset is not None and preset != settings.preset:
        raise ValueError(f"preset {preset!r} given with settings of preset {settings.preset!r}")
    return settings, config_hash, max(1, int(workers or 1))


def _prepare_root(root: Path, record: dict, overwrite: bool) -> bool:
    """Make ``root`` ready to (re)generate the benchmark of ``record`` (:func:`_settings_record`); True when it
    already holds the complete benchmark (nothing to do).

    Refuses (``FileExistsError``) a benchmark with other settings unless ``overwrite`` (which deletes it) and a
    non-empty folder without ``settings.json``. Otherwise writes ``settings.json`` when new, removes the manifest
    (it marks completion and is written last) and discards partial sample folders; complete ones are kept."""
    remove_stale_temporaries(root / SETTINGS_FILE)     # a writer killed before settings.json was in place
    existing = _read_settings(root)
    if existing is not None and not overwrite:
        if existing.get("settings") != record["settings"]:
            raise FileExistsError(f"{root} holds a synthetic benchmark with different settings "
                                  f"(hash {existing.get('settings_hash')} vs {record['settings_hash']}); "
                                  "use overwrite=True or another folder")
        if (root / MANIFEST_FILE).is_file():
            return True
    if existing is None and root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and holds no synthetic benchmark ({SETTINGS_FILE}); "
                              "choose an empty or new folder")
    if overwrite and existing is not None:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    if existing is None or overwrite:
        with atomic_path(root / SETTINGS_FILE) as temporary:
            temporary.write_text(json.dumps(record, indent=1, sort_keys=True))
    (root / MANIFEST_FILE).unlink(missing_ok=True)
    samples = root / SAMPLES_DIR
    samples.mkdir(exist_ok=True)
    for stale in samples.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(stale)
    return False


def _render_in_process(settings: SyntheticSettings, root: Path, batches: list[list[SampleSpec]], threads: int,
                       done: Callable[[list[dict], list[dict]], None]) -> list[dict]:
    """Render and write ``batches`` in this process with ``threads`` torch/numba threads (restored afterwards);
    ``done(batch_rows, rows)`` after each batch adds its manifest rows to ``rows``. Returns the rows."""
    rows: list[dict] = []
    previous = _set_threads(threads)
    try:
        _init_state(settings, str(root), None)
        for batch in batches:
            done(_make_batch(batch), rows)
    finally:
        _STATE.clear()
        torch.set_num_threads(previous[0])
        numba.set_num_threads(previous[1])
    return rows


def _render_in_pool(settings: SyntheticSettings, root: Path, batches: list[list[SampleSpec]], workers: int,
                    threads: int, done: Callable[[list[dict], list[dict]], None]) -> list[dict]:
    """Render and write ``batches`` in ``workers`` spawned processes of ``threads`` threads each (batches finish in
    any order); ``done`` as for :func:`_render_in_process`. Returns the manifest rows."""
    rows: list[dict] = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_state, initargs=(settings, str(root), threads)) as pool:
        for batch_rows in pool.imap_unordered(_make_batch, batches):
            done(batch_rows, rows)
    return rows


def load_manifest(root: str | os.PathLike) -> pd.DataFrame:
    """The manifest of a generated benchmark (``FileNotFoundError`` naming the file when it is missing)."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no complete synthetic benchmark in {root} "
                                "(generate it, or resume an interrupted run, with generate_benchmark)")
    return pd.read_csv(path, keep_default_na=False, dtype={"mesh": str})


def load_settings(root: str | os.PathLike) -> SyntheticSettings:
    """The :class:`SyntheticSettings` a benchmark was generated with."""
    record = _read_settings(Path(root))
    if record is None:
        raise FileNotFoundError(f"{Path(root) / SETTINGS_FILE} not found or unreadable")
    return SyntheticSettings.from_dict(record["settings"])


# ----------------------------------------------------------------------------------------------------------------
# Dataset

class SyntheticMultiViewDataset(Dataset):
    """A split of a generated benchmark as :class:`~dfmvr_lib.data.MultiViewSample` items.

    Images float (3, 3, H, W) in [0, 1]; parse maps int64; 2D landmarks, visibility, ``view_present`` all True;
    ``landmarks_3d`` (101, 3) mm for every sample; ``mesh_vertices`` / ``mesh_triangles`` when ``load_mesh`` and the
    split's meshes were written. ``extras``: ``angles`` (3, 3) radians, ``translation`` (3, 3) mm,
    ``nominal_yaw_degrees`` (3,), ``coefficients`` (identity, expression, albedo, lighting tensors), ``split``,
    ``preset``, ``root``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", load_mesh: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.load_mesh = load_mesh
        manifest = load_manifest(self.root)
        self.rows = manifest[manifest["split"] == split].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.rows)

    def _path(self, relative: str) -> Path:
        path = self.root / relative
        if not path.is_file():
            raise FileNotFoundError(f"synthetic benchmark file missing: {path} (regenerate with "
                                    "generate_benchmark(..., overwrite=True))")
        return path

    def _png(self, relative: str) -> np.ndarray:
        with Image.open(self._path(relative)) as image:
            return np.asarray(image)

    def _npz(self, relative: str) -> dict[str, np.ndarray]:
        path = self._path(relative)
        with np.load(path) as data:
            return {key: data[key] for key in data.files}

    def __getitem__(self, index: int) -> MultiViewSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.split} samples")
        row = self.rows.iloc[index]
        images = np.stack([self._png(row[f"image_{name}"]) for name in VIEW_NAMES])
        parse = np.stack([self._png(row[f"parse_{name}"]) for name in VIEW_NAMES])
        annotations = self._npz(row["annotations"])
        coefficients = self._npz(row["coefficients"])
        vertices = triangles = None
        if self.load_mesh and row["mesh"]:
            vertices, triangles = read_ply(self._path(row["mesh"]))
            vertices, triangles = torch.from_numpy(vertices), torch.from_numpy(triangles)
        sample = MultiViewSample(
            images=torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0,
            parse_maps=torch.from_numpy(parse.astype(np.int64)),
            landmarks_2d=torch.from_numpy(annotations["landmarks_2d"]).float(),
            landmark_visibility=torch.from_numpy(annotations["landmark_visibility"]).bool(),
            view_present=torch.ones(3, dtype=torch.bool),
            subject_id=str(row["subject_id"]), sample_id=str(row["sample_id"]),
            landmarks_3d=torch.from_numpy(annotations["landmarks_3d"]).float(),
            mesh_vertices=vertices, mesh_triangles=triangles,
            extras={
                "angles": torch.from_numpy(annotations["angles"]).float(),
                "translation": torch.from_numpy(annotations["translation"]).float(),
                "nominal_yaw_degrees": torch.from_numpy(annotations["nominal_yaw_degrees"]).float(),
                "coefficients": {key: torch.from_numpy(np.asarray(value)) for key, value in coefficients.items()},
                "split": self.split, "preset": str(row["preset"]), "root": str(self.root),
            },
        )
        sample.validate(f"{self.root}:{row['sample_id']}")
        return sample


# ----------------------------------------------------------------------------------------------------------------
# Statistics

def benchmark_statistics(roots: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """One row per (preset, split) of generated benchmarks ``{preset: root}``: samples, subjects, mean nominal and
    posed yaw of the side views (degrees), mean visible landmarks per view, samples with a ground-truth mesh."""
    rows = []
    for preset, root in roots.items():
        manifest = load_manifest(root)
        for split, part in manifest.groupby("split", sort=False):
            rows.append({
                "preset": preset, "split": split, "samples": len(part), "subjects": part["subject_id"].nunique(),
                "yaw_A_degrees": part["yaw_A_degrees"].mean(), "yaw_C_degrees": part["yaw_C_degrees"].mean(),
                "posed_yaw_A_degrees": part["pose_yaw_A_degrees"].mean(),
                "posed_yaw_C_degrees": part["pose_yaw_C_degrees"].mean(),
                **{f"visible_landmarks_{v}": part[f"visible_landmarks_{v}"].mean() for v in VIEW_NAMES},
                "meshes": int((part["mesh"] != "").sum()),
            })
    return pd.DataFrame(rows)


def span_residual_mm(model, vertices: torch.Tensor, identity_components: int, expression_components: int
                     ) -> float:
    """RMS distance (mm) over ``model.evaluation_region`` between ``vertices`` (V, 3) and their least-squares
    projection onto the span of the model's first identity and expression components: the error that even a
    perfect regressor of that many coefficients keeps (no pose is fitted: both are in the head frame)."""
    region = model.evaluation_region
    basis = torch.cat([model.identity_basis[:, :, :identity_components],
                       model.expression_basis[:, :, :expression_components]], dim=2)[region]
    target = (vertices.to(basis) - model.mean_shape)[region]
    design = basis.reshape(-1, basis.shape[-1]).double()
    solution = torch.linalg.lstsq(design, target.reshape(-1, 1).double()).solution
    residual = target.reshape(-1).double() - (design @ solution).reshape(-1)
    return float(residual.reshape(-1, 3).pow(2).sum(-1).mean().sqrt())


def span_residual_table(roots: dict[str, str | os.PathLike], model, split: str = "test", count: int = 5
                        ) -> pd.DataFrame:
    """:func:`span_residual_mm` of the first ``count`` meshes of ``split`` in each benchmark ``{preset: root}``,
    with all of ``model``'s identity and expression components. Columns: preset, sample_id, span_residual_mm."""
    rows = []
    for preset, root in roots.items():
        dataset = SyntheticMultiViewDataset(root, split)
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            if sample.mesh_vertices is None:
                raise ValueError(f"{root}: split {split!r} has no ground-truth meshes (DataConfig.mesh_splits)")
            rows.append({"preset": preset, "sample_id": sample.sample_id,
                         "span_residual_mm": span_residual_mm(model, sample.mesh_vertices, model.num_identity,
                                                              model.num_expression)})
    return pd.DataFrame(rows)
