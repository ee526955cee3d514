"""The DF-MVR reconstruction network: three views + face masks -> 3DMM coefficients (spec sections 1.2-1.5).

Pipeline of :class:`DFMVRNet`:

1. **Inputs** (:meth:`DFMVRNet.encode_inputs`): each view's RGB scaled from [0, 1] to [-1, 1], concatenated with
   its face mask encoded per ``mask_encoding``: ``"onehot"`` (10 channels, one per part class; the paper, the
   default), ``"label"`` (one channel, label / 9; the public code) or ``"none"`` (RGB only: ablation v4).
2. **Fusion backbone** (:func:`~dfmvr_lib.networks.backbones.build_backbone`): (B, S, C_in, H, W) ->
   fused map (B, fused_channels, H, W); Tri-UNet by default.
3. **Regressor** (:func:`~dfmvr_lib.networks.regressors.build_regressor`): RedNet-50 (or ResNet-50) reads the
   fused map -> pooled feature (B, F).
4. **Heads** (:func:`~dfmvr_lib.networks.heads.coefficient_heads`): linear layers on the pooled feature. Shared
   by the views: identity (K_id), expression (K_exp), albedo (K_alb), SH lighting (27). Per view: Euler angles
   (S x 3) and translation (S x 3), each one linear layer with ``S * 3`` outputs, i.e. an independent linear head
   per view (own weights) on the shared pooled feature: the fused feature has seen every view through the
   backbone, so it can encode each view's pose, and the view order (A, B, C) is fixed, so the head knows which
   output belongs to which view. 80 + 64 + 80 + 27 + 3 x 6 = 269 outputs with the paper's counts.

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

import torch
import torch.nn.functional as F
from torch import nn

from ..face_model.base import NUM_PARTS
from ..scene import FaceCoefficients
from .backbones import build_backbone
from .heads import POSE_PARAMETERS, coefficient_heads, coordinate_grid
from .regressors import build_regressor

MASK_ENCODINGS = ("onehot", "label", "none")


def input_channels(mask_encoding: str) -> int:
    """Per-view input channels of the backbone: 3 (RGB) + 10 (``"onehot"``) / 1 (``"label"``) / 0 (``"none"``)."""
    extra = {"onehot": NUM_PARTS, "label": 1, "none": 0}
    if mask_encoding not in extra:
        raise ValueError(f"unknown mask_encoding {mask_encoding!r}; choose one of {MASK_ENCODINGS}")
    return 3 + extra[mask_encoding]


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
        coordinate_channels: append the pixel coordinates as two input channels (CoordConv).
        spatial_pool: k > 0: the regressor's feature also holds its input map pooled to k x k
            (:mod:`~dfmvr_lib.networks.regressors`; 0 = global average pooling only, the paper).

    ``forward(images (B, S, 3, H, W) float in [0, 1], parse_maps (B, S, H, W) int64 labels 0..9)`` ->
    :class:`~dfmvr_lib.scene.FaceCoefficients` with identity (B, K_id), expression (B, K_exp), albedo (B, K_alb),
    lighting (B, 27), angles (B, S, 3) radians (pitch, yaw, roll), translation (B, S, 3) mm; all float32.
    ``parse_maps`` may be ``None`` when ``mask_encoding == "none"``. H, W divisible by 16.

    ``per_view_faces`` is False: one face per sample, seen in all S views (compare
    :class:`~dfmvr_lib.networks.single_image.SingleImageNet`).
    """

    per_view_faces = False

    def __init__(self, backbone: str = "tri_unet", base_width: int = 64, regressor: str = "rednet50",
                 regressor_width: float = 1.0, mask_encoding: str = "onehot", fused_channels: int = 64,
                 identity_components: int = 80, expression_components: int = 64, albedo_components: int = 80,
                 num_views: int = 3, angle_scale: float = 1.0, translation_scale_mm: float = 10.0,
                 initial_yaws: tuple[float, ...] = (), coordinate_channels: bool = False, spatial_pool: int = 0):
        super().__init__()
        self.mask_encoding = mask_encoding
        self.coordinate_channels = coordinate_channels
        self.in_channels = input_channels(mask_encoding) + (2 if coordinate_channels else 0)
        self.num_views = num_views
        self.angle_scale = float(angle_scale)
        self.translation_scale_mm = float(translation_scale_mm)
        self.backbone = build_backbone(backbone, self.in_channels, base_width, fused_channels, num_views)
        self.regressor = build_regressor(regressor, fused_channels, regressor_width, spatial_pool)
        self.heads = coefficient_heads(self.regressor.out_features, identity_components, expression_components,
                                       albedo_components, num_views)
        if initial_yaws:
            if len(initial_yaws) != num_views:
                raise ValueError(f"initial_yaws needs one yaw per view ({num_views}), got {tuple(initial_yaws)}")
            with torch.no_grad():
                for view, yaw in enumerate(initial_yaws):
                    self.heads["angles"].bias[view * POSE_PARAMETERS + 1] = float(yaw) / self.angle_scale

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
            angles=out["angles"].reshape(B, S, POSE_PARAMETERS) * self.angle_scale,
            translation=out["translation"].reshape(B, S, POSE_PARAMETERS) * self.translation_scale_mm,
        )



__all__ = ["DFMVRNet", "MASK_ENCODINGS", "input_channels"]
