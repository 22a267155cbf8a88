"""Pairs of (tile, expression of the tile's unit) as a torch Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from torch.utils.data import Dataset

from ..io.tile_store import TileStore
from .augment import TileAugment


class PairedTiles(Dataset):
    """Each tile with its unit's expression row: what conditional generators train on.

    Parameters
    ----------
    tiles
        A :class:`TileStore` (or its path), whose table's ``unit`` names obs of ``adata``; or an
        array ``(n_obs, k, H, W, 3)`` uint8 aligned with ``adata`` (e.g. ``adata.obsm['tiles']``
        from :func:`rnapaint.pp.spot_tiles`); all-black tiles (placeholders for spots without a
        patch) are skipped.
    adata
        Expression units.
    rep
        ``None`` for ``adata.X`` or an obsm key (e.g. ``"X_vae"``) for the condition vector.
    units
        Restrict to these obs names (e.g. the training split); default all units with tiles.
    augment
        ``True`` for :class:`TileAugment` defaults, an instance, or ``None``/``False``.
    value_range
        Pixel range of the returned images: ``(-1, 1)`` for GANs and diffusion, ``(0, 1)`` otherwise.

    Items are dicts: ``image`` ``(3, H, W)`` float32, ``condition`` ``(d,)`` float32, ``unit``
    (row of ``adata``) and ``tile`` (row of the store) as int64.
    """

    def __init__(self, tiles: TileStore | str | os.PathLike | np.ndarray, adata: ad.AnnData,
                 rep: str | None = None, units=None, augment: bool | TileAugment | None = None,
                 value_range: tuple[float, float] = (-1.0, 1.0)):
        x = adata.X if rep is None else adata.obsm[rep] if rep in adata.obsm else None
        if x is None:
            raise ValueError(f"adata.obsm has no {rep!r}; run rp.tl.vae first or pass rep=None for adata.X.")
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        if not np.isfinite(x).all():
            raise ValueError("The condition holds NaN or infinite values.")
        self.condition = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        keep = np.ones(adata.n_obs, bool) if units is None else adata.obs_names.isin(list(units))
        if isinstance(tiles, np.ndarray):
            if tiles.ndim != 5 or len(tiles) != adata.n_obs or tiles.dtype != np.uint8:
                raise ValueError(f"tiles must be uint8 (n_obs={adata.n_obs}, k, H, W, 3), got {tiles.dtype} "
                                 f"{tiles.shape}.")
            self._memory = tiles
            self._store_path = None
            k = tiles.shape[1]
            obs_rows = np.repeat(np.arange(adata.n_obs), k)
            self._tile_rows = np.arange(adata.n_obs * k)
            # All-black rows are placeholders (spot_tiles leaves them for spots whose patch leaves the
            # image; some units have no tile at all): never train on them.
            blank = tiles.reshape(adata.n_obs * k, -1).max(1) == 0
            keep = keep & ~blank.reshape(adata.n_obs, k).all(1)
            obs_rows, self._tile_rows = obs_rows[~blank], self._tile_rows[~blank]
        else:
            store = tiles if isinstance(tiles, TileStore) else TileStore.open(tiles)
            self._memory = None
            self._store_path = Path(store.path)
            codes = store.unit_codes()
            unit_names = np.asarray(store.units, dtype=object)
            pos = adata.obs_names.get_indexer(unit_names)
            if (pos < 0).any():
                absent = unit_names[pos < 0]
                raise ValueError(f"{len(absent)} units of the tile store are not in adata (e.g. {absent[0]!r}): "
                                 "subset the store with units= or use the AnnData the tiles were cut for.")
            obs_rows = pos[codes]
            self._tile_rows = np.arange(len(store))
        sel = keep[obs_rows]
        self._obs_rows = obs_rows[sel].astype(np.int64)
        self._tile_rows = self._tile_rows[sel].astype(np.int64)
        if len(self._tile_rows) == 0:
            raise ValueError("No tiles left for the requested units.")
        self.augment = TileAugment() if augment is True else (augment or None)
        lo, hi = value_range
        self._scale, self._shift = (hi - lo), lo
        self._images = None
        self._pid = None

    def __len__(self) -> int:
        return len(self._tile_rows)

    @property
    def obs_rows(self) -> np.ndarray:
        """``(len(self),)`` adata row of each item (for samplers that balance units)."""
        return self._obs_rows

    def _tile(self, i: int) -> np.ndarray:
        t = int(self._tile_rows[i])
        if self._memory is not None:
            k = self._memory.shape[1]
            return self._memory[t // k, t % k]
        if self._images is None or self._pid != os.getpid():  # one zarr handle per worker process
            self._images = TileStore.open(self._store_path).images
            self._pid = os.getpid()
        return self._images[t]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        tile = self._tile(i)
        if self.augment is not None:
            img = self.augment.from_uint8(tile)
        else:
            img = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))).float().div_(255.0)
        obs = int(self._obs_rows[i])
        return {
            "image": img * self._scale + self._shift,
            "condition": self.condition[obs],
            "unit": torch.tensor(obs),
            "tile": torch.tensor(int(self._tile_rows[i])),
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_images"] = None  # zarr handles are reopened in each worker
        return state
