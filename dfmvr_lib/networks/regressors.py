"""Parametric-regression trunks: RedNet-50 (the paper's) and ResNet-50 (ablation v3), trained from scratch.

Both follow the ResNet-50 layout: a stem that reduces the resolution by 4, then four stages of (3, 4, 6, 3)
bottleneck blocks (1x1 reduce -> spatial op -> 1x1 expand by 4, residual shortcut) with bottleneck widths
``64, 128, 256, 512`` times ``width`` and strides (1, 2, 2, 2), then global average pooling. Their input is the
fused feature map of the backbone (``in_channels`` of it, 64 in the paper), not an RGB image.

- :class:`ResNet50`: the spatial op is a 3x3 convolution (stride on the 3x3, "ResNet v1.5"); the stem is a 7x7
  stride-2 convolution -> BN -> ReLU -> 3x3 stride-2 max-pool.
- :class:`RedNet50`: the spatial op is a 7x7 :class:`~dfmvr_lib.networks.involution.Involution` (16 channels per
  group, reduction 4, stride via average pooling); the stem is RedNet's: 3x3 stride-2 conv (-> stem/2 channels)
  -> BN -> ReLU -> 3x3 involution -> BN -> ReLU -> 3x3 conv (-> stem channels) -> BN -> ReLU -> 3x3 stride-2
  max-pool.

Channel counts: ``round(c * width)``, at least 8, and rounded to a multiple of 16 (the involution group size)
when 16 or more, so every involution has whole groups; the stem has ``channels(64)`` channels.
The last BN of every residual branch starts with zero scale (Goyal et al.), so each block starts as the identity:
this makes the deep trunk trainable from scratch with small batches.

Shapes: ``forward`` (B, in_channels, H, W) -> (B, out_features) with ``out_features = 4 * channels(512)``
(2048 at width 1).

**Spatial pooling** (``spatial_pool`` k > 0; a CPU-profile addition, off in the paper): the feature also holds the
regressor's input map (the backbone's fused map in DF-MVR, the image in the baselines' network) average-pooled to
k x k and flattened, so ``out_features = 4 * channels(512) + in_channels * k * k``. Global average pooling keeps
what is in the map but not where; the coefficients of a face depend on where its parts are to a fraction of a
pixel, and a trunk trained from scratch for a few hundred steps had not learned to carry that through its strides
and pooling (``results/benchmarks/learning.md``; a linear read-out of the input reaches far more,
``results/benchmarks/readout.md``). Pooling the full-resolution input map keeps sub-pixel positions as averages;
pooling the first stage's map instead (after the stem's max-pool) closed less of the gap in the probes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .involution import Involution

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
INVOLUTION_KERNEL = 7
INVOLUTION_GROUP_CHANNELS = 16
INVOLUTION_REDUCTION = 4


def scaled_channels(channels: int, width: float, multiple: int = INVOLUTION_GROUP_CHANNELS) -> int:
    """``channels * width`` rounded, at least 8; a multiple of ``multiple`` when that is at least ``multiple``."""
    count = max(8, int(round(channels * width)))
    if count >= multiple:
        count = max(multiple, int(round(count / multiple)) * multiple)
    return count


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels))


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 conv-BN-ReLU -> spatial op-BN-ReLU -> 1x1 conv-BN (x4 channels) + shortcut -> ReLU.

    ``spatial``: ``"conv"`` (3x3 convolution with the block's stride) or ``"involution"`` (7x7 involution, stride
    via average pooling). The shortcut is a 1x1 conv-BN (with the stride) when the shape changes.

    Shapes: (B, in_channels, H, W) -> (B, 4 * mid_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, mid_channels: int, stride: int = 1, spatial: str = "conv"):
        super().__init__()
        out_channels = mid_channels * EXPANSION
        self.reduce = conv_bn(in_channels, mid_channels, 1)
        if spatial == "conv":
            self.spatial = nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, bias=False)
        elif spatial == "involution":
            self.spatial = Involution(mid_channels, INVOLUTION_KERNEL, stride, INVOLUTION_GROUP_CHANNELS,
                                      INVOLUTION_REDUCTION)
        else:
            raise ValueError(f"unknown spatial op {spatial!r}; use 'conv' or 'involution'")
        self.spatial_bn = nn.BatchNorm2d(mid_channels)
        self.expand = conv_bn(mid_channels, out_channels, 1)
        nn.init.zeros_(self.expand[1].weight)  # the residual branch starts at zero: the block is the identity
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.reduce(x))
        y = F.relu(self.spatial_bn(self.spatial(y)))
        y = self.expand(y)
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class _Bottleneck50(nn.Module):
    """Shared trunk of :class:`ResNet50` / :class:`RedNet50` (stem built by the subclass)."""

    spatial = "conv"

    def __init__(self, in_channels: int, width: float = 1.0, spatial_pool: int = 0):
        super().__init__()
        if spatial_pool < 0:
            raise ValueError(f"spatial_pool must be >= 0 (0 = global average pooling only), got {spatial_pool}")
        self.in_channels = in_channels
        self.width = width
        self.spatial_pool = int(spatial_pool)
        self.stem_channels = scaled_channels(64, width)
        self.stem = self._make_stem(in_channels, self.stem_channels)
        stages = []
        channels = self.stem_channels
        for index, (blocks, base) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            mid = scaled_channels(base, width)
            layers = []
            for block in range(blocks):
                stride = 2 if (block == 0 and index > 0) else 1
                layers.append(Bottleneck(channels, mid, stride, self.spatial))
                channels = mid * EXPANSION
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_features = channels + in_channels * self.spatial_pool ** 2

    def _make_stem(self, in_channels: int, channels: int) -> nn.Module:
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage features (B, out_features, ~H/32, ~W/32) for input (B, in_channels, H, W)."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> features (B, out_features): the last stage globally average-pooled, then (with
        ``spatial_pool`` k > 0) the input map average-pooled to k x k, flattened channel-major."""
        pooled = self.feature_map(x).mean(dim=(2, 3))
        if not self.spatial_pool:
            return pooled
        return torch.cat([pooled, F.adaptive_avg_pool2d(x, self.spatial_pool).flatten(1)], dim=1)


class ResNet50(_Bottleneck50):
    """ResNet-50 trunk (ablation v3): 7x7 stride-2 conv stem + max-pool, 3x3-conv bottlenecks (3, 4, 6, 3).

    Args:
        in_channels: channels of the input map (the fused feature map).
        width: multiplier of the stage widths 64/128/256/512 (and of the stem).

    Shapes: (B, in_channels, H, W) -> (B, out_features).
    """

    spatial = "conv"

    def _make_stem(self, in_channels: int, channels: int) -> nn.Module:
        return nn.Sequential(conv_bn(in_channels, channels, 7, 2), nn.ReLU(inplace=True),
                             nn.MaxPool2d(3, 2, 1))


class RedNet50(_Bottleneck50):
    """RedNet-50 trunk (the paper's regressor): involution bottlenecks (3, 4, 6, 3) and RedNet's stem.

    Stem: 3x3 stride-2 conv (-> stem/2 channels, rounded like the other widths) -> BN -> ReLU -> 3x3 involution
    (16 channels per group) -> BN -> ReLU -> 3x3 conv (-> stem) -> BN -> ReLU -> 3x3 stride-2 max-pool.
    Bottlenecks: the 3x3 conv replaced by a 7x7 involution (16 channels per group, reduction 4, stride via average
    pooling).

    Args:
        in_channels: channels of the input map (the fused feature map).
        width: multiplier of the stage widths 64/128/256/512 (and of the stem).

    Shapes: (B, in_channels, H, W) -> (B, out_features).
    """

    spatial = "involution"

    def _make_stem(self, in_channels: int, channels: int) -> nn.Module:
        half = scaled_channels(channels, 0.5)
        return nn.Sequential(
            conv_bn(in_channels, half, 3, 2), nn.ReLU(inplace=True),
            Involution(half, 3, 1, INVOLUTION_GROUP_CHANNELS, INVOLUTION_REDUCTION), nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            conv_bn(half, channels, 3), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )


REGRESSORS = {"rednet50": RedNet50, "resnet50": ResNet50}


def build_regressor(name: str, in_channels: int, width: float = 1.0, spatial_pool: int = 0) -> _Bottleneck50:
    """Regressor trunk by name: ``"rednet50"`` (paper) or ``"resnet50"`` (ablation v3); ``spatial_pool`` as in the
    module docstring (0 = global average pooling only, the paper).

    Returns a module mapping (B, in_channels, H, W) -> (B, module.out_features).
    """
    try:
        cls = REGRESSORS[name]
    except KeyError:
        raise ValueError(f"unknown regressor {name!r}; choose one of {sorted(REGRESSORS)}") from None
    return cls(in_channels, width, spatial_pool)
