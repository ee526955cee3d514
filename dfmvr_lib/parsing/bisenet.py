"""BiSeNet face-parse network (ResNet-18 context path), the spec's parse net (section 1.1).

Architecture (module names follow the public face-parsing.PyTorch model so that its 19-class CelebAMask-HQ
checkpoints load with an identity key mapping, see :mod:`dfmvr_lib.parsing.pretrained`):

- ``cp`` (:class:`ContextPath`): ``cp.resnet`` a ResNet-18 trunk giving features at 1/8, 1/16 and 1/32;
  attention refinement modules ``cp.arm16`` (1/16) and ``cp.arm32`` (1/32); global average context
  ``cp.conv_avg``; ``cp.conv_head32`` / ``cp.conv_head16`` after each nearest-neighbour 2x upsampling.
- spatial path: as in face-parsing.PyTorch the 1/8 ResNet feature (``layer2``) plays the spatial path's role
  (no separate three-conv spatial branch, so the checkpoint layout matches).
- ``ffm`` (:class:`FeatureFusionModule`): concat(spatial, context) -> 1x1 ConvBNReLU -> channel attention
  (``conv1`` -> ReLU -> ``conv2`` -> sigmoid), out = feat * attention + feat.
- heads: ``conv_out`` (main, from the fused 1/8 feature), auxiliary ``conv_out16`` / ``conv_out32`` (from the
  context features), each ConvBNReLU 3x3 -> 1x1 conv to the classes, bilinearly upsampled to the input size.

Input: RGB (N, 3, H, W) in [0, 1]; the network normalises it itself with the ImageNet mean / std (the
normalisation face-parsing.PyTorch applies before its network; the spec's parse-net input normalisation).
Output: logits (N, C, H, W) at the input resolution (``forward`` returns the main head only in eval mode and
``(main, aux16, aux32)`` in training mode).

``width`` scales every channel count (1.0 = the paper / checkpoint widths: ResNet 64-128-256-512, context 128,
fusion 256, main head 256, auxiliary heads 64). ``internal_scale`` resizes the input by that factor before the
network and the logits back afterwards (useful for small CPU images whose parts are only a few pixels wide at the
1/8 feature resolution); it does not change the parameters.

``refine`` (off by default, and off for imported checkpoints, whose layout has no such module): a small
full-resolution refinement head (``refine``: three 3x3 ConvBNReLU of ``scaled(64, width)`` channels, the third
dilated by 2, then a 1x1 conv) that reads the normalised image and the upsampled main logits and adds a residual to
those logits. This is a documented addition to BiSeNet for small CPU images: the main head works on the 1/8
feature grid (8 px at 112 px input), coarser than the brows and lips (2-4 px thick), so boundaries of thin parts can
only be placed on that grid; the refinement snaps them to the image edges. With it, training mode also returns
the coarse main logits as an extra auxiliary output.

``detail`` (off by default, off in the paper profile and for imported checkpoints; the CPU profile's head): a
detail decoder (:class:`DetailHead`, module ``detail``) with channels ``detail = (channels4, channels2)``. The fused
1/8 feature is reduced (1x1) and upsampled 2x, merged (3x3 ConvBNReLU) with the ResNet ``layer1`` feature at 1/4,
upsampled 2x again and merged (3x3 ConvBNReLU) with the ResNet stem feature at 1/2 (``conv1``-``bn1``-ReLU, before the
max-pool), and a zero-initialised 1x1 conv adds a residual to the coarse main logits at that resolution. Like
``refine`` it is a documented addition to BiSeNet for small CPU images, but it reads the network's own
higher-resolution features rather than raw colours (with ``internal_scale`` 2 the stem runs at the input
resolution); on the CPU benchmark it scored a little higher than ``refine`` at about the same step time (validation
mean IoU +0.005 after 500 steps). ``refine`` and ``detail`` exclude each other; with ``detail`` training mode also
returns the coarse main logits as an extra auxiliary output.

``channels_last``: the forward pass runs in the channels-last memory layout (faster oneDNN convolutions on CPU; the
results are the same up to rounding; the returned logits are contiguous as usual). Not part of the parameters.

``output_groups``: when given (a list of lists of class indices), the network's raw classes are merged into
``len(output_groups)`` output classes by log-sum-exp of the logits in each group (used to turn a 19-class
CelebAMask-HQ checkpoint into the project's 10 classes); ``forward(..., merge=False)`` returns the raw logits.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 10


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels * width`` rounded, at least 8."""
    return max(8, int(round(channels * width)))


class ConvBNReLU(nn.Module):
    """``conv`` (no bias) -> ``bn`` -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: conv1-bn1-relu-conv2-bn2 + shortcut (``downsample`` = 1x1 conv + BN when needed)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 trunk (no classifier); returns the 1/8, 1/16 and 1/32 features."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [scaled(n, width) for n in (64, 128, 256, 512)]
        self.channels = c
        self.conv1 = nn.Conv2d(3, c[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(c[0], c[0]), BasicBlock(c[0], c[0]))
        self.layer2 = nn.Sequential(BasicBlock(c[0], c[1], 2), BasicBlock(c[1], c[1]))
        self.layer3 = nn.Sequential(BasicBlock(c[1], c[2], 2), BasicBlock(c[2], c[2]))
        self.layer4 = nn.Sequential(BasicBlock(c[2], c[3], 2), BasicBlock(c[3], c[3]))

    def forward(self, x: torch.Tensor, low: bool = False):
        """-> (feat8, feat16, feat32); with ``low`` also (stem at 1/2, layer1 at 1/4) as a fourth item."""
        stem = F.relu(self.bn1(self.conv1(x)))
        feat4 = self.layer1(self.maxpool(stem))
        feat8 = self.layer2(feat4)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        if low:
            return feat8, feat16, feat32, (stem, feat4)
        return feat8, feat16, feat32


class AttentionRefinementModule(nn.Module):
    """ConvBNReLU, then channel attention from the global average (1x1 ``conv_atten`` -> ``bn_atten`` -> sigmoid)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    """ResNet-18 + ARMs on 1/16 and 1/32 + global context; returns (feat8, context at 1/8, context at 1/16)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.resnet = ResNet18(width)
        c8, c16, c32 = self.resnet.channels[1:]
        head = scaled(128, width)
        self.head_channels = head
        self.arm16 = AttentionRefinementModule(c16, head)
        self.arm32 = AttentionRefinementModule(c32, head)
        self.conv_head32 = ConvBNReLU(head, head, 3)
        self.conv_head16 = ConvBNReLU(head, head, 3)
        self.conv_avg = ConvBNReLU(c32, head, 1)

    def forward(self, x: torch.Tensor, low: bool = False):
        feat8, feat16, feat32, *rest = self.resnet(x, low=low)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + context               # broadcast = nearest upsampling of a 1x1 map
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return (feat8, feat16_up, feat32_up, *rest)


class FeatureFusionModule(nn.Module):
    """Fuse spatial and context features: concat -> ``convblk`` 1x1 -> channel attention (``conv1``, ``conv2``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2d(out_channels, max(1, out_channels // 4), 1, bias=False)
        self.conv2 = nn.Conv2d(max(1, out_channels // 4), out_channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    """Segmentation head: ``conv`` (ConvBNReLU 3x3) -> ``conv_out`` (1x1, no bias) to the classes."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class RefinementHead(nn.Module):
    """Full-resolution residual refinement of the logits from the image (see the module doc)."""

    def __init__(self, num_classes: int, channels: int):
        super().__init__()
        self.conv1 = ConvBNReLU(3 + num_classes, channels, 3)
        self.conv2 = ConvBNReLU(channels, channels, 3)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 2, dilation=2, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv_out = nn.Conv2d(channels, num_classes, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(torch.cat([image, logits], dim=1)))
        x = F.relu(self.bn3(self.conv3(x)))
        return logits + self.conv_out(x)


class DetailHead(nn.Module):
    """Detail decoder (CPU-profile addition, see the module doc): the fused 1/8 feature, reduced by ``reduce``
    (1x1) and upsampled 2x, is merged with the ResNet ``layer1`` feature (1/4) by ``conv4`` (3x3), upsampled 2x
    again and merged with the stem feature (1/2, the output of ``conv1``-``bn1``-ReLU) by ``conv2`` (3x3);
    ``conv_out`` (1x1, zero-initialised) adds a residual to the coarse main logits upsampled to that resolution.
    Returns logits at the stem's resolution."""

    def __init__(self, num_classes: int, fused_channels: int, layer1_channels: int, stem_channels: int,
                 channels4: int, channels2: int):
        super().__init__()
        self.reduce = ConvBNReLU(fused_channels, channels4, 1)
        self.conv4 = ConvBNReLU(channels4 + layer1_channels, channels4, 3)
        self.conv2 = ConvBNReLU(channels4 + stem_channels, channels2, 3)
        self.conv_out = nn.Conv2d(channels2, num_classes, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, fused: torch.Tensor, feat4: torch.Tensor, stem: torch.Tensor,
                coarse: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(fused), size=feat4.shape[2:], mode="bilinear", align_corners=False)
        x = self.conv4(torch.cat([x, feat4], dim=1))
        size = stem.shape[2:]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = self.conv2(torch.cat([x, stem], dim=1))
        coarse = F.interpolate(coarse, size=size, mode="bilinear", align_corners=True)   # as the other heads
        return coarse + self.conv_out(x)


def merge_logits(logits: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, K, H, W) logits -> (N, len(groups), H, W): log-sum-exp of the logits of each group of raw classes
    (softmax of the result = the summed probabilities of the group)."""
    return torch.stack([torch.logsumexp(logits[:, list(group)], dim=1) for group in groups], dim=1)


class BiSeNet(nn.Module):
    """BiSeNet face parser (module doc). ``num_classes``: raw output classes (10 = the project's classes)."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: float = 1.0, internal_scale: float = 1.0,
                 output_groups: Sequence[Sequence[int]] | None = None, refine: bool = False,
                 detail: Sequence[int] | None = None, channels_last: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.width = width
        self.internal_scale = internal_scale
        self.output_groups = [list(g) for g in output_groups] if output_groups is not None else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.cp = ContextPath(width)
        spatial, head = self.cp.resnet.channels[1], self.cp.head_channels
        fuse = scaled(256, width)
        self.ffm = FeatureFusionModule(spatial + head, fuse)
        self.conv_out = BiSeNetOutput(fuse, fuse, num_classes)
        self.conv_out16 = BiSeNetOutput(head, scaled(64, width), num_classes)
        self.conv_out32 = BiSeNetOutput(head, scaled(64, width), num_classes)
        self.refine = RefinementHead(num_classes, scaled(64, width)) if refine else None
        self.detail_channels = tuple(int(c) for c in detail) if detail else None
        self.detail = None
        if detail and refine:
            raise ValueError("choose one of refine and detail")
        if detail:
            c = self.cp.resnet.channels
            self.detail = DetailHead(num_classes, fuse, c[0], c[0], *self.detail_channels)
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor, merge: bool = True, aux: bool | None = None):
        """images (N, 3, H, W) in [0, 1] -> logits (N, C, H, W); with ``aux`` (default: ``self.training``)
        a tuple (main, aux16, aux32)."""
        aux = self.training if aux is None else aux
        size = images.shape[2:]
        normalised = (images - self.mean) / self.std
        x = normalised
        if self.internal_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.internal_scale, mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feat8, context8, context16, *low = self.cp(x, low=self.detail is not None)
        fused = self.ffm(feat8, context8)
        heads = [self.conv_out(fused)]
        if aux:
            heads += [self.conv_out16(context8), self.conv_out32(context16)]
        if self.detail is not None:
            stem, feat4 = low[0]
            detailed = self.detail(fused, feat4, stem, heads[0])
            if aux:
                heads.append(heads[0])
            heads[0] = detailed
        heads = [F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
                 if logits.shape[2:] != size else logits for logits in heads]
        if self.refine is not None:
            coarse = heads[0]
            heads[0] = self.refine(normalised, coarse)
            if aux:
                heads.append(coarse)
        outputs = []
        for logits in heads:
            if merge and self.output_groups is not None:
                logits = merge_logits(logits, self.output_groups)
            outputs.append(logits.contiguous() if self.channels_last else logits)
        return tuple(outputs) if aux else outputs[0]


def build_parser(parser_config=None, num_classes: int = NUM_CLASSES) -> BiSeNet:
    """A BiSeNet for a :class:`dfmvr_lib.config.ParserConfig` (width, internal scale, refine / detail head,
    channels-last layout)."""
    if parser_config is None:
        return BiSeNet(num_classes)
    return BiSeNet(num_classes, width=parser_config.width, internal_scale=parser_config.internal_scale,
                   refine=parser_config.refine, detail=parser_config.detail or None,
                   channels_last=parser_config.channels_last)


__all__ = ["BiSeNet", "ContextPath", "FeatureFusionModule", "AttentionRefinementModule", "BiSeNetOutput",
           "ResNet18", "RefinementHead", "ConvBNReLU", "BasicBlock", "IMAGENET_MEAN", "IMAGENET_STD", "NUM_CLASSES",
           "build_parser", "merge_logits", "scaled"]
