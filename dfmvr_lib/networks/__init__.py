"""DF-MVR networks (spec sections 1.2-1.5): involution, RedNet-50 / ResNet-50 regressors, the Tri-UNet fusion
backbone (and the v1 / v2 ablation backbones), and the full :class:`DFMVRNet` (views + masks -> coefficients).

- :mod:`.involution`: :class:`Involution` (pure PyTorch, unfold-based).
- :mod:`.regressors`: :func:`build_regressor` (``"rednet50"``, ``"resnet50"``).
- :mod:`.backbones`: :class:`TriUNet`, :class:`AttentionGate`, :func:`build_backbone` (``"tri_unet"``,
  ``"cnn"``, ``"unet"``).
- :mod:`.dfmvr`: :class:`DFMVRNet`, :func:`build_network` (from a :class:`~dfmvr_lib.config.WorkbookConfig`).
- :mod:`.single_image`: :class:`SingleImageNet`, the baselines' one-image regressor.
"""
from .backbones import AttentionGate, TriUNet, ViewConcatCNN, ViewConcatUNet, build_backbone
from .dfmvr import DFMVRNet, build_network, input_channels
from .involution import Involution, involution_aggregate
from .regressors import RedNet50, ResNet50, build_regressor
from .single_image import SingleImageNet

__all__ = ["AttentionGate", "DFMVRNet", "Involution", "RedNet50", "ResNet50", "SingleImageNet", "TriUNet", "ViewConcatCNN",
           "ViewConcatUNet", "build_backbone", "build_network", "build_regressor", "input_channels",
           "involution_aggregate"]
