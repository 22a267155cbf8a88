"""Streaming generated tiles into a TileStore batch by batch, committed once at the end."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..io.tile_store import TileStore

#: What ``generate(..., sink=)`` calls per batch: ``(unit_index (m,), draw_index (m,), tiles (m, H, W, 3))``.
Sink = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


class GeneratedTileWriter:
    """A ``sink`` for a generator's ``generate``: appends each batch of tiles to a new TileStore.

    Rows carry ``unit`` = the observation's name and ``x`` = the draw index. Nothing is visible
    until :meth:`commit`: a killed run leaves an empty store, never a partial one, and memory holds
    one batch at a time (a million 256-px tiles do not fit in RAM).

    Parameters
    ----------
    store
        Path of the new store.
    tile_size
        Edge of the tiles in pixels.
    units
        ``(n_obs,)`` names of the observations, indexed by the ``unit_index`` the sink receives.
    source
        Written into the ``slide`` column (a TileStore's provenance field).
    overwrite
        Replace an existing store (otherwise a FileExistsError).
    """

    def __init__(self, store: str | os.PathLike, tile_size: int, units: Sequence[str], source: str = "generated",
                 overwrite: bool = False):
        self.store = TileStore.create(store, tile_size, overwrite=overwrite)
        self.units = np.asarray(units)
        self.source = source
        self.n_written = 0

    def __call__(self, unit_index: np.ndarray, draw_index: np.ndarray, tiles: np.ndarray) -> None:
        """Append ``tiles`` ``(m, H, W, 3)`` uint8 for units ``unit_index`` ``(m,)``, draws ``draw_index`` ``(m,)``."""
        table = pd.DataFrame({"unit": self.units[unit_index], "slide": self.source, "x": draw_index, "y": 0,
                              "mpp": math.nan})
        self.store.append(tiles, table, commit=False)
        self.n_written += len(tiles)

    def commit(self) -> TileStore:
        """Make every appended tile visible at once; returns the store."""
        self.store.append(np.empty((0, self.store.tile_size, self.store.tile_size, 3), np.uint8),
                          pd.DataFrame(columns=["unit", "slide", "x", "y", "mpp"]), slide_done=self.source)
        return self.store


def tiles_to_store(tiles: np.ndarray, units, store: str | os.PathLike, source: str = "generated",
                   overwrite: bool = False) -> TileStore:
    """Write generated tiles ``(n, k, H, W, 3)`` to a new TileStore, unit = obs name, x = draw index.

    The rows are committed once, at the end: a killed run leaves an empty store, never a partial one.
    """
    n, k = tiles.shape[:2]
    writer = GeneratedTileWriter(store, tiles.shape[2], units, source=source, overwrite=overwrite)
    step = max(1, 4096 // k)
    for i in range(0, n, step):
        j = min(n, i + step)
        writer(np.repeat(np.arange(i, j), k), np.tile(np.arange(k), j - i), tiles[i:j].reshape(-1, *tiles.shape[2:]))
    return writer.commit()
