"""Import of the widely used 19-class CelebAMask-HQ BiSeNet checkpoints (face-parsing.PyTorch layout).

Key mapping: our :class:`~dfmvr_lib.parsing.bisenet.BiSeNet` uses the same module names as that model (``cp.resnet.*``
ResNet-18, ``cp.arm16``/``cp.arm32`` (``conv.conv``, ``conv.bn``, ``conv_atten``, ``bn_atten``),
``cp.conv_head32``/``cp.conv_head16``/``cp.conv_avg`` (``conv``, ``bn``), ``ffm.convblk``/``ffm.conv1``/``ffm.conv2``,
``conv_out``/``conv_out16``/``conv_out32`` (``conv.conv``, ``conv.bn``, ``conv_out``)), so the mapping is the
identity, except that (1) a ``module.`` prefix (checkpoints saved from ``DataParallel``) is removed and (2) BatchNorm
``num_batches_tracked`` counters, absent from checkpoints written by old PyTorch versions, are filled from the fresh
model (they do not affect inference). Any other missing or unexpected key is an error (strict loading). The ImageNet
normalisation is a non-persistent buffer, so it adds no key.

Safe loading: the file is read with ``torch.load(weights_only=True)`` through
:func:`dfmvr_lib.runs.load_checkpoint_file` (its errors :class:`~dfmvr_lib.runs.CheckpointFileError` /
:class:`~dfmvr_lib.runs.UnsafeCheckpointError` live there too, beside the run directories).

Classes: the checkpoint's 19 labels are 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye, 6 eye_g,
7 l_ear, 8 r_ear, 9 ear_r, 10 nose, 11 mouth, 12 u_lip, 13 l_lip, 14 neck, 15 neck_l, 16 cloth, 17 hair, 18 hat.
They are merged into the project's 10 classes by log-sum-exp of the logits of each group (softmax of a merged logit =
the summed probability of its group), with the rules of :mod:`dfmvr_lib.data.celebamask`: eye_g -> skin; ears,
earring, neck, necklace, cloth, hair, hat -> background; and, for the sides, ``l_`` read as the subject's left = the
image's right when ``l_is_image_left`` is False (the project's default reading, unverified; pass True for the other).
"""
from __future__ import annotations

import os

import torch

from ..runs import CheckpointFileError, load_checkpoint_file
from .bisenet import BiSeNet

FACE_PARSING_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
                        "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
"""The 19 output classes of the face-parsing.PyTorch CelebAMask-HQ checkpoints, in output order."""


def celebamask19_groups(l_is_image_left: bool = False) -> list[list[int]]:
    """For each of the project's 10 classes, the list of the 19 checkpoint classes merged into it."""
    index = {name: i for i, name in enumerate(FACE_PARSING_CLASSES)}
    left_side, right_side = ("l", "r") if l_is_image_left else ("r", "l")
    names = [
        ["background", "l_ear", "r_ear", "ear_r", "neck", "neck_l", "cloth", "hair", "hat"],
        ["skin", "eye_g"],
        [f"{left_side}_brow"], [f"{right_side}_brow"],          # 2 image-left brow, 3 image-right brow
        [f"{left_side}_eye"], [f"{right_side}_eye"],            # 4 image-left eye, 5 image-right eye
        ["nose"], ["mouth"], ["u_lip"], ["l_lip"],
    ]
    return [[index[n] for n in group] for group in names]


def map_checkpoint_keys(state_dict: dict, model: torch.nn.Module) -> dict:
    """face-parsing.PyTorch state dict -> our state dict (module doc): strip ``module.``, fill
    ``num_batches_tracked``."""
    mapped = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = value.clone()
    return mapped


def load_face_parsing_checkpoint(path: str | os.PathLike, width: float = 1.0, l_is_image_left: bool = False,
                                 map_location="cpu") -> BiSeNet:
    """Load a 19-class face-parsing.PyTorch BiSeNet checkpoint (e.g. ``79999_iter.pth``) strictly and return a
    :class:`BiSeNet` whose outputs are the project's 10 classes (``forward(x, merge=False)`` gives the 19).

    Raises :class:`~dfmvr_lib.runs.UnsafeCheckpointError` (never running it) when the file holds pickled code,
    :class:`CheckpointFileError` naming the file when it is corrupt or holds no state dict, and ``RuntimeError``
    (strict loading) when its keys are not the model's."""
    kind = "face-parsing BiSeNet checkpoint"
    state = load_checkpoint_file(path, map_location, kind)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointFileError(path, f"not a {kind}: it holds a {type(state).__name__}, not a state dict")
    model = BiSeNet(num_classes=len(FACE_PARSING_CLASSES), width=width,
                    output_groups=celebamask19_groups(l_is_image_left))
    model.load_state_dict(map_checkpoint_keys(state, model), strict=True)     # RuntimeError naming the keys
    return model.eval()


__all__ = ["FACE_PARSING_CLASSES", "celebamask19_groups", "load_face_parsing_checkpoint", "map_checkpoint_keys"]
