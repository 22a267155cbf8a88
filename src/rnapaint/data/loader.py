"""DataLoader recipe for tile datasets, and a sampler that balances expression units."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class UnitSampler(Sampler[int]):
    """Draw a unit uniformly, then one of its tiles: units with many tiles do not dominate a batch.

    Parameters
    ----------
    obs_rows
        ``(n_items,)`` unit of each dataset item (``PairedTiles.obs_rows``).
    num_samples
        Items per epoch (default: as many as the dataset).
    seed
        Seed; the epoch number is mixed in (:meth:`set_epoch`) so epochs differ but repeat.
    """

    def __init__(self, obs_rows: np.ndarray, num_samples: int | None = None, seed: int = 0):
        self.obs_rows = np.asarray(obs_rows)
        self.units, inverse = np.unique(self.obs_rows, return_inverse=True)
        self.members = [np.flatnonzero(inverse == u) for u in range(len(self.units))]
        self.num_samples = num_samples or len(self.obs_rows)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        units = rng.integers(0, len(self.units), self.num_samples)
        for u in units:
            m = self.members[u]
            yield int(m[rng.integers(0, len(m))])


def tile_loader(
    dataset: Dataset,
    batch_size: int = 64,
    shuffle: bool = True,
    num_workers: int | None = None,
    seed: int = 0,
    drop_last: bool = True,
    sampler: Sampler | None = None,
    prefetch_factor: int = 4,
) -> DataLoader:
    """A DataLoader that keeps a GPU fed from a tile store.

    Worker processes decode tiles in parallel (default: all cores but one, at most 16), keep their
    zarr handles between epochs (``persistent_workers``), prefetch ``prefetch_factor`` batches each
    and pin memory when CUDA is available. Seeded: the same ``seed`` gives the same batches, and with
    worker processes the same augmentations (each worker's torch RNG derives from it); with
    ``num_workers=0`` augmentations follow torch's global seed (``torch.manual_seed``).

    ``drop_last=True`` (the default, so that every training batch is full) needs at least
    ``batch_size`` items per epoch (``len(sampler)`` when a sampler is given, else
    ``len(dataset)``); with fewer, the loader would yield no batch at all, so this raises instead:
    lower ``batch_size`` or pass ``drop_last=False``.

    Returns
    -------
    :class:`torch.utils.data.DataLoader`.

    Raises
    ------
    ValueError
        If ``batch_size < 1``, or ``drop_last`` is set and an epoch holds fewer than ``batch_size`` items.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if drop_last:
        src, what = (sampler, "the sampler draws") if sampler is not None else (dataset, "the dataset holds")
        try:
            n = len(src)
        except TypeError:  # an iterable without a length: nothing to check
            n = None
        if n is not None and n < batch_size:
            raise ValueError(
                f"{what} {n} items per epoch, fewer than batch_size={batch_size}: with drop_last=True the "
                "loader would yield no batch. Lower batch_size or pass drop_last=False."
            )
    if num_workers is None:
        num_workers = max(0, min(16, (os.cpu_count() or 1) - 1))
    gen = torch.Generator().manual_seed(seed)
    kwargs = {}
    if num_workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": prefetch_factor}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=gen,
        pin_memory=torch.cuda.is_available(),
        **kwargs,
    )
