"""The DF-MVR reconstruction network: three views + face masks -> 3DMM coefficients (spec sections 1.2-1.5).

Pipeline of :class:`DFMVRNet`:

1. **Inputs** (:meth:`DFMVRNet.encode_inputs`): each view's RGB scaled from [0, 1] to [-1, 1], concatenated with
   its face mask encoded per ``mask_encoding``: ``"onehot"`` (10 channels, one per part class; the paper, the
   default), ``"label"`` (one channel, label / 9; the public code) or ``"none"`` (RGB only: ablation v4).
2. **Fusion backbone** (:func:`~dfmvr_lib.networks.backbones.build_backbone`): (B, S, C_in, H, W) ->
   fused map (B, fused_channels, H, W); Tri-UNet by default.
3. **Regressor** (:func:`~dfmvr_lib.networks.regressors.build_regressor`): RedNet-50 (or ResNet-50) reads the
   fused map -> pooled feature (B, F).
4. **Heads**: linear layers on the pooled feature. Shared by the views: identity (K_id), expression (K_exp),
   albedo (K_alb), SH lighting (27). Per view: Euler angles (S x 3) and translation (S x 3), each one linear layer
   with ``S * 3`` outputs, i.e. an independent linear head per view (own weights) on the shared pooled feature:
   the fused feature has seen every view through the backbone, so it can encode each view's pose, and the view
   order (A, B, C) is fixed, so the head knows which output belongs to which view. 80 + 64 + 80 + 27 + 3 x 6 = 269
   outputs with the paper's counts.

**Output scales** (output = scale x raw linear output): identity, expression and albedo coefficients 1 (the
models' coefficients are in units of their standard deviation, ~N(0, 1)); SH lighting 1 (an offset to the
renderer's lighting, whose DC term gets +0.8 elsewhere); angles ``angle_scale`` radians per unit (default 1);
translation ``translation_scale_mm`` mm per unit (default 10 mm), so one learning rate suits every head.

**Initialisation**: every head's weight and bias are zero, so the untrained network predicts, for any input,
the mean face (all coefficients 0), zero SH offset, frontal pose (angles 0) and zero translation for every view:
the head at the origin, ``camera_distance_mm`` (1000 mm) in front of the camera. (At the first step the heads
get gradient and the trunk none; the trunk gets gradient once the heads are non-zero.)

Mixed precision: outputs are returned in float32 also under ``torch.autocast``; the model also runs after
``model.to(memory_format=torch.channels_last)``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..scene import FaceCoefficients
from .backbones import build_backbone
from .normalization import replace_batch_norm
from .regressors import build_regressor

if TYPE_CHECKING:  # pragma: no cover
    from ..config import WorkbookConfig

NUM_PARTS = 10
LIGHTING_COEFFICIENTS = 27
MASK_ENCODINGS = ("onehot", "label", "none")


def input_channels(mask_encoding: str) -> int:
    """Per-view input channels of the backbone: 3 (RGB) + 10 (``"onehot"``) / 1 (``"label"``) / 0 (``"none"``)."""
    extra = {"onehot": NUM_PARTS, "label": 1, "none": 0}
    if mask_encoding not in extra:
        raise ValueError(f"unknown mask_encoding {mask_encoding!r}; choose one of {MASK_ENCODINGS}")
    return 3 + extra[mask_encoding]


def coordinate_grid(images: torch.Tensor) -> torch.Tensor:
    """Pixel-centre coordinates as two channels (x right, y down, both in [-1, 1]) shaped like ``images``
    (..., C, H, W) -> (..., 2, H, W): "CoordConv" inputs, which let a trunk that ends in global average pooling
    tell where in the image a feature is."""
    H, W = images.shape[-2:]
    y = (torch.arange(H, device=images.device, dtype=images.dtype) + 0.5) / H * 2.0 - 1.0
    x = (torch.arange(W, device=images.device, dtype=images.dtype) + 0.5) / W * 2.0 - 1.0
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=0)                          # (2, H, W)
    return grid.expand(*images.shape[:-3], 2, H, W)


def zero_heads(heads: nn.ModuleDict) -> None:
    """Zero every head's weight and bias (the mean face, frontal, at the origin, for any input)."""
    for head in heads.values():
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def coefficient_heads(features: int, identity: int, expression: int, albedo: int, views: int) -> nn.ModuleDict:
    """Zero-initialised linear heads on a pooled feature (B, features): identity, expression, albedo, lighting (27)
    shared, and ``angles`` / ``translation`` with ``views * 3`` outputs (one independent head per view)."""
    heads = nn.ModuleDict({
        "identity": nn.Linear(features, identity),
        "expression": nn.Linear(features, expression),
        "albedo": nn.Linear(features, albedo),
        "lighting": nn.Linear(features, LIGHTING_COEFFICIENTS),
        "angles": nn.Linear(features, views * 3),
        "translation": nn.Linear(features, views * 3),
    })
    zero_heads(heads)
    return heads


class DFMVRNet(nn.Module):
    """DF-MVR network (see the module docstring).

    Args:
        backbone: ``"tri_unet"`` (paper), ``"cnn"`` (ablation v1), ``"unet"`` (ablation v2).
        base_width: first backbone level's width (64 in the paper).
        regressor: ``"rednet50"`` (paper) or ``"resnet50"`` (ablation v3).
        regressor_width: channel multiplier of the regressor (1.0 in the paper).
        mask_encoding: ``"onehot"``, ``"label"`` or ``"none"`` (ablation v4).
        fused_channels: channels of the fused map (64 in the paper).
        identity_components, expression_components, albedo_components: K_id, K_exp, K_alb.
        num_views: S (3: A left, B front, C right).
        angle_scale: radians per unit of the angle head's raw output.
        translation_scale_mm: millimetres per unit of the translation head's raw output.
        initial_yaws: radians, one per view: the yaw the pose heads start at (default all 0, frontal).

    ``forward(images (B, S, 3, H, W) float in [0, 1], parse_maps (B, S, H, W) int64 labels 0..9)`` ->
    :class:`~dfmvr_lib.scene.FaceCoefficients` with identity (B, K_id), expression (B, K_exp), albedo (B, K_alb),
    lighting (B, 27), angles (B, S, 3) radians (pitch, yaw, roll), translation (B, S, 3) mm; all float32.
    ``parse_maps`` may be ``None`` when ``mask_encoding == "none"``. H, W divisible by 16.
    """

    def __init__(self, backbone: str = "tri_unet", base_width: int = 64, regressor: str = "rednet50",
                 regressor_width: float = 1.0, mask_encoding: str = "onehot", fused_channels: int = 64,
                 identity_components: int = 80, expression_components: int = 64, albedo_components: int = 80,
                 num_views: int = 3, angle_scale: float = 1.0, translation_scale_mm: float = 10.0,
                 initial_yaws: tuple[float, ...] = (), coordinate_channels: bool = False):
        super().__init__()
        self.mask_encoding = mask_encoding
        self.coordinate_channels = coordinate_channels
        self.in_channels = input_channels(mask_encoding) + (2 if coordinate_channels else 0)
        self.num_views = num_views
        self.angle_scale = float(angle_scale)
        self.translation_scale_mm = float(translation_scale_mm)
        self.backbone = build_backbone(backbone, self.in_channels, base_width, fused_channels, num_views)
        self.regressor = build_regressor(regressor, fused_channels, regressor_width)
        self.heads = coefficient_heads(self.regressor.out_features, identity_components, expression_components,
                                       albedo_components, num_views)
        if initial_yaws:
            if len(initial_yaws) != num_views:
                raise ValueError(f"initial_yaws needs one yaw per view ({num_views}), got {tuple(initial_yaws)}")
            with torch.no_grad():
                for view, yaw in enumerate(initial_yaws):
                    self.heads["angles"].bias[view * 3 + 1] = float(yaw) / self.angle_scale

    def reset_heads(self) -> None:
        """Zero every head's weight and bias: the network then predicts the mean face, frontal, at the origin."""
        zero_heads(self.heads)

    def encode_inputs(self, images: torch.Tensor, parse_maps: torch.Tensor | None) -> torch.Tensor:
        """(B, S, 3, H, W) in [0, 1] + (B, S, H, W) labels -> backbone input (B, S, C_in, H, W).

        RGB is scaled to [-1, 1]; the mask is appended per ``mask_encoding`` (one-hot float channels, or one
        channel label / 9, or nothing).
        """
        if images.dim() != 5 or images.shape[1] != self.num_views or images.shape[2] != 3:
            raise ValueError(f"images must be (B, {self.num_views}, 3, H, W), got {tuple(images.shape)}")
        rgb = images * 2.0 - 1.0
        if self.coordinate_channels:
            rgb = torch.cat([rgb, coordinate_grid(images)], dim=2)
        if self.mask_encoding == "none":
            return rgb
        if parse_maps is None:
            raise ValueError(f"mask_encoding={self.mask_encoding!r} needs parse_maps")
        if parse_maps.shape != images.shape[:2] + images.shape[3:]:
            raise ValueError(f"parse_maps must be (B, S, H, W) = {tuple(images.shape[:2] + images.shape[3:])}, "
                             f"got {tuple(parse_maps.shape)}")
        labels = parse_maps.long()
        if self.mask_encoding == "onehot":
            mask = F.one_hot(labels, NUM_PARTS).permute(0, 1, 4, 2, 3).to(rgb.dtype)
        else:
            mask = (labels.to(rgb.dtype) / (NUM_PARTS - 1)).unsqueeze(2)
        return torch.cat([rgb, mask], dim=2)

    def features(self, images: torch.Tensor, parse_maps: torch.Tensor | None) -> torch.Tensor:
        """Pooled regressor feature (B, F) that the heads read."""
        return self.regressor(self.backbone(self.encode_inputs(images, parse_maps)))

    def forward(self, images: torch.Tensor, parse_maps: torch.Tensor | None = None) -> FaceCoefficients:
        feature = self.features(images, parse_maps)
        out = {name: head(feature).float() for name, head in self.heads.items()}
        B, S = feature.shape[0], self.num_views
        return FaceCoefficients(
            identity=out["identity"], expression=out["expression"], albedo=out["albedo"],
            lighting=out["lighting"],
            angles=out["angles"].reshape(B, S, 3) * self.angle_scale,
            translation=out["translation"].reshape(B, S, 3) * self.translation_scale_mm,
        )


def build_network(config: "WorkbookConfig") -> nn.Module:
    """:class:`DFMVRNet` from ``config.network`` and the component counts of ``config.face_model``; with
    ``network.backbone == "single_image"`` the baselines' :class:`~dfmvr_lib.networks.single_image.SingleImageNet`
    (one face per view); batch norms swapped per ``network.normalization``."""
    network, face_model = config.network, config.face_model
    if network.backbone == "single_image":
        from .single_image import SingleImageNet

        built = SingleImageNet(network.regressor, network.regressor_width, face_model.identity_components,
                               face_model.expression_components, face_model.albedo_components,
                               network.angle_scale, network.translation_scale_mm, network.coordinate_channels)
        return replace_batch_norm(built, network.normalization)
    return replace_batch_norm(DFMVRNet(
        backbone=network.backbone, base_width=network.base_width, regressor=network.regressor,
        regressor_width=network.regressor_width, mask_encoding=network.mask_encoding,
        fused_channels=network.fused_channels, identity_components=face_model.identity_components,
        expression_components=face_model.expression_components, albedo_components=face_model.albedo_components,
        angle_scale=network.angle_scale, translation_scale_mm=network.translation_scale_mm,
        initial_yaws=tuple(math.radians(y) for y in network.initial_view_yaws_degrees),
        coordinate_channels=network.coordinate_channels,
    ), network.normalization)
