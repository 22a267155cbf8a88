"""Augmentations the papers train with — flips, 90° rotations, colour jitter — in plain torch.

torchvision cannot be loaded beside the CPU build of torch used here, so these few operations are
written out. Two paths do the same transform: per tile in a loader worker (:meth:`TileAugment.__call__`,
:meth:`TileAugment.from_uint8`; torch's global RNG, which a DataLoader seeds per worker) and per batch
on the training device (:meth:`TileAugment.batch`; a seeded CPU generator), which leaves the workers
only the reading and sends uint8 across processes and to the GPU, a quarter of the bytes of float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

# RGB ↔ YIQ: a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float32)
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

    def __init__(
        self,
        flips: bool = True,
        rot90: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hue: float = 0.02,
    ):
        self.flips, self.rot90 = flips, rot90
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @classmethod
    def dihedral(cls) -> TileAugment:
        """Flips and 90° rotations only: what generators train with by default. Their tiles follow
        the training images' distribution, colour jitter included (augmentations leak into what a
        generator paints; Karras et al. 2020), and tissue has no orientation but a stain colour."""
        return cls(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)

    def __repr__(self) -> str:
        return (
            f"TileAugment(flips={self.flips}, rot90={self.rot90}, brightness={self.brightness}, "
            f"contrast={self.contrast}, saturation={self.saturation}, hue={self.hue})"
        )

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
        chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, s * cos, -s * sin], [0.0, s * sin, s * cos]], dtype=torch.float32)
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

    def batch(
        self,
        tiles: torch.Tensor,
        generator: torch.Generator | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor:
        """Augment a batch of uint8 tiles on their own device (e.g. the GPU).

        Parameters
        ----------
        tiles
            ``(B, H, W, 3)`` uint8 (as :class:`~rnapaint.data.PairedTiles` gives them with
            ``augment_on="device"``), on any device.
        generator
            CPU generator for the random choices (a seed then gives the same batch on any device);
            default torch's global generator.
        value_range
            Pixel range of the output.

        Returns
        -------
        ``(B, 3, H, W)`` float32 in ``value_range``, channels-first: the same transforms as
        :meth:`__call__` (flips, 90° rotations, one colour matrix per tile), drawn per tile. Always
        float32, also inside an autocast region (a training step under bf16-mixed precision).
        """
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != torch.uint8:
            raise ValueError(f"batch() takes uint8 tiles (B, H, W, 3), got {tiles.dtype} {tuple(tiles.shape)}.")
        # Training steps run under autocast: the colour matmuls would come out in bf16 (±3 grey
        # levels, and bf16 images downstream), so the augmentation opts out.
        with torch.autocast(tiles.device.type, enabled=False):
            return self._batch(tiles, generator, value_range)

    def _batch(
        self, tiles: torch.Tensor, generator: torch.Generator | None, value_range: tuple[float, float]
    ) -> torch.Tensor:
        n, hgt, wid = tiles.shape[:3]
        f32 = torch.float32  # explicit: under bf16-true precision Lightning makes bf16 the default dtype
        flip_w = torch.rand(n, generator=generator, dtype=f32) < 0.5 if self.flips else torch.zeros(n, dtype=torch.bool)
        flip_h = torch.rand(n, generator=generator, dtype=f32) < 0.5 if self.flips else torch.zeros(n, dtype=torch.bool)
        k = torch.randint(0, 4, (n,), generator=generator) if self.rot90 else torch.zeros(n, dtype=torch.long)
        if self.rot90 and hgt != wid:
            raise ValueError(f"90° rotations need square tiles, got {hgt}×{wid}.")
        code = flip_w.long() * 8 + flip_h.long() * 4 + k
        out = _dihedral(tiles, code, grouped=tiles.is_cuda)
        if self._jitters:
            m, offset_scale = colour_parameters(self, n, generator)
            out = apply_colour(out, m, offset_scale).clamp_(0.0, 1.0)
        lo, hi = value_range
        if (lo, hi) != (0.0, 1.0):
            out = out.mul_(hi - lo).add_(lo)
        return out.contiguous()


def _dihedral(tiles: torch.Tensor, code: torch.Tensor, grouped: bool) -> torch.Tensor:
    """Flip/rotate each uint8 tile ``(n, H, W, 3)`` by its ``code`` → float ``(n, 3, H, W)`` in [0, 1].

    ``code = 8·flip_w + 4·flip_h + k`` (k quarter turns). ``grouped=True`` transforms all tiles
    with the same code at once (at most 16 groups: a few dozen kernels a batch on a GPU, where
    per-tile launches would dominate); otherwise a loop of per-tile views and one copy each (faster
    on a CPU). Both give identical results.
    """
    n, hgt, wid = tiles.shape[:3]
    out = torch.empty((n, 3, hgt, wid), dtype=torch.float32, device=tiles.device)
    if grouped:
        for c in torch.unique(code).tolist():
            rows = torch.nonzero(code == c).flatten().to(tiles.device)
            y = tiles.index_select(0, rows)
            y = y.flip(2) if c & 8 else y
            y = y.flip(1) if c & 4 else y
            y = torch.rot90(y, c & 3, dims=(1, 2)) if c & 3 else y
            out.index_copy_(0, rows, y.permute(0, 3, 1, 2).float())
        return out.div_(255.0)
    for i, c in enumerate(code.tolist()):
        y = tiles[i].flip(1) if c & 8 else tiles[i]
        y = y.flip(0) if c & 4 else y
        out[i].copy_((torch.rot90(y, c & 3, dims=(0, 1)) if c & 3 else y).permute(2, 0, 1))
    return out.div_(255.0)


def colour_parameters(
    augment: TileAugment, n: int, generator: torch.Generator | None = None, jitter_prob: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random colour jitter of ``n`` tiles as one affine map each (see :meth:`TileAugment._colour`).

    Parameters
    ----------
    jitter_prob
        Probability that a tile is jittered (the others get the identity map); ``None``: all are.

    Returns
    -------
    ``m`` ``(n, 3, 3)`` float32 RGB matrices and ``offset_scale`` ``(n,)`` = ``(1 − c) · b``, the
    weight of each tile's mean luminance in its offset (contrast pulls toward that mean). Always
    float32, whatever the default dtype (Lightning's ``bf16-true`` precision sets it to bf16), so the
    same seed draws the same parameters at every precision.
    """
    a = augment
    f32 = torch.float32

    def u(v: float) -> torch.Tensor:
        return 1.0 + (2.0 * torch.rand(n, generator=generator, dtype=f32) - 1.0) * v

    b, c, s = u(a.brightness), u(a.contrast), u(a.saturation)
    theta = (2.0 * torch.rand(n, generator=generator, dtype=f32) - 1.0) * a.hue * 2.0 * math.pi
    if jitter_prob is not None:
        keep = torch.rand(n, generator=generator, dtype=f32) >= jitter_prob
        b, c, s = (torch.where(keep, torch.ones_like(v), v) for v in (b, c, s))
        theta = torch.where(keep, torch.zeros_like(theta), theta)
    cos, sin = torch.cos(theta), torch.sin(theta)
    one, zero = torch.ones(n, dtype=f32), torch.zeros(n, dtype=f32)
    chroma = torch.stack(
        [
            torch.stack([one, zero, zero], 1),
            torch.stack([zero, s * cos, -s * sin], 1),
            torch.stack([zero, s * sin, s * cos], 1),
        ],
        1,
    )
    m = (_YIQ2RGB @ chroma @ _RGB2YIQ) * (b * c)[:, None, None]
    return m, (1.0 - c) * b


def apply_colour(x: torch.Tensor, m: torch.Tensor, offset_scale: torch.Tensor) -> torch.Tensor:
    """Apply per-tile colour maps from :func:`colour_parameters` to ``x`` ``(n, 3, H, W)`` float (not clipped)."""
    dev, dt = x.device, x.dtype
    n, ch, hgt, wid = x.shape
    flat = x.reshape(n, ch, hgt * wid)
    luma = flat.mean(-1) @ _RGB2YIQ[0].to(dev, dt)
    out = torch.baddbmm((offset_scale.to(dev, dt) * luma)[:, None, None], m.to(dev, dt), flat)
    return out.reshape(n, ch, hgt, wid)


def generator_augment(augment: Any) -> TileAugment | bool | None:
    """A generator's ``augment=`` argument → what :class:`~rnapaint.data.PairedTiles` takes.

    ``"dihedral"`` (flips and 90° rotations: :meth:`TileAugment.dihedral`), ``True`` (the full
    :class:`TileAugment`, colour jitter included), ``False``/``None`` (none) or a ``TileAugment``.
    """
    if isinstance(augment, TileAugment) or augment is True or augment is False or augment is None:
        return augment
    if augment == "dihedral":
        return TileAugment.dihedral()
    raise ValueError(f"augment must be 'dihedral', True, False or a TileAugment, got {augment!r}.")
