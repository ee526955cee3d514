"""Which reconstruction network a configuration builds, and the building.

``NetworkConfig.backbone`` chooses the class (:func:`network_class`): ``"single_image"`` is the baselines'
:class:`~dfmvr_lib.networks.single_image.SingleImageNet` (one face per view), every other backbone
(``"tri_unet"``, ``"cnn"``, ``"unet"``) the multi-view :class:`~dfmvr_lib.networks.dfmvr.DFMVRNet` (one face per
sample, seen in all views). :func:`per_view_faces` answers "one face per view?" from the configuration alone (the
class attribute of the same name, without building the network); :func:`build_network` builds it.
"""
from __future__ import annotations

import math

from torch import nn

from ..config import NetworkConfig, WorkbookConfig
from .dfmvr import DFMVRNet
from .normalization import replace_batch_norm
from .single_image import SingleImageNet

SINGLE_IMAGE_BACKBONE = "single_image"
"""The ``NetworkConfig.backbone`` value of the baselines' one-image regressor."""


def network_class(network: NetworkConfig) -> type[DFMVRNet] | type[SingleImageNet]:
    """The class :func:`build_network` builds for ``network`` (a :class:`~dfmvr_lib.config.NetworkConfig`):
    :class:`SingleImageNet` for ``backbone == "single_image"``, else :class:`DFMVRNet`."""
    return SingleImageNet if network.backbone == SINGLE_IMAGE_BACKBONE else DFMVRNet


def per_view_faces(network: NetworkConfig) -> bool:
    """Whether the network of ``network`` predicts one face per view (B * S faces of one view each, the baselines)
    rather than one face per sample seen in all S views; the ``per_view_faces`` of :func:`network_class`."""
    return network_class(network).per_view_faces


def build_network(config: WorkbookConfig) -> nn.Module:
    """The network of ``config.network`` (:func:`network_class`) with the component counts of
    ``config.face_model``; batch norms swapped per ``network.normalization``."""
    network, face_model = config.network, config.face_model
    if network_class(network) is SingleImageNet:
        built = SingleImageNet(network.regressor, network.regressor_width, face_model.identity_components,
                               face_model.expression_components, face_model.albedo_components,
                               network.angle_scale, network.translation_scale_mm, network.coordinate_channels,
                               network.spatial_pool)
        return replace_batch_norm(built, network.normalization)
    return replace_batch_norm(DFMVRNet(
        backbone=network.backbone, base_width=network.base_width, regressor=network.regressor,
        regressor_width=network.regressor_width, mask_encoding=network.mask_encoding,
        fused_channels=network.fused_channels, identity_components=face_model.identity_components,
        expression_components=face_model.expression_components, albedo_components=face_model.albedo_components,
        angle_scale=network.angle_scale, translation_scale_mm=network.translation_scale_mm,
        initial_yaws=tuple(math.radians(y) for y in network.initial_view_yaws_degrees),
        coordinate_channels=network.coordinate_channels, spatial_pool=network.spatial_pool,
    ), network.normalization)


__all__ = ["SINGLE_IMAGE_BACKBONE", "build_network", "network_class", "per_view_faces"]
