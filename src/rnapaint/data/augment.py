"""Augmentations the papers train with — flips, 90° rotations, colour jitter — in plain torch.

torchvision cannot be loaded beside the CPU build of torch used here, so these few operations are
written out; each works on one ``(3, H, W)`` float tensor in [0, 1] and draws from torch's global
RNG, which a DataLoader seeds per worker (so runs with a seeded loader repeat exactly).
"""

from __future__ import annotations

import numpy as np
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

    def _colour(self, img: torch.Tensor) -> torch.Tensor:
        # Brightness, contrast, saturation and hue are all affine in RGB: fold them into one 3×3
        # matrix and an offset, so a tile is touched once (≈ 10× faster than applying each in turn).
        b = self._factor(self.brightness) if self.brightness else 1.0
        c = self._factor(self.contrast) if self.contrast else 1.0
        s = self._factor(self.saturation) if self.saturation else 1.0
        theta = (2.0 * torch.rand(()).item() - 1.0) * self.hue * 2.0 * torch.pi if self.hue else 0.0
        cos, sin = float(torch.cos(torch.tensor(theta))), float(torch.sin(torch.tensor(theta)))
        chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, s * cos, -s * sin], [0.0, s * sin, s * cos]])
        m = (_YIQ2RGB @ chroma @ _RGB2YIQ) * (b * c)
        # Contrast pulls toward the mean luminance (of the brightened tile); white stays white under
        # the chroma transform, so the offset is the same on all three channels.
        offset = (1.0 - c) * b * float((_RGB2YIQ[0] @ img.reshape(3, -1)).mean()) if c != 1.0 else 0.0
        out = (m.to(img.dtype) @ img.reshape(3, -1)).reshape(img.shape)
        return out.add_(offset) if offset else out

    def _dihedral(self) -> tuple[bool, bool, int]:
        flip_w = bool(self.flips and torch.rand(()) < 0.5)
        flip_h = bool(self.flips and torch.rand(()) < 0.5)
        k = int(torch.randint(0, 4, ()).item()) if self.rot90 else 0
        return flip_w, flip_h, k

    @property
    def _jitters(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Augment one tile ``(3, H, W)`` float in [0, 1]; returns the same shape, clipped to [0, 1]."""
        flip_w, flip_h, k = self._dihedral()
        if flip_w:
            img = img.flip(-1)
        if flip_h:
            img = img.flip(-2)
        if k:
            img = torch.rot90(img, k, dims=(-2, -1))
        if self._jitters:
            img = self._colour(img.contiguous())
        return img.clamp(0.0, 1.0).contiguous()

    def from_uint8(self, tile: np.ndarray) -> torch.Tensor:
        """Augment a ``(H, W, 3)`` uint8 tile into a ``(3, H, W)`` float tensor in [0, 1].

        The same transform as :meth:`__call__`, ordered for speed: flips and rotations are numpy
        views of the uint8 tile, then a single copy converts it, then one colour matrix is applied.
        """
        flip_w, flip_h, k = self._dihedral()
        if flip_w:
            tile = tile[:, ::-1]
        if flip_h:
            tile = tile[::-1]
        if k:
            tile = np.rot90(tile, k, axes=(0, 1))
        img = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))).float().div_(255.0)
        if self._jitters:
            img = self._colour(img).clamp_(0.0, 1.0)
        return img
