"""DF-MVR networks (spec sections 1.2-1.5): involution, RedNet-50 / ResNet-50 regressors, the Tri-UNet fusion
backbone (and the v1 / v2 ablation backbones), and the full :class:`DFMVRNet` (views + masks -> coefficients).

- :mod:`.involution`: :class:`Involution` (pure PyTorch, unfold-based).
- :mod:`.regressors`: :func:`build_regressor` (``"rednet50"``, ``"resnet50"``).
- :mod:`.backbones`: :class:`TriUNet`, :class:`AttentionGate`, :func:`build_backbone` (``"tri_unet"``,
  ``"cnn"``, ``"unet"``).
- :mod:`.heads`: the zero-initialised coefficient heads both networks end in, and their CoordConv input channels.
- :mod:`.dfmvr`: :class:`DFMVRNet` (B faces seen in S views).
- :mod:`.single_image`: :class:`SingleImageNet`, the baselines' one-image regressor (one face per view).
- :mod:`.factory`: :func:`build_network` (from a :class:`~dfmvr_lib.config.WorkbookConfig`), :func:`network_class`
  and :func:`per_view_faces` (which network, and whether it gives one face per view, from the configuration).
"""
from .backbones import AttentionGate, TriUNet, ViewConcatCNN, ViewConcatUNet, build_backbone
from .dfmvr import DFMVRNet, input_channels
from .factory import build_network, network_class, per_view_faces
from .involution import Involution, involution_aggregate
from .regressors import RedNet50, ResNet50, build_regressor
from .single_image import SingleImageNet

__all__ = ["AttentionGate", "DFMVRNet", "Involution", "RedNet50", "ResNet50", "SingleImageNet", "TriUNet",
           "ViewConcatCNN", "ViewConcatUNet", "build_backbone", "build_network", "build_regressor", "input_channels",
           "involution_aggregate", "network_class", "per_view_faces"]
