"""Order-2 spherical-harmonics lighting with Deep3D's constants (spec section 1.8, docs/conventions.md).

27 coefficients per sample laid out (3 colours, 9 bands); 0.8 is added to each colour's DC coefficient so zeros
mean a plain white ambient light. SH is evaluated on head-frame normals, shared by the three views.
"""
from __future__ import annotations

import math

import torch

SH_BANDS = 9
SH_COEFFICIENTS = 3 * SH_BANDS
AMBIENT_OFFSET = 0.8

# Lambertian convolution factors a_l times SH normalisation c_l (Deep3D's constants).
_A0, _A1, _A2 = math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0)
_C0 = 1.0 / math.sqrt(4.0 * math.pi)
_C1 = math.sqrt(3.0) / math.sqrt(4.0 * math.pi)
_C2 = 3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Irradiance SH basis at unit normals.

    Args:
        normals: (..., 3) unit vectors in the head frame.
    Returns:
        (..., 9) basis values; irradiance = basis @ coefficients.
    """
    nx, ny, nz = normals.unbind(-1)
    return torch.stack([
        torch.full_like(nx, _A0 * _C0),
        -_A1 * _C1 * ny,
        _A1 * _C1 * nz,
        -_A1 * _C1 * nx,
        _A2 * _C2 * nx * ny,
        -_A2 * _C2 * ny * nz,
        _A2 * _C2 * 0.5 / math.sqrt(3.0) * (3.0 * nz * nz - 1.0),
        -_A2 * _C2 * nx * nz,
        _A2 * _C2 * 0.5 * (nx * nx - ny * ny),
    ], -1)


def sh_irradiance(normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Per-vertex RGB irradiance.

    Args:
        normals: (B, V, 3) unit head-frame normals.
        lighting: (B, 27) coefficients laid out (3 colours, 9 bands), before the +0.8 DC offset.
    Returns:
        (B, V, 3) irradiance; zero coefficients give a uniform 0.8 * pi * c0 = 0.709 on every channel.
    """
    if lighting.shape[-1] != SH_COEFFICIENTS:
        raise ValueError(f"lighting must have {SH_COEFFICIENTS} coefficients, got shape {tuple(lighting.shape)}")
    coefficients = lighting.reshape(-1, 3, SH_BANDS)
    offset = torch.zeros_like(coefficients)
    offset[:, :, 0] = AMBIENT_OFFSET
    coefficients = coefficients + offset
    return torch.einsum("bvk,bck->bvc", sh_basis(normals), coefficients)


def shade(albedo: torch.Tensor, normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Lambertian SH shading: colour = albedo * irradiance. (B,V,3), (B,V,3), (B,27) -> (B,V,3)."""
    return albedo * sh_irradiance(normals, lighting)


def directional_lighting(direction: torch.Tensor, ambient: float | torch.Tensor = 0.0,
                         strength: float | torch.Tensor = 0.5, colour: torch.Tensor | None = None) -> torch.Tensor:
    """SH coefficients (B, 27) approximating ambient light plus a distant light from ``direction``.

    A readable way to make lighting for figures and synthetic data. ``direction``: (B, 3) head-frame unit vectors
    pointing from the face towards the light. ``ambient`` (float or (B,)) adds to the DC term (on top of the +0.8
    offset); ``strength`` (float or (B,)) scales the linear (band-1) terms. ``colour``: (B, 3) per-channel gain,
    default white.
    """
    direction = torch.nn.functional.normalize(direction, dim=-1)
    B = direction.shape[0]
    strength = torch.as_tensor(strength, dtype=direction.dtype, device=direction.device).expand(B)
    bands = direction.new_zeros(B, SH_BANDS)
    bands[:, 0] = torch.as_tensor(ambient, dtype=direction.dtype, device=direction.device).expand(B)
    # Band-1 basis is (-y, z, -x) * a1 c1; coefficients along the light direction give max irradiance facing it.
    bands[:, 1] = -direction[:, 1] * strength
    bands[:, 2] = direction[:, 2] * strength
    bands[:, 3] = -direction[:, 0] * strength
    gain = torch.ones(B, 3, dtype=direction.dtype, device=direction.device) if colour is None else colour
    coefficients = gain.unsqueeze(-1) * bands.unsqueeze(1)
    # The +0.8 offset is added per channel later; scale it by the gain through the DC coefficient.
    coefficients[:, :, 0] = coefficients[:, :, 0] + (gain - 1.0) * AMBIENT_OFFSET
    return coefficients.reshape(B, SH_COEFFICIENTS)
