"""Augmentations the papers train with — flips, 90° rotations, colour jitter — in plain torch.

torchvision cannot be loaded beside the CPU build of torch used here, so these few operations are
written out; each works on one ``(3, H, W)`` float tensor in [0, 1] and draws from torch's global
RNG, which a DataLoader seeds per worker (so runs with a seeded loader repeat exactly).
"""

from __future__ import annotations

import torch

# RGB ↔ YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


class TileAugment:
    """Random dihedral transform (flips + 90° rotations) and colour jitter.

    Parameters
    ----------
    flips
        Random horizontal and vertical flips.
    rot90
        Random multiple of 90° rotation (with flips: all 8 symmetries of the square; tissue has no
        preferred orientation).
    brightness, contrast, saturation
        Maximum relative change (factor drawn from ``[1 - v, 1 + v]``).
    hue
        Maximum hue rotation as a fraction of a full turn (H&E stain varies between labs).
    """

    def __init__(self, flips: bool = True, rot90: bool = True, brightness: float = 0.1, contrast: float = 0.1,
                 saturation: float = 0.1, hue: float = 0.02):
        self.flips, self.rot90 = flips, rot90
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __repr__(self) -> str:
        return (f"TileAugment(flips={self.flips}, rot90={self.rot90}, brightness={self.brightness}, "
                f"contrast={self.contrast}, saturation={self.saturation}, hue={self.hue})")

    @staticmethod
    def _factor(v: float) -> float:
        return 1.0 + (2.0 * torch.rand(()).item() - 1.0) * v

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Augment one tile ``(3, H, W)`` float in [0, 1]; returns the same shape, clipped to [0, 1]."""
        if self.flips:
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
            if torch.rand(()) < 0.5:
                img = img.flip(-2)
        if self.rot90:
            k = int(torch.randint(0, 4, ()).item())
            if k:
                img = torch.rot90(img, k, dims=(-2, -1))
        if self.brightness:
            img = img * self._factor(self.brightness)
        if self.contrast:
            mean = (img * _RGB2YIQ[0].view(3, 1, 1)).sum(0).mean()
            img = (img - mean) * self._factor(self.contrast) + mean
        if self.saturation or self.hue:
            yiq = torch.einsum("ij,jhw->ihw", _RGB2YIQ.to(img.dtype), img)
            s = self._factor(self.saturation) if self.saturation else 1.0
            theta = (2.0 * torch.rand(()).item() - 1.0) * self.hue * 2.0 * torch.pi if self.hue else 0.0
            c, sn = torch.cos(torch.tensor(theta)), torch.sin(torch.tensor(theta))
            i, q = yiq[1], yiq[2]
            yiq = torch.stack([yiq[0], s * (c * i - sn * q), s * (sn * i + c * q)])
            img = torch.einsum("ij,jhw->ihw", _YIQ2RGB.to(img.dtype), yiq)
        return img.clamp(0.0, 1.0).contiguous()
