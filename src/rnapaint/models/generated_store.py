"""Streaming generated tiles into a TileStore batch by batch, moved into place once at the end."""

from __future__ import annotations

import glob
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.tile_store import COMMIT, TileStore
from ..io.writer_lock import check_no_writer

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
    Partial folders left by killed processes (``.<name>.partial-<pid>`` of a pid no longer alive on
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
        self.path = Path(store)
        _recover(self.path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it.")
        _check_replaceable(self.path)
        self.overwrite = overwrite
        self.tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
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
        _recover(self.path)
        old = _old_path(self.path)
        if self.path.exists():
            if not self.overwrite:  # appeared while generating
                self.abort()
                raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it.")
            try:
                _check_replaceable(self.path)
            except FileExistsError:
                self.abort()
                raise
            # Never delete before the new store is in place: a kill in between would destroy both.
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)
        return TileStore.open(self.path)

    def abort(self) -> None:
        """Remove the partial store (after a failed generation)."""
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _check_replaceable(path: Path) -> None:
    """``overwrite=True`` replaces a tile store, never a folder or file that is something else."""
    if path.exists() and not (path.is_dir() and ((path / COMMIT).is_file() or not any(path.iterdir()))):
        raise FileExistsError(
            f"{path} exists and is not a rnapaint TileStore: it is not replaced, even with overwrite=True; "
            "pick another path."
        )
    if path.is_dir():
        check_no_writer(path)  # a store another writer is filling is not swapped away under it


def _old_path(path: Path) -> Path:
    """Where :meth:`GeneratedTileWriter.commit` keeps the store it replaces until the new one is in place."""
    return path.with_name(f".{path.name}.old")


def _recover(path: Path) -> None:
    """Finish or undo a commit that was killed part-way, and remove partial stores of dead processes.

    ``.<name>.old`` without ``<name>``: killed between the two renames, the old store goes back.
    Both present: killed while deleting the old one, which is removed.
    """
    old = _old_path(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    if os.name != "posix":  # os.kill(pid, 0) only probes a process on POSIX
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:
        return True  # cannot tell: keep its folder
    return True
