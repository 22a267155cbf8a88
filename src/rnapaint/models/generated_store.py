"""Streaming generated tiles into a TileStore batch by batch, moved into place once at the end."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..io.model_files import check_folder_name
from ..io.tile_store import TileStore, check_replaceable, move_into_place, staging_path
from ..io.writer_lock import StoreBusyError

#: What ``generate(..., sink=)`` calls per batch: ``(unit_index (m,), draw_index (m,), tiles (m, H, W, 3))``.
Sink = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


class GeneratedTileWriter:
    """A ``sink`` for a generator's ``generate``: appends each batch of tiles to a new TileStore.

    Rows carry ``unit`` = the observation's name and ``x`` = the draw index. The store is built in a
    hidden folder beside ``store`` and moved into place by :meth:`commit`; :meth:`abort` removes it.
    So a failed or killed run leaves no store at ``store`` (and an existing one untouched, even
    with ``overwrite=True``), and memory holds one batch at a time (a million 256-px tiles do not
    fit in RAM).

    With ``overwrite=True`` the existing store is renamed to a hidden ``.<name>.old`` beside it, the
    new one is moved in, and only then is the old one deleted. A kill between the two renames
    leaves the old store in ``.<name>.old``: the next writer for that path (or commit) puts it back.
    Partial folders left by killed processes (``.<name>.partial-<host>-<pid>`` of a pid no longer alive on
    this machine) are removed then too.

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
        Replace an existing store at :meth:`commit` (otherwise a FileExistsError, raised at once).
        Only a tile store (or an empty folder) is replaced: anything else at ``store`` raises.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        tile_size: int,
        units: Sequence[str],
        source: str = "generated",
        overwrite: bool = False,
    ):
        self.path = check_folder_name(store, "generated tiles")
        check_replaceable(self.path, overwrite)  # also finishes a replacement that was killed
        self.overwrite = overwrite
        self.tmp = staging_path(self.path)
        self.store = TileStore.create(self.tmp, tile_size, overwrite=True)
        self.units = np.asarray(units)
        self.source = source
        self.n_written = 0

    def __call__(self, unit_index: np.ndarray, draw_index: np.ndarray, tiles: np.ndarray) -> None:
        """Append ``tiles`` ``(m, H, W, 3)`` uint8 for units ``unit_index`` ``(m,)``, draws ``draw_index`` ``(m,)``."""
        table = pd.DataFrame(
            {"unit": self.units[unit_index], "slide": self.source, "x": draw_index, "y": 0, "mpp": math.nan}
        )
        self.store.append(tiles, table, commit=False)
        self.n_written += len(tiles)

    def commit(self) -> TileStore:
        """Commit every appended tile and move the store to its path; returns it, opened read-only."""
        ts = self.store.tile_size
        self.store.append(
            np.empty((0, ts, ts, 3), np.uint8),
            pd.DataFrame(columns=["unit", "slide", "x", "y", "mpp"]),
            slide_done=self.source,
        )
        self.store.close()
        try:
            move_into_place(self.tmp, self.path, self.overwrite)
        except (FileExistsError, StoreBusyError):  # something appeared at the path while generating
            self.abort()
            raise
        return TileStore.open(self.path)

    def abort(self) -> None:
        """Remove the partial store (after a failed generation)."""
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
