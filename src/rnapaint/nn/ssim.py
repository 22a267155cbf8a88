"""Structural similarity (Wang et al. 2004) of image batches, differentiable, for autoencoder losses.

torchmetrics has SSIM, but it is an optional extra of rnapaint and its image module can pull
torchvision, which cannot load beside the CPU torch build; the index itself is a few convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian(window: int, sigma: float, device, dtype) -> torch.Tensor:
    t = torch.arange(window, device=device, dtype=dtype) - (window - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Mean SSIM of each image pair, with an ``window``-tap Gaussian window over valid positions.

    Parameters
    ----------
    x, y
        ``(N, C, H, W)`` float images on the same scale (at least ``window`` px a side).
    data_range
        Value range of the images (1 for [0, 1], 2 for [−1, 1], 255 for uint8 values).
    window, sigma
        Gaussian window size and width in pixels (Wang et al.'s 11 and 1.5).

    Returns
    -------
    ``(N,)`` SSIM per image, averaged over channels and positions (1 for identical images).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"ssim needs two (N, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim's {window}-px window does not fit {x.shape[-2]} × {x.shape[-1]} images.")
    with torch.autocast(x.device.type, enabled=False):  # bf16 would cancel E[x²] − E[x]² to noise
        return _ssim(x.float(), y.float(), data_range, window, sigma)


def _ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int, sigma: float) -> torch.Tensor:
    c = x.shape[1]
    g = _gaussian(window, sigma, x.device, x.dtype)
    kh, kw = g.view(1, 1, window, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, window).repeat(c, 1, 1, 1)

    def blur(v: torch.Tensor) -> torch.Tensor:  # separable Gaussian, one kernel per channel
        return F.conv2d(F.conv2d(v, kh, groups=c), kw, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))
