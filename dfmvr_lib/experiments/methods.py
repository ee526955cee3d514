"""The methods the experiments compare, as named changes to a profile's configuration.

Every method is trained on the same data with the same renderer, face model and schedule as DF-MVR; only the
settings below differ (one configuration system: a method is a set of dotted overrides of
:func:`dfmvr_lib.config.get_config`).

- ``dfmvr`` (= ablation v6): the full model (Tri-UNet + RedNet-50, one-hot face masks, all losses).
- ``dfmvr_no_l3d`` (= v5): without the 3D landmark loss (trained from images alone).
- ``v1_cnn``, ``v2_unet``: the ablation backbones (per-view CNN encoders / per-view UNets, fused at the end).
- ``v3_resnet``: Tri-UNet + ResNet-50 instead of RedNet-50.
- ``v4_no_mask``: no face mask, neither as input nor in the losses (RGB only, no mask loss, no part weighting:
  the photo loss falls back to uniform weights over the face region).
- ``dfmvr_single_view``: the Table III training (one view kept, the others black, with probability 1/3).
- ``deng``: Deng et al. (Deep3DFace): a single-image ResNet-50 regressor; photo loss over the skin/face region
  without part weighting, 2D landmarks, regularisation and Deep3D's reflectance and lighting priors; no face mask,
  no 3D landmarks. (Deep3D's perceptual identity loss needs a face-recognition network and is left out.)
- ``shang``: Shang et al. (MGCNet): the same single-image regressor trained on triplets with multi-view consistency:
  the views' shapes are pulled together and each view must also be explained by the shape predicted from another
  view (cross-view photo loss). (MGCNet's depth-based view warping and its optical-flow terms are not reproduced.)

The baselines see no 3D landmarks, like the paper's versions.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..config import WorkbookConfig, get_config
from ..networks.factory import SINGLE_IMAGE_BACKBONE, per_view_faces

_SINGLE_IMAGE = {"network.backbone": SINGLE_IMAGE_BACKBONE, "network.regressor": "resnet50",
                 "losses.use_mask": False, "losses.use_landmark_3d": False, "losses.photo_weighting": "skin",
                 "losses.reflectance": 5.0, "losses.lighting": 10.0}

METHODS: dict[str, dict[str, Any]] = {
    "dfmvr": {},
    "dfmvr_no_l3d": {"losses.use_landmark_3d": False},
    "v1_cnn": {"network.backbone": "cnn"},
    "v2_unet": {"network.backbone": "unet"},
    "v3_resnet": {"network.regressor": "resnet50"},
    "v4_no_mask": {"network.mask_encoding": "none", "losses.use_mask": False, "losses.photo_weighting": "skin"},
    "dfmvr_single_view": {"training.single_view_mode": True},
    "deng": dict(_SINGLE_IMAGE),
    "shang": {**_SINGLE_IMAGE, "losses.shape_consistency": 1.0, "losses.cross_view_photo": 4.0},
}

ABLATION_VERSIONS = {"v1_cnn": "v1_cnn", "v2_unet": "v2_unet", "v3_resnet": "v3_resnet", "v4_no_mask": "v4_no_mask",
                     "v5_no_l3d": "dfmvr_no_l3d", "v6_full": "dfmvr"}
"""Table IV rows -> method names."""

METHOD_LABELS = {"dfmvr": "DF-MVR (ours)", "dfmvr_no_l3d": "DF-MVR w/o L_3d", "v1_cnn": "v1: CNN + RedNet",
                 "v2_unet": "v2: UNet + RedNet", "v3_resnet": "v3: Tri-UNet + ResNet", "v4_no_mask": "v4: no face mask",
                 "dfmvr_single_view": "DF-MVR single-view", "deng": "Deng et al. (Deep3DFace)",
                 "shang": "Shang et al. (MGCNet)", "mean_face": "mean face (untrained network)",
                 "ceiling": "ceiling (oracle: least-squares model fit to the ground truth)"}


def method_label(name: str) -> str:
    """The readable label of a table's method column: the method's label, with an ``" (oracle: ...)"`` suffix
    (rows trained with inputs the paper's method does not have) kept."""
    key, marker, rest = name.partition(" (oracle")
    return METHOD_LABELS.get(key, key) + (marker + rest if marker else "")


def is_single_image(name: str) -> bool:
    """Whether method ``name`` regresses one face per view (the baselines): the
    :func:`~dfmvr_lib.networks.factory.per_view_faces` of its network settings (no profile sets the backbone,
    which decides it, so any profile answers). Raises ``KeyError`` for an unknown method."""
    return per_view_faces(get_config("smoke", METHODS[name]).network)


def method_config(profile: str, name: str, seed: int = 0, overrides: dict[str, Any] | None = None) -> WorkbookConfig:
    """The configuration of method ``name`` in ``profile`` with ``seed``, plus optional extra ``overrides``
    (e.g. loss weights of the sensitivity sweep); trained for ``experiments.training_steps`` when the profile sets
    it."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    steps = get_config(profile).experiments.training_steps
    schedule = {"training.steps": steps} if steps is not None else {}
    return get_config(profile, {**schedule, **METHODS[name], "seed": seed, **(overrides or {})})


def row_label(row: pd.Series) -> str:
    """A readable label of a table row: the method's name and, when not a fused multi-view result, the test input."""
    label = method_label(row["method"])
    if row.get("test_input") not in (None, "fused"):
        label += f" [{str(row['test_input']).replace('_', ' ')}]"
    return label



__all__ = ["ABLATION_VERSIONS", "METHODS", "METHOD_LABELS", "is_single_image", "method_config", "method_label",
           "row_label"]
