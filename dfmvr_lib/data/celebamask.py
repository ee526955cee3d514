"""CelebAMask-HQ reader for parser pretraining: single images with 10-class part maps.

Layout (as released)::

    <root>/CelebA-HQ-img/<id>.jpg                                        1024x1024, id = 0..29999 (no zero padding)
    <root>/CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png      512x512 binary masks, one per part present

(a mask is also found in another numbered folder if it is not where ``id // 2000`` says). Parts (19 labels with the
implicit background), in the dataset's label order::

    1 skin, 2 nose, 3 eye_g, 4 l_eye, 5 r_eye, 6 l_brow, 7 r_brow, 8 l_ear, 9 r_ear, 10 mouth, 11 u_lip, 12 l_lip,
    13 hair, 14 hat, 15 ear_r (earring), 16 neck_l (necklace), 17 neck, 18 cloth

Mapping to the project's 10 classes (docs/conventions.md), :data:`PART_TO_CLASS`:

- skin -> 1 skin; nose -> 6; mouth (inner mouth) -> 7; u_lip -> 8 upper lip; l_lip (LOWER lip) -> 9;
- l_eye / r_eye -> 4 / 5 and l_brow / r_brow -> 2 / 3, sides decided by geometry (below);
- eye_g (glasses) -> 1 skin: the frames and lenses lie on the face (the 3D face under them is skin, which is what
  the renderer labels); eyes and brows visible through or above them are painted afterwards and keep their class;
- hair, hat, ears, earrings, necklace, neck, cloth -> 0 background (the spec: hair, neck, ears, clothes ->
  background). Hair painted over the face therefore removes those face pixels (hair occludes them).

Painting: masks are painted in the dataset's label order, later parts overwriting earlier ones (as the dataset's own
label-map script does), each with its mapped class.

Left / right: the project's "left eye" (4) is the eye on the image's left. Which side CelebAMask-HQ's ``l_`` means
could not be verified from the available material, so with ``side_rule="geometry"`` (default) the names are not
trusted: when both parts of a pair are present, the one whose mask centroid has the smaller column is the image-left
class; when only one is present it is compared with the face midline (centroid column of the nose mask, else of the
skin mask); only without either does the name decide, read as ``l_`` = image left when ``l_is_image_left`` is True
(default False: ``l_`` = the subject's left = image right, the anatomical reading; unverified).
``side_rule="names"`` uses the name reading only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .readers_base import DatasetReader, check_choice, check_flag
from .readers_common import DatasetFileError, load_image_rgb, load_mask_png, resize_image, resize_labels

IMAGE_FOLDER = "CelebA-HQ-img"
MASK_FOLDER = "CelebAMask-HQ-mask-anno"
IMAGES_PER_MASK_FOLDER = 2000

PART_NAMES = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
              "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
"""The 18 mask parts in the dataset's label order (1..18; 0 background is implicit)."""

BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, MOUTH, UPPER_LIP, LOWER_LIP = range(10)

PART_TO_CLASS = {
    "skin": SKIN, "nose": NOSE, "eye_g": SKIN, "l_eye": LEFT_EYE, "r_eye": RIGHT_EYE, "l_brow": LEFT_BROW,
    "r_brow": RIGHT_BROW, "l_ear": BACKGROUND, "r_ear": BACKGROUND, "mouth": MOUTH, "u_lip": UPPER_LIP,
    "l_lip": LOWER_LIP, "hair": BACKGROUND, "hat": BACKGROUND, "ear_r": BACKGROUND, "neck_l": BACKGROUND,
    "neck": BACKGROUND, "cloth": BACKGROUND,
}
"""CelebAMask-HQ part -> project class, with the ``l_``/``r_`` eye and brow classes as named when ``l_`` = image
left (the side actually used is decided per image, see the module doc)."""

SIDE_RULES = ("geometry", "names")
"""How eye and brow sides are decided (module doc): from the masks' positions, or from the part names."""

_PAIRS = (("l_eye", "r_eye", LEFT_EYE, RIGHT_EYE), ("l_brow", "r_brow", LEFT_BROW, RIGHT_BROW))
_MASK_NAME = re.compile(r"^(?P<id>\d+)_(?P<part>[a-z_]+)$")


@dataclass
class ParsingSample:
    """One image for the face parser: image (3, H, W) float in [0, 1], parse_map (H, W) int64 (10 classes)."""

    image: torch.Tensor
    parse_map: torch.Tensor
    image_id: str
    extras: dict = field(default_factory=dict)

    def validate(self, source: str = "parsing sample") -> None:
        if self.image.ndim != 3 or self.image.shape[0] != 3:
            raise ValueError(f"{source}: image must be (3, H, W), got {tuple(self.image.shape)}")
        if tuple(self.parse_map.shape) != tuple(self.image.shape[1:]) or self.parse_map.dtype != torch.int64:
            raise ValueError(f"{source}: parse_map must be (H, W) int64 matching the image, got "
                             f"{tuple(self.parse_map.shape)} {self.parse_map.dtype}")
        if self.parse_map.numel() and (int(self.parse_map.min()) < 0 or int(self.parse_map.max()) > 9):
            raise ValueError(f"{source}: parse_map labels must be 0..9")


def _centroid_column(mask: np.ndarray) -> float | None:
    cols = np.nonzero(mask)[1]
    return float(cols.mean()) if cols.size else None


def map_parts_to_classes(masks: Mapping[str, np.ndarray], side_rule: str = "geometry",
                         l_is_image_left: bool = False) -> np.ndarray:
    """Combine CelebAMask-HQ part masks (``{part: (H, W) bool}``, any subset of :data:`PART_NAMES`) into an
    (H, W) int64 map of the project's 10 classes (rules in the module doc)."""
    check_choice(side_rule, "side_rule", SIDE_RULES)
    unknown = sorted(set(masks) - set(PART_NAMES))
    if unknown:
        raise ValueError(f"unknown CelebAMask-HQ parts {unknown}; known: {list(PART_NAMES)}")
    if not masks:
        raise ValueError("no part masks given")
    shapes = {np.asarray(m).shape for m in masks.values()}
    if len(shapes) != 1:
        raise ValueError(f"part masks have different shapes {sorted(shapes)}")
    shape = shapes.pop()
    binary = {name: np.asarray(m).astype(bool) for name, m in masks.items()}
    classes = dict(PART_TO_CLASS)
    midline = None
    for reference in ("nose", "skin"):
        if reference in binary:
            midline = _centroid_column(binary[reference])
            if midline is not None:
                break
    for l_name, r_name, left_class, right_class in _PAIRS:
        by_name = (left_class, right_class) if l_is_image_left else (right_class, left_class)
        l_class, r_class = by_name
        if side_rule == "geometry":
            l_col = _centroid_column(binary[l_name]) if l_name in binary else None
            r_col = _centroid_column(binary[r_name]) if r_name in binary else None
            if l_col is not None and r_col is not None:
                l_class, r_class = (left_class, right_class) if l_col <= r_col else (right_class, left_class)
            elif midline is not None and (l_col is not None or r_col is not None):
                if l_col is not None:
                    l_class = left_class if l_col < midline else right_class
                else:
                    r_class = left_class if r_col < midline else right_class
        classes[l_name], classes[r_name] = l_class, r_class
    labels = np.zeros(shape, dtype=np.int64)
    for name in PART_NAMES:                     # dataset label order: later parts overwrite earlier ones
        if name in binary:
            labels[binary[name]] = classes[name]
    return labels


class CelebAMaskDataset(DatasetReader):
    """CelebAMask-HQ images with 10-class part maps (:class:`ParsingSample`).

    Args:
        root: folder holding ``CelebA-HQ-img/`` and ``CelebAMask-HQ-mask-anno/``.
        image_size: square output size (image bilinear, labels nearest); ``None``: the image's own size (the
            masks are resized to it).
        ids: restrict to these image ids.
        side_rule, l_is_image_left: see :func:`map_parts_to_classes` (checked here, with ``image_size``:
            :class:`~.readers_base.DatasetReader`).
    """

    dataset_name = "CelebAMask-HQ"

    def __init__(self, root: str | os.PathLike, *, image_size: int | None = 512, ids: Sequence[int] | None = None,
                 side_rule: str = "geometry", l_is_image_left: bool = False):
        self.side_rule = check_choice(side_rule, "side_rule", SIDE_RULES)
        self.l_is_image_left = check_flag(l_is_image_left, "l_is_image_left", self.dataset_name)
        super().__init__(root, image_size=image_size)
        image_dir, mask_dir = self.root / IMAGE_FOLDER, self.root / MASK_FOLDER
        expected = (f"{IMAGE_FOLDER}/<id>.jpg and {MASK_FOLDER}/<id // {IMAGES_PER_MASK_FOLDER}>/<id:05d>_<part>.png "
                    f"under {self.root}")
        if not image_dir.is_dir() or not mask_dir.is_dir():
            raise self._layout_error(expected)
        found = {}
        for path in image_dir.iterdir():
            if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.stem.isdigit():
                found[int(path.stem)] = path
        if ids is not None:
            missing = [i for i in ids if int(i) not in found]
            if missing:
                raise self._layout_error(f"images for ids {missing[:6]}",
                                         sorted(p.name for p in found.values())[:6] or None, folder=image_dir)
            found = {int(i): found[int(i)] for i in ids}
        if not found:
            raise self._layout_error(expected, folder=image_dir)
        self.ids = sorted(found)
        self.image_paths = found
        self.mask_dir = mask_dir

    def __len__(self) -> int:
        return len(self.ids)

    def mask_paths(self, image_id: int) -> dict[str, Path]:
        """``{part: path}`` of the mask files of one image (empty when it has none)."""
        prefix = f"{image_id:05d}_"
        candidates = [self.mask_dir / str(image_id // IMAGES_PER_MASK_FOLDER)]
        paths: dict[str, Path] = {}
        for folder in candidates:
            if folder.is_dir():
                paths = self._collect(folder, prefix)
        if not paths:
            for folder in sorted(p for p in self.mask_dir.iterdir() if p.is_dir()):
                paths = self._collect(folder, prefix)
                if paths:
                    break
        return paths

    @staticmethod
    def _collect(folder: Path, prefix: str) -> dict[str, Path]:
        paths = {}
        for path in folder.glob(prefix + "*.png"):
            match = _MASK_NAME.match(path.stem)
            if match and match["part"] in PART_NAMES:
                paths[match["part"]] = path
        return paths

    def __getitem__(self, index: int) -> ParsingSample:
        image_id = self.ids[index]
        image = load_image_rgb(self.image_paths[image_id])
        paths = self.mask_paths(image_id)
        if not paths:
            raise self._layout_error(f"mask files {image_id:05d}_<part>.png in {self.mask_dir}/"
                                     f"{image_id // IMAGES_PER_MASK_FOLDER}/ for image {image_id}",
                                     folder=self.mask_dir)
        masks = {}
        for part, path in paths.items():
            masks[part] = load_mask_png(path) > 0
        shapes = {m.shape for m in masks.values()}
        if len(shapes) != 1:
            sizes = ", ".join(f"{paths[part].name} {masks[part].shape[1]}x{masks[part].shape[0]}"
                              for part in sorted(masks))
            raise DatasetFileError(next(iter(paths.values())).parent,
                                   f"the masks of CelebAMask-HQ image {image_id} have different sizes: {sizes}")
        labels = map_parts_to_classes(masks, self.side_rule, self.l_is_image_left)
        height, width = (self.image_size, self.image_size) if self.image_size is not None else tuple(image.shape[1:])
        image = resize_image(image, height, width)
        parse_map = resize_labels(labels, height, width)
        sample = ParsingSample(image=image, parse_map=parse_map, image_id=str(image_id),
                               extras={"image_path": str(self.image_paths[image_id]),
                                       "parts": sorted(paths)})
        sample.validate(f"CelebAMask-HQ image {image_id}")
        return sample


__all__ = ["CelebAMaskDataset", "PART_NAMES", "PART_TO_CLASS", "ParsingSample", "map_parts_to_classes"]
