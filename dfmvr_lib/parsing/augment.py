"""Batch augmentation for parser pretraining (torch, deterministic given a ``torch.Generator``).

Horizontal flip (with the left/right classes swapped: image-left brow/eye become image-right, docs/conventions.md),
small random affine (rotation, scale, translation; bilinear for images, nearest for labels, border padding),
colour jitter (brightness, contrast, saturation, hue), Gaussian blur and pixel noise.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FLIP_CLASSES = torch.tensor([0, 1, 3, 2, 5, 4, 6, 7, 8, 9])
"""Class of each class after a horizontal flip (2 <-> 3 brows, 4 <-> 5 eyes)."""


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def flip_batch(images: torch.Tensor, labels: torch.Tensor, flip: torch.Tensor):
    """Flip the images (N, 3, H, W) and labels (N, H, W) where ``flip`` (N,) bool, swapping left/right classes."""
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    flipped = FLIP_CLASSES.to(labels.device)[labels.flip(-1)]
    labels = torch.where(flip[:, None, None], flipped, labels)
    return images, labels


def _rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x)


def _yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]], dtype=x.dtype)
    return torch.einsum("ij,njhw->nihw", m, x)


def colour_jitter(images: torch.Tensor, generator: torch.Generator, brightness: float = 0.3, contrast: float = 0.3,
                  saturation: float = 0.4, hue: float = 0.05, group_size: int = 1) -> torch.Tensor:
    """Brightness / contrast / saturation factors in 1 +- the setting, hue rotation +- ``hue`` turns.

    Args:
        images: (N, 3, H, W) in [0, 1].
        group_size: consecutive images that share one draw of the factors (3 = the views of one multi-view sample
            get the identical colour change); N must be a multiple of it.
    """
    if images.shape[0] % group_size:
        raise ValueError(f"colour_jitter: {images.shape[0]} images is not a multiple of group_size={group_size}")
    groups = images.shape[0] // group_size

    def draw(low: float, high: float) -> torch.Tensor:
        return _uniform(groups, low, high, generator).repeat_interleave(group_size)

    n = images.shape[0]
    b = draw(1 - brightness, 1 + brightness).view(n, 1, 1, 1)
    c = draw(1 - contrast, 1 + contrast).view(n, 1, 1, 1)
    s = draw(1 - saturation, 1 + saturation).view(n, 1, 1, 1)
    h = draw(-hue, hue) * 2 * math.pi
    x = images * b
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = grey.mean(dim=(2, 3), keepdim=True) + c * (x - grey.mean(dim=(2, 3), keepdim=True))
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = grey + s * (x - grey)
    yiq = _rgb_to_yiq(x)
    cos, sin = torch.cos(h).view(n, 1, 1), torch.sin(h).view(n, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return _yiq_to_rgb(yiq).clamp(0.0, 1.0)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Blur each image with its own sigma (N,) in pixels (separable, reflect padding; sigma 0 = unchanged)."""
    n, c, h, w = images.shape
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)                       # (N*C, K)
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return x.view(n, c, h, w)


def random_affine(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                  degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), translate: float = 0.06):
    """Rotate (+-``degrees``), scale and translate (fraction of the size) each image and its labels."""
    n = images.shape[0]
    angle = _uniform(n, -degrees, degrees, generator) * math.pi / 180
    factor = _uniform(n, scale[0], scale[1], generator)
    shift = _uniform(2 * n, -translate, translate, generator).view(n, 2) * 2
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    labels = F.grid_sample(labels[:, None].to(images.dtype), grid, mode="nearest", padding_mode="border",
                           align_corners=False)[:, 0].round().long()
    return images, labels


def augment_batch(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """All augmentations on a batch: images (N, 3, H, W) in [0, 1], labels (N, H, W) -> augmented copies."""
    n = images.shape[0]
    images, labels = flip_batch(images, labels, torch.rand(n, generator=generator) < 0.5)
    images, labels = random_affine(images, labels, generator)
    images = colour_jitter(images, generator)
    blur = torch.rand(n, generator=generator) < 0.5
    sigma = _uniform(n, 0.3, 1.2, generator)
    images = torch.where(blur[:, None, None, None], gaussian_blur(images, sigma), images)
    noise = _uniform(n, 0.0, 0.03, generator).view(n, 1, 1, 1)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images.clamp(0.0, 1.0), labels


__all__ = ["FLIP_CLASSES", "augment_batch", "colour_jitter", "flip_batch", "gaussian_blur", "random_affine"]
