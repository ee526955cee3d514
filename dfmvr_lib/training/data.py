"""Training data for the reconstruction network: preloaded triplets, deterministic batch order, view dropping
(single-view mode) and colour augmentation identical across the views of a triplet.

Everything random is drawn from ``torch.Generator`` objects seeded by (seed, step), so the batch of step ``s`` is
the same whether the run went straight through or resumed after an interruption.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.mesh_io import read_ply
from ..data.sample import MultiViewSample
from ..data.synthetic import SyntheticMultiViewDataset, load_manifest
from ..parsing.augment import colour_jitter
from ..runs import save_torch

_CACHE: dict[tuple, "TripletTensors"] = {}


@dataclass
class TripletTensors:
    """A whole split in compact tensors (M samples, S views, H = W pixels).

    images (M, S, 3, H, W) uint8; parse_maps (M, S, H, W) uint8; landmarks_2d (M, S, 68, 2) float pixels;
    landmark_visibility (M, S, 68) bool; view_present (M, S) bool; landmarks_3d (M, 101, 3) float mm or None.
    """

    images: torch.Tensor
    parse_maps: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_visibility: torch.Tensor
    view_present: torch.Tensor
    landmarks_3d: torch.Tensor | None

    def __len__(self) -> int:
        return self.images.shape[0]


def load_triplets(dataset: Dataset, progress: bool = True, description: str = "loading triplets") -> TripletTensors:
    """Read every :class:`~dfmvr_lib.data.MultiViewSample` of ``dataset`` into a :class:`TripletTensors`."""
    from tqdm.auto import tqdm

    if len(dataset) == 0:
        raise ValueError(f"{description}: the dataset is empty")
    images, parses, lm2d, visibility, present, lm3d = [], [], [], [], [], []
    for index in tqdm(range(len(dataset)), desc=description, disable=not progress, leave=False):
        sample: MultiViewSample = dataset[index]
        images.append((sample.images.clamp(0, 1) * 255.0).round().to(torch.uint8))
        parses.append(sample.parse_maps.to(torch.uint8))
        lm2d.append(sample.landmarks_2d.float())
        visibility.append(sample.landmark_visibility)
        present.append(sample.view_present)
        lm3d.append(sample.landmarks_3d)
    has_3d = all(item is not None for item in lm3d)
    return TripletTensors(torch.stack(images), torch.stack(parses), torch.stack(lm2d), torch.stack(visibility),
                          torch.stack(present), torch.stack(lm3d).float() if has_3d else None)


TRIPLET_CACHE_FOLDER = "triplets"
"""Folder inside a benchmark where :func:`synthetic_triplets` keeps each split's tensors."""


def synthetic_triplets(root: str | os.PathLike, split: str, progress: bool = True) -> TripletTensors:
    """The ``split`` of a generated synthetic benchmark as :class:`TripletTensors`.

    Cached per process and on disk (``<root>/triplets/<split>.pt``, written atomically, read with
    ``weights_only=True``), both keyed by the SHA-256 of the benchmark's ``manifest.csv``: decoding the PNGs of
    3,000 triplets takes about 40 s on one core, which every training process of the tables would otherwise pay;
    a regenerated benchmark (another manifest) is read from its images again, an unreadable cache is ignored."""
    manifest = Path(root) / "manifest.csv"
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    key = (str(Path(root).resolve()), split, digest)
    if key in _CACHE:
        return _CACHE[key]
    path = Path(root) / TRIPLET_CACHE_FOLDER / f"{split}.pt"
    cached = None
    if digest is not None and path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:                        # an unreadable cache is re-read from the images, not trusted
            cached = None
    if isinstance(cached, dict) and cached.get("manifest_sha256") == digest and cached.get("split") == split:
        data = TripletTensors(**{f.name: cached[f.name] for f in dataclasses.fields(TripletTensors)})
    else:
        dataset = SyntheticMultiViewDataset(root, split, load_mesh=False)
        data = load_triplets(dataset, progress, f"loading {split} triplets")
        if digest is not None:
            save_torch({**{f.name: getattr(data, f.name) for f in dataclasses.fields(TripletTensors)},
                        "manifest_sha256": digest, "split": split}, path)
    _CACHE[key] = data
    return data


@dataclass
class TrainingBatch:
    """One step's batch (B triplets, S views), float tensors on the training device.

    images (B, S, 3, H, W) in [0, 1] (after colour augmentation): the loss targets. network_images /
    network_parse_maps: what the network sees (views dropped to black / label 0 in single-view mode).
    parse_maps (B, S, H, W) int64; landmarks_2d (B, S, 68, 2); landmark_visibility (B, S, 68) bool;
    view_weight (B, S) float, 1 where the view takes part in the losses; landmarks_3d (B, 101, 3) or None.
    """

    images: torch.Tensor
    parse_maps: torch.Tensor
    network_images: torch.Tensor
    network_parse_maps: torch.Tensor
    landmarks_2d: torch.Tensor
    landmark_visibility: torch.Tensor
    view_weight: torch.Tensor
    landmarks_3d: torch.Tensor | None


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of all random draws of one training step."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + 17)


def batch_indices(size: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Sample indices of ``step``: consecutive slices of per-epoch random permutations (epoch e's permutation is
    seeded by (seed, e)), so the order depends only on (seed, step)."""
    start = step * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, size)
        permutation = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        indices.append(int(permutation[offset]))
    return torch.tensor(indices)


SINGLE_VIEW_VARIANTS = ((True, False, False), (False, True, False), (False, False, True))
"""Views kept by the view-dropped variants of single-view training (A only, B only, C only)."""


def single_view_keep(batch_size: int, views: int, generator: torch.Generator,
                     dropped_probability: float = 1 / 3) -> torch.Tensor:
    """(B, S) bool: which input views are kept. With probability ``dropped_probability`` a triplet is replaced by one
    of :data:`SINGLE_VIEW_VARIANTS` (chosen uniformly), else all views are kept."""
    if views != 3:
        raise ValueError(f"single-view mode needs 3 views, got {views}")
    dropped = torch.rand(batch_size, generator=generator) < dropped_probability
    variant = torch.randint(len(SINGLE_VIEW_VARIANTS), (batch_size,), generator=generator)
    table = torch.tensor(SINGLE_VIEW_VARIANTS)
    return torch.where(dropped[:, None], table[variant], torch.ones(batch_size, views, dtype=torch.bool))


def make_batch(data: TripletTensors, indices: torch.Tensor, generator: torch.Generator | None = None, *,
               colour_augment: bool = False, single_view_mode: bool = False,
               device: torch.device | str = "cpu") -> TrainingBatch:
    """Assemble the :class:`TrainingBatch` of the samples ``indices``.

    Args:
        data: the preloaded split.
        indices: (B,) sample indices.
        generator: random draws of this step (needed for augmentation and single-view mode).
        colour_augment: one colour jitter per triplet, identical for its views.
        single_view_mode: drop views as in :func:`single_view_keep`; dropped views get black images, label-0 parse
            maps, and no part in the losses.
    """
    images = data.images[indices].float() / 255.0
    B, S = images.shape[:2]
    if colour_augment:
        if generator is None:
            raise ValueError("make_batch: colour_augment needs a generator")
        images = colour_jitter(images.reshape(B * S, *images.shape[2:]), generator, brightness=0.2, contrast=0.2,
                               saturation=0.3, hue=0.03, group_size=S).reshape(images.shape)
    parse = data.parse_maps[indices].long()
    present = data.view_present[indices]
    keep = present
    if single_view_mode:
        if generator is None:
            raise ValueError("make_batch: single_view_mode needs a generator")
        keep = present & single_view_keep(B, S, generator)
    keep_f = keep.float()
    network_images = images * keep_f[:, :, None, None, None]
    network_parse = parse * keep.long()[:, :, None, None]
    lm3d = data.landmarks_3d[indices] if data.landmarks_3d is not None else None
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return TrainingBatch(images=to(images), parse_maps=to(parse), network_images=to(network_images),
                         network_parse_maps=to(network_parse), landmarks_2d=to(data.landmarks_2d[indices]),
                         landmark_visibility=to(data.landmark_visibility[indices]), view_weight=to(keep_f),
                         landmarks_3d=to(lm3d))




def synthetic_meshes(root: str | os.PathLike, split: str) -> list[torch.Tensor]:
    """Ground-truth vertices (V, 3) mm of every sample of ``split`` (manifest order); raises ``FileNotFoundError``
    when the split's meshes were not written (``DataConfig.mesh_splits``)."""

    rows = load_manifest(root)
    rows = rows[rows["split"] == split]
    meshes = []
    for relative in rows["mesh"]:
        if not isinstance(relative, str) or not relative:
            raise FileNotFoundError(f"{root}: the {split} split has no ground-truth meshes (DataConfig.mesh_splits)")
        vertices, _ = read_ply(Path(root) / relative)
        meshes.append(torch.from_numpy(vertices))
    return meshes


__all__ = ["SINGLE_VIEW_VARIANTS", "TrainingBatch", "TripletTensors", "batch_indices", "load_triplets", "make_batch",
           "single_view_keep", "step_generator", "synthetic_meshes", "synthetic_triplets"]
