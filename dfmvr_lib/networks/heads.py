"""The coefficient heads both reconstruction networks end in, and the input channels they share.

A network's pooled feature (B, F) is read by six zero-initialised linear heads (:func:`coefficient_heads`):
identity (K_id), expression (K_exp), albedo (K_alb) and SH lighting (:data:`LIGHTING_COEFFICIENTS` = 27, 3 colour
channels x 9 coefficients), shared by the views, and Euler angles and translation with
:data:`POSE_PARAMETERS` (3) outputs per view. Zero weights and biases make the untrained network predict the mean
face, zero SH offset, frontal pose and zero translation for any input. The state-dict keys of a network are
``heads.<name>.weight`` / ``heads.<name>.bias`` with the names of :data:`HEAD_NAMES`.

:func:`coordinate_grid` gives the optional "CoordConv" input channels of both networks
(``NetworkConfig.coordinate_channels``).
"""
from __future__ import annotations

import torch
from torch import nn

LIGHTING_COEFFICIENTS = 27
"""SH lighting outputs: 3 colour channels x 9 second-order SH coefficients."""
POSE_PARAMETERS = 3
"""Outputs per view of each pose head: Euler angles (pitch, yaw, roll) radians, or translation (x, y, z) mm."""
HEAD_NAMES = ("identity", "expression", "albedo", "lighting", "angles", "translation")
"""The heads, in the order of their state-dict keys."""


def zero_heads(heads: nn.ModuleDict) -> None:
    """Zero every head's weight and bias (the mean face, frontal, at the origin, for any input)."""
    for head in heads.values():
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def coefficient_heads(features: int, identity: int, expression: int, albedo: int, views: int) -> nn.ModuleDict:
    """Zero-initialised linear heads on a pooled feature (B, features): identity, expression, albedo, lighting (27)
    shared, and ``angles`` / ``translation`` with ``views * 3`` outputs (one independent head per view)."""
    outputs = dict(zip(HEAD_NAMES, (identity, expression, albedo, LIGHTING_COEFFICIENTS, views * POSE_PARAMETERS,
                                    views * POSE_PARAMETERS)))
    heads = nn.ModuleDict({name: nn.Linear(features, count) for name, count in outputs.items()})
    zero_heads(heads)
    return heads


def coordinate_grid(images: torch.Tensor) -> torch.Tensor:
    """Pixel-centre coordinates as two channels (x right, y down, both in [-1, 1]) shaped like ``images``
    (..., C, H, W) -> (..., 2, H, W): "CoordConv" inputs, which let a trunk that ends in global average pooling
    tell where in the image a feature is."""
    H, W = images.shape[-2:]
    y = (torch.arange(H, device=images.device, dtype=images.dtype) + 0.5) / H * 2.0 - 1.0
    x = (torch.arange(W, device=images.device, dtype=images.dtype) + 0.5) / W * 2.0 - 1.0
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=0)                          # (2, H, W)
    return grid.expand(*images.shape[:-3], 2, H, W)


__all__ = ["HEAD_NAMES", "LIGHTING_COEFFICIENTS", "POSE_PARAMETERS", "coefficient_heads", "coordinate_grid",
           "zero_heads"]
