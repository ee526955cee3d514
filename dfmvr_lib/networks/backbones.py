"""Fusion backbones: three views in, one fused full-resolution feature map out.

Every backbone has one interface::

    forward(inputs: (B, S, C_in, H, W)) -> fused (B, C_fused, H, W)

with ``S = num_views`` (3: A left, B front, C right), ``C_in`` the per-view input channels (RGB + face mask),
``H`` and ``W`` divisible by 16 (four 2x poolings). Building blocks: :class:`DoubleConv` (3x3 conv-BN-ReLU twice),
:class:`UNetEncoder` (5 levels of DoubleConv with 2x max-pooling between them, widths ``base * (1, 2, 4, 8, 16)``),
:class:`AttentionGate` (Oktay et al., additive attention).

- :class:`TriUNet` (the paper's, spec 1.3): three UNSHARED encoders; the three bottlenecks are concatenated
  (3 x 16 base channels at H/16) and go through ONE shared decoder. Decoder level l (l = 3, 2, 1, 0, widths
  ``C_l = base * 2**l``): ``up = ConvTranspose2x2(previous)`` (-> C_l channels, 2x resolution); each view's
  encoder skip ``x_v`` (C_l) passes its own attention gate gated by ``up``; the level's output is
  ``DoubleConv(concat[up, gated_A, gated_B, gated_C]) -> C_l``. A final 1x1 conv maps the last level (base
  channels, full resolution) to ``fused_channels`` (64 in the paper). The concatenation before the last
  DoubleConv has 4 x base channels (256 at base 64: the public code's output).
- :class:`ViewConcatCNN` (ablation v1, "CNN"): the same unshared encoders, no decoder; the three bottlenecks are
  concatenated (3 x 16 base at H/16) -> 1x1 conv -> ``fused_channels`` -> bilinear upsampling to (H, W), so the
  regressor reads an input of the same size as with the Tri-UNet.
- :class:`ViewConcatUNet` (ablation v2, "UNet"): one plain UNet per view (unshared encoder and decoder, skips
  concatenated, no attention, no cross-view interaction), each giving ``base`` channels at full resolution; the
  three outputs are concatenated (3 x base) -> 1x1 conv -> ``fused_channels``. Views meet only in that 1x1 conv.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 5
LEVEL_MULTIPLIERS = (1, 2, 4, 8, 16)


class DoubleConv(nn.Module):
    """(3x3 conv (no bias) -> BN -> ReLU) x 2. Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNetEncoder(nn.Module):
    """UNet encoder: 5 levels of :class:`DoubleConv`, 2x2 max-pooling between levels, widths base*(1,2,4,8,16).

    Shapes: (N, in_channels, H, W) -> list of 5 features, level l: (N, base * 2**l, H / 2**l, W / 2**l);
    the last one is the bottleneck.
    """

    def __init__(self, in_channels: int, base_width: int):
        super().__init__()
        self.widths = tuple(base_width * m for m in LEVEL_MULTIPLIERS)
        channels = (in_channels,) + self.widths
        self.levels = nn.ModuleList(DoubleConv(channels[i], channels[i + 1]) for i in range(LEVELS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for index, level in enumerate(self.levels):
            if index:
                x = F.max_pool2d(x, 2)
            x = level(x)
            features.append(x)
        return features


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., "Attention U-Net", 2018) for one skip connection.

    ``psi = sigmoid(conv1x1_psi(ReLU(BN(W_g g) + BN(W_x x))))`` with 1x1 convolutions ``W_g`` (gate -> F_int),
    ``W_x`` (skip -> F_int), ``conv1x1_psi`` (F_int -> 1, with bias); output ``x * psi``. Here the gate ``g`` is
    the upsampled decoder feature, at the skip's resolution, so no resampling is needed.

    Args:
        gate_channels: channels of ``g``.
        skip_channels: channels of ``x``.
        inter_channels: F_int (default ``skip_channels // 2``, at least 1).

    Shapes: g (N, gate_channels, H, W), x (N, skip_channels, H, W) -> (N, skip_channels, H, W);
    :meth:`attention` returns psi (N, 1, H, W) in (0, 1).
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels or max(1, skip_channels // 2)
        self.inter_channels = inter
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inter, 1, bias=False), nn.BatchNorm2d(inter))
        self.psi = nn.Conv2d(inter, 1, 1)

    def attention(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Attention coefficients psi (N, 1, H, W) in (0, 1)."""
        return torch.sigmoid(self.psi(F.relu(self.w_g(g) + self.w_x(x))))

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(g, x)


def _check_inputs(inputs: torch.Tensor, num_views: int) -> None:
    if inputs.dim() != 5 or inputs.shape[1] != num_views:
        raise ValueError(f"expected inputs (B, {num_views}, C, H, W), got {tuple(inputs.shape)}")
    H, W = inputs.shape[-2:]
    if H % 16 or W % 16:
        raise ValueError(f"image size {H}x{W} must be divisible by 16 (four 2x poolings)")


class _MultiViewEncoders(nn.Module):
    """``num_views`` unshared :class:`UNetEncoder` s (one per view)."""

    def __init__(self, in_channels: int, base_width: int, num_views: int):
        super().__init__()
        self.in_channels = in_channels
        self.base_width = base_width
        self.num_views = num_views
        self.encoders = nn.ModuleList(UNetEncoder(in_channels, base_width) for _ in range(num_views))

    def encode(self, inputs: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per view, the 5 encoder features of that view (see :class:`UNetEncoder`)."""
        _check_inputs(inputs, self.num_views)
        return [encoder(inputs[:, view]) for view, encoder in enumerate(self.encoders)]


class TriUNet(_MultiViewEncoders):
    """Tri-UNet fusion backbone (the paper's; see the module docstring).

    Args:
        in_channels: per-view input channels C_in.
        base_width: width of the first encoder level (64 in the paper).
        fused_channels: output channels (64 in the paper).
        num_views: S (3).

    Shapes: (B, S, C_in, H, W) -> (B, fused_channels, H, W); H, W divisible by 16.
    """

    def __init__(self, in_channels: int, base_width: int = 64, fused_channels: int = 64, num_views: int = 3):
        super().__init__(in_channels, base_width, num_views)
        widths = self.encoders[0].widths
        self.fused_channels = fused_channels
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        previous = num_views * widths[-1]
        for level in reversed(range(LEVELS - 1)):           # 3, 2, 1, 0
            channels = widths[level]
            self.up.append(nn.ConvTranspose2d(previous, channels, 2, stride=2))
            self.gates.append(nn.ModuleList(AttentionGate(channels, channels) for _ in range(num_views)))
            self.decoder.append(DoubleConv((num_views + 1) * channels, channels))
            previous = channels
        self.head = nn.Conv2d(widths[0], fused_channels, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.encode(inputs)
        x = torch.cat([view[-1] for view in features], dim=1)
        for step, (up, gates, block) in enumerate(zip(self.up, self.gates, self.decoder)):
            level = LEVELS - 2 - step
            x = up(x)
            gated = [gate(x, view[level]) for gate, view in zip(gates, features)]
            x = block(torch.cat([x] + gated, dim=1))
        return self.head(x)


class ViewConcatCNN(_MultiViewEncoders):
    """Ablation v1 ("CNN"): unshared per-view encoders, bottlenecks concatenated at the end, no decoder.

    concat of the bottlenecks (B, S * 16 base, H/16, W/16) -> 1x1 conv -> fused_channels -> bilinear upsampling.

    Shapes: (B, S, C_in, H, W) -> (B, fused_channels, H, W).
    """

    def __init__(self, in_channels: int, base_width: int = 64, fused_channels: int = 64, num_views: int = 3):
        super().__init__(in_channels, base_width, num_views)
        self.fused_channels = fused_channels
        self.head = nn.Conv2d(num_views * self.encoders[0].widths[-1], fused_channels, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.encode(inputs)
        x = self.head(torch.cat([view[-1] for view in features], dim=1))
        return F.interpolate(x, size=inputs.shape[-2:], mode="bilinear", align_corners=False)


class PlainUNet(nn.Module):
    """Plain UNet (no attention): :class:`UNetEncoder` + decoder levels ``DoubleConv(concat[ConvT(x), skip])``.

    Shapes: (N, in_channels, H, W) -> (N, base_width, H, W).
    """

    def __init__(self, in_channels: int, base_width: int):
        super().__init__()
        self.encoder = UNetEncoder(in_channels, base_width)
        widths = self.encoder.widths
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in reversed(range(LEVELS - 1)):
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.decoder.append(DoubleConv(2 * widths[level], widths[level]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        x = features[-1]
        for step, (up, block) in enumerate(zip(self.up, self.decoder)):
            x = block(torch.cat([up(x), features[LEVELS - 2 - step]], dim=1))
        return x


class ViewConcatUNet(nn.Module):
    """Ablation v2 ("UNet"): one unshared :class:`PlainUNet` per view; outputs concatenated -> 1x1 conv.

    Shapes: (B, S, C_in, H, W) -> (B, fused_channels, H, W); :meth:`view_features` gives the per-view UNet
    outputs (B, S, base_width, H, W), each a function of its own view only.
    """

    def __init__(self, in_channels: int, base_width: int = 64, fused_channels: int = 64, num_views: int = 3):
        super().__init__()
        self.in_channels = in_channels
        self.base_width = base_width
        self.fused_channels = fused_channels
        self.num_views = num_views
        self.unets = nn.ModuleList(PlainUNet(in_channels, base_width) for _ in range(num_views))
        self.head = nn.Conv2d(num_views * base_width, fused_channels, 1)

    def view_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, S, C_in, H, W) -> (B, S, base_width, H, W), view s computed from view s alone."""
        _check_inputs(inputs, self.num_views)
        return torch.stack([unet(inputs[:, view]) for view, unet in enumerate(self.unets)], dim=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        _check_inputs(inputs, self.num_views)
        return self.head(torch.cat([unet(inputs[:, view]) for view, unet in enumerate(self.unets)], dim=1))


BACKBONES = {"tri_unet": TriUNet, "cnn": ViewConcatCNN, "unet": ViewConcatUNet}


def build_backbone(name: str, in_channels: int, base_width: int = 64, fused_channels: int = 64,
                   num_views: int = 3) -> nn.Module:
    """Fusion backbone by name: ``"tri_unet"`` (paper), ``"cnn"`` (ablation v1), ``"unet"`` (ablation v2).

    Returns a module mapping (B, num_views, in_channels, H, W) -> (B, fused_channels, H, W).
    """
    try:
        cls = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None
    return cls(in_channels, base_width, fused_channels, num_views)
