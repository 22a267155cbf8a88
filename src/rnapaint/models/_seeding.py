"""Per-tile random streams: a generated tile's noise depends on the seed, its unit's name and its draw."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch


def unit_keys(adata: Any, n: int) -> np.ndarray:
    """``(n,)`` integer key of each unit for seeding: a hash of its obs name, or its row.

    Named units (an AnnData with unique obs names) get the same noise wherever they sit, so painting
    ``adata[:10]`` gives the tiles the whole ``adata`` gives its first ten units, and a profile
    edited under its own name (e.g. enriched with an immune signal) is painted from the same noise.
    Without unique names (a bare array, duplicated names) the row decides.
    """
    names = getattr(adata, "obs_names", None)
    if names is None or not names.is_unique:
        return np.arange(n, dtype=np.uint64) << np.uint64(1)  # even: rows
    return np.array(
        [(int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8).digest(), "little") | 1) for u in names],
        dtype=np.uint64,
    )  # odd: names, never equal to a row key


def tile_generators(seed: int, keys: np.ndarray, draws: np.ndarray) -> list[torch.Generator]:
    """One CPU generator per tile, seeded from ``(seed, unit key, draw)``.

    ``keys`` ``(k,)`` from :func:`unit_keys` (one per tile) and ``draws`` ``(k,)`` the draw index
    of each tile within its unit: the same seed gives the same tile whatever the batch size.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}.")
    # SeedSequence mixes the words into well-separated 63-bit seeds (nearby integers would not be).
    words = (
        np.random.SeedSequence([int(seed), int(k), int(d)]).generate_state(1, np.uint64)[0]
        for k, d in zip(keys, draws, strict=True)
    )
    return [torch.Generator().manual_seed(int(w >> np.uint64(1))) for w in words]


def randn_per_tile(gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """``(len(gens), *shape)`` standard normal noise, row ``i`` from ``gens[i]`` (on the CPU)."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


def rand_per_tile(gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """``(len(gens), *shape)`` uniform [0, 1) noise, row ``i`` from ``gens[i]`` (on the CPU)."""
    return torch.stack([torch.rand(shape, generator=g) for g in gens])
