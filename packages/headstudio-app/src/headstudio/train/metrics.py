"""Image metrics: SSIM (differentiable, the photometric loss) and PSNR (the demo's quality bar)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ssim", "psnr"]


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(like)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity of two image batches (Wang et al. 2004), differentiable.

    Gaussian window ``window_size`` (σ ``sigma``), valid convolution (no padding),
    ``C1 = (0.01·R)²``, ``C2 = (0.03·R)²``; for images smaller than the window the window shrinks
    to the image.

    Args:
        x, y: ``[B, C, H, W]`` images with values in ``[0, data_range]``.

    Returns:
        Scalar mean SSIM over batch, channels and positions (1 for identical images).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"ssim: x and y must both be [B, C, H, W], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    size = min(window_size, x.shape[-1], x.shape[-2])
    ch = x.shape[1]
    w = _gaussian_window(size, sigma, ch, x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=ch)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements of ``x`` and ``y`` (same shape)."""
    mse = float(F.mse_loss(x.float(), y.float()))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
