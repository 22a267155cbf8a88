"""Random tissue crops from any set of H&E images, for learning appearance from all tissue there is."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .._logging import logger
from ..pp.tiling import background_fraction, contrast
from .image_sources import ImageSource, glass_thresholds, image_sources, tissue_corners

_TRIES = 16  # crops drawn before one passes the glass test


class TileCrops(Dataset):
    """Seeded random crops of tissue at one µm/px from whole-slide images, image files, spatial AnnData
    and TileStores — off-spot tissue included: every square of tissue can be drawn.

    Crop ``i`` is a function of ``(seed, i)`` alone, so a loader gives the same crops with any
    number of workers. A crop is centred near a square the tiler's glass test passes on the
    thumbnail, and is drawn again (up to 16 times) while it holds more than ``max_background``
    glass or less grey-level contrast than ``min_contrast``.

    Parameters
    ----------
    sources
        What :func:`~rnapaint.data.image_sources.image_sources` takes: paths (image files, slides,
        TileStores), arrays, spatial AnnData, or a list of them.
    size
        Crop side in pixels.
    mpp
        µm/px of the crops; each source is resampled to it.
    source_mpp
        µm/px of sources that do not record it (plain images, arrays).
    max_background, min_contrast
        The tiler's filters (:func:`rnapaint.pp.tile_slides`): largest glass fraction, smallest
        grey-level standard deviation.
    flips, rot90
        Random mirror and 90° rotations of each crop.
    weights
        Relative probability of drawing from each source; default: its tissue area.
    n_crops
        Length of one epoch (crops ``0 … n_crops − 1``).
    seed
        Seeds every crop.

    Examples
    --------
    >>> crops = rp.data.TileCrops([spots, "slide.svs"], size=128, mpp=1.2)
    >>> crops[0].shape                                  # (128, 128, 3) uint8
    """

    def __init__(
        self,
        sources: Any,
        size: int = 128,
        mpp: float = 1.0,
        *,
        source_mpp: float | None = None,
        max_background: float = 0.5,
        min_contrast: float = 8.0,
        flips: bool = True,
        rot90: bool = True,
        weights: Sequence[float] | None = None,
        n_crops: int = 100_000,
        seed: int = 0,
    ):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            raise ValueError(f"size must be an integer of at least 8 px, got {size!r}.")
        if not np.isfinite(mpp) or mpp <= 0:
            raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp!r}.")
        if not 0.0 <= max_background <= 1.0:
            raise ValueError(f"max_background is a fraction and must lie in [0, 1], got {max_background!r}.")
        if int(n_crops) < 1:
            raise ValueError(f"n_crops must be ≥ 1, got {n_crops!r}.")
        self.size, self.mpp, self.seed, self.n_crops = int(size), float(mpp), int(seed), int(n_crops)
        self.max_background, self.min_contrast, self.flips, self.rot90 = max_background, min_contrast, flips, rot90
        found = image_sources(sources, source_mpp, target_mpp=self.mpp)
        if not found:
            raise ValueError("no image to crop from.")
        self.sources: list[ImageSource] = [s.coarsened(self.mpp) if hasattr(s, "coarsened") else s for s in found]
        self._corners = [tissue_corners(s, self._side(s), max_background) for s in self.sources]
        self._glass = [glass_thresholds(s.thumbnail()[0]) for s in self.sources]
        empty = [s.name for s, c in zip(self.sources, self._corners, strict=True) if len(c) == 0]
        if len(empty) == len(self.sources):
            raise ValueError(
                f"no tissue found in {', '.join(empty[:3])}{' …' if len(empty) > 3 else ''}: every "
                f"{self.size}-px square is more than {max_background:.0%} glass. Check the images, or raise "
                "max_background."
            )
        if empty:
            logger.warning(f"TileCrops: no tissue in {len(empty)} of {len(self.sources)} images; they are skipped.")
        area = np.array([len(c) for c in self._corners], float)
        w = area if weights is None else np.asarray(weights, float)
        if w.shape == area.shape:
            w = w * (area > 0)  # an image without tissue is never drawn
        if w.shape != area.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {len(area)} non-negative numbers, not all 0 on images with tissue.")
        self._p = w / w.sum()

    def _side(self, source: ImageSource) -> float:
        return self.size * self.mpp / source.mpp

    def __len__(self) -> int:
        return self.n_crops

    def __repr__(self) -> str:
        return (
            f"TileCrops({len(self.sources)} images, {self.size}-px crops at {self.mpp:.3g} µm/px, "
            f"{self.n_crops} an epoch, seed {self.seed})"
        )

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray | None, tuple[int, float, float]]:
        k = int(rng.choice(len(self.sources), p=self._p))
        src, corners, side = self.sources[k], self._corners[k], self._side(self.sources[k])
        x, y = corners[rng.integers(len(corners))]
        step = side / 2  # the grid's pitch: jitter fills the space between corners
        x = float(np.clip(x + rng.uniform(-step, step), 0, src.width - side))
        y = float(np.clip(y + rng.uniform(-step, step), 0, src.height - side))
        crop = src.region(x, y, side, self.size)
        grey, sat = self._glass[k]
        ok = background_fraction(crop, grey, sat) <= self.max_background and contrast(crop) >= self.min_contrast
        return (crop if ok else None), (k, x, y)

    def _sample(self, i: int) -> tuple[np.ndarray, tuple[int, float, float]]:
        rng = np.random.default_rng([self.seed, int(i)])
        for _ in range(_TRIES):
            crop, where = self._draw(rng)
            if crop is not None:
                break
        if crop is None:  # rare: tissue at the thumbnail's scale, glass or blank at the crop's
            k = int(np.argmax(self._p))
            where = (k, *self._corners[k][0])
            crop = self.sources[k].region(where[1], where[2], self._side(self.sources[k]), self.size)
        if self.flips and rng.random() < 0.5:
            crop = crop[:, ::-1]
        if self.rot90:
            crop = np.rot90(crop, int(rng.integers(4)))
        return np.ascontiguousarray(crop), where

    def __getitem__(self, i: int) -> np.ndarray:
        """Crop ``i``: ``(size, size, 3)`` uint8."""
        return self._sample(i)[0]

    def locate(self, i: int) -> tuple[str, float, float, float]:
        """Where crop ``i`` comes from: ``(source name, x, y, side)``, its top-left corner and side in that
        source's pixels (see :attr:`sources` for each one's µm/px)."""
        k, x, y = self._sample(i)[1]
        return self.sources[k].name, x, y, self._side(self.sources[k])

    def take(self, n: int, start: int = 0) -> np.ndarray:
        """Crops ``start … start + n − 1`` as ``(n, size, size, 3)`` uint8."""
        return np.stack([self[i] for i in range(start, start + n)])


class EpochRange(Sampler[int]):
    """Indices ``e·n … (e+1)·n − 1`` in epoch ``e``: every epoch draws new crops, repeatably.

    Lightning calls :meth:`set_epoch` before each epoch, as it does for a DistributedSampler.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.epoch, self.rank, self.world_size = int(n), 0, int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        base = self.epoch * self.n
        return iter(range(base + self.rank, base + self.n, self.world_size))


def _collate(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8


def crop_loader(
    crops: TileCrops, batch_size: int = 16, num_workers: int = 0, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """A loader of uint8 crop batches ``(B, 3, size, size)``, new crops every epoch.

    Parameters
    ----------
    crops
        The crops.
    batch_size
        Crops a batch.
    num_workers
        Worker processes cutting crops (forked: sources are shared, slides reopened in each).
    rank, world_size
        For data-parallel training: each rank takes every ``world_size``-th crop.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
    return DataLoader(
        crops,
        batch_size=batch_size,
        sampler=EpochRange(len(crops), rank, world_size),
        num_workers=num_workers,
        collate_fn=_collate,
        drop_last=True,
        persistent_workers=num_workers > 0,
    )
