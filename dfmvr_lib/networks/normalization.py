"""Normalisation layers of the networks: batch norm (the paper's) or group norm (for small batches).

Every network of :mod:`dfmvr_lib.networks` is built with ``nn.BatchNorm2d``; :func:`replace_batch_norm` swaps each
of them for ``nn.GroupNorm`` when ``NetworkConfig.normalization == "group"``. Group norm normalises each sample on
its own, so a step of 4 triplets trains as well as one of 16 and training and evaluation see the same statistics
(batch norm trains on batch statistics but evaluates with running means). The affine parameters are copied, so
a residual branch whose last batch norm starts at zero scale still starts as the identity.
"""
from __future__ import annotations

from torch import nn

NORMALIZATIONS = ("batch", "group")
GROUP_CHANNELS = 8
"""Channels per group of the group norms (Wu & He found 8-16 channels per group as good as 32 groups)."""


def group_count(channels: int, group_channels: int = GROUP_CHANNELS) -> int:
    """Number of groups for ``channels``: ``channels // group_channels`` when that divides evenly, else 1."""
    if channels >= group_channels and channels % group_channels == 0:
        return channels // group_channels
    return 1


def replace_batch_norm(module: nn.Module, kind: str) -> nn.Module:
    """Swap every ``nn.BatchNorm2d`` inside ``module`` (in place) for ``kind``: ``"batch"`` leaves it as it is,
    ``"group"`` puts ``nn.GroupNorm(group_count(C), C)`` with the same affine weights. Returns ``module``."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; choose one of {NORMALIZATIONS}")
    if kind == "batch":
        return module
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            norm = nn.GroupNorm(group_count(child.num_features), child.num_features, eps=child.eps,
                                affine=child.affine)
            if child.affine:
                norm.weight.data.copy_(child.weight.data)
                norm.bias.data.copy_(child.bias.data)
            setattr(module, name, norm)
        else:
            replace_batch_norm(child, kind)
    return module


__all__ = ["GROUP_CHANNELS", "NORMALIZATIONS", "group_count", "replace_batch_norm"]
