"""Single-image regressor of the baselines (Deng et al. / Deep3DFace, Shang et al. / MGCNet): one RGB image ->
a full set of coefficients (its own shape, albedo, lighting and pose).

The baselines are trained on the same data with the same renderer and losses as DF-MVR (see
:mod:`dfmvr_lib.experiments.methods`); each view of a triplet is an independent face for the network. To fit the
multi-view training loop, :class:`SingleImageNet` takes the same (B, S, 3, H, W) input as :class:`DFMVRNet` and
returns B * S faces of one view each, in sample-major order (sample 0 views A, B, C, sample 1 ...): the same order
in which the renderer lays out the views of B faces seen S times.
"""
from __future__ import annotations

import torch
from torch import nn

from ..scene import FaceCoefficients
from .heads import coefficient_heads, coordinate_grid
from .regressors import build_regressor


class SingleImageNet(nn.Module):
    """ResNet-50 (or RedNet-50) on one RGB image in [-1, 1] -> coefficients of that image.

    Args:
        regressor, regressor_width: the trunk (:func:`~dfmvr_lib.networks.regressors.build_regressor`).
        identity_components, expression_components, albedo_components: K_id, K_exp, K_alb.
        angle_scale, translation_scale_mm: output scales of the pose heads (as in :class:`DFMVRNet`).
        coordinate_channels: append the pixel coordinates as two input channels (as in :class:`DFMVRNet`).
        spatial_pool: the regressor's input (the image) pooled to k x k in its feature (as in :class:`DFMVRNet`).

    ``forward(images (B, S, 3, H, W) in [0, 1], parse_maps=None)`` -> :class:`~dfmvr_lib.scene.FaceCoefficients`
    of B * S faces with one view each: identity (B*S, K_id), ..., angles (B*S, 1, 3), translation (B*S, 1, 3).
    The heads start at zero (mean face, frontal, at the origin), like :class:`DFMVRNet`. Parse maps are ignored
    (the baselines do not see face masks).

    ``per_view_faces`` is True: B * S faces of one view each (:class:`~dfmvr_lib.networks.dfmvr.DFMVRNet` gives
    B faces seen in S views).
    """

    per_view_faces = True

    def __init__(self, regressor: str = "resnet50", regressor_width: float = 1.0, identity_components: int = 80,
                 expression_components: int = 64, albedo_components: int = 80, angle_scale: float = 1.0,
                 translation_scale_mm: float = 10.0, coordinate_channels: bool = False, spatial_pool: int = 0):
        super().__init__()
        self.angle_scale = float(angle_scale)
        self.translation_scale_mm = float(translation_scale_mm)
        self.coordinate_channels = coordinate_channels
        self.regressor = build_regressor(regressor, 5 if coordinate_channels else 3, regressor_width, spatial_pool)
        self.heads = coefficient_heads(self.regressor.out_features, identity_components, expression_components,
                                       albedo_components, views=1)

    def forward(self, images: torch.Tensor, parse_maps: torch.Tensor | None = None) -> FaceCoefficients:
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, S, 3, H, W), got {tuple(images.shape)}")
        flat = images.reshape(-1, *images.shape[2:]) * 2.0 - 1.0
        if self.coordinate_channels:
            flat = torch.cat([flat, coordinate_grid(flat)], dim=1)
        feature = self.regressor(flat)
        out = {name: head(feature).float() for name, head in self.heads.items()}
        return FaceCoefficients(identity=out["identity"], expression=out["expression"], albedo=out["albedo"],
                                lighting=out["lighting"], angles=out["angles"].unsqueeze(1) * self.angle_scale,
                                translation=out["translation"].unsqueeze(1) * self.translation_scale_mm)


__all__ = ["SingleImageNet"]
