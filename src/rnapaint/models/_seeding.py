"""Per-tile random streams: a generated tile's noise depends on the seed and its position only."""

from __future__ import annotations

import numpy as np
import torch


def tile_generators(seed: int, positions: np.ndarray) -> list[torch.Generator]:
    """One CPU generator per tile, seeded from ``(seed, position)``.

    ``position`` is the tile's index in unit-major order (``unit * n_per_obs + draw``), so the same
    seed gives the same tile for the same unit position and draw whatever the batch size.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}.")
    # SeedSequence mixes (seed, position) into well-separated 63-bit seeds (nearby integers would not be).
    words = (np.random.SeedSequence([int(seed), int(p)]).generate_state(1, np.uint64)[0] for p in positions)
    return [torch.Generator().manual_seed(int(w >> np.uint64(1))) for w in words]


def randn_per_tile(gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """``(len(gens), *shape)`` standard normal noise, row ``i`` from ``gens[i]`` (on the CPU)."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


def rand_per_tile(gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """``(len(gens), *shape)`` uniform [0, 1) noise, row ``i`` from ``gens[i]`` (on the CPU)."""
    return torch.stack([torch.rand(shape, generator=g) for g in gens])
