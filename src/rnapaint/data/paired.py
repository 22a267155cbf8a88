"""Pairs of (tile, expression of the tile's unit) as a torch Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from torch.utils.data import Dataset

from .._logging import logger
from ..io.tile_store import TileStore
from .augment import TileAugment


class PairedTiles(Dataset):
    """Each tile with its unit's expression row: what conditional generators train on.

    Items are dicts of ``image`` — ``(3, H, W)`` float32, or ``(H, W, 3)`` uint8 with
    ``augment_on="device"`` — ``condition`` ``(d,)`` float32, ``unit`` (row of ``adata``) and
    ``tile`` (row of the store) as int64.

    Parameters
    ----------
    tiles
        A :class:`TileStore` (or its path), whose table's ``unit`` names obs of ``adata`` (tiles of
        units that ``adata`` does not hold, e.g. when it is one split, are left out; at least one
        unit must be in ``adata``); or an array ``(n_obs, k, H, W, 3)`` uint8, ``H == W``, aligned with ``adata``
        (e.g. ``adata.obsm['tiles']`` from :func:`rnapaint.pp.spot_tiles`); all-black tiles
        (placeholders for spots without a patch) are skipped.
    adata
        Expression units (obs names unique: they are the tiles' units).
    rep
        ``None`` for ``adata.X`` or an obsm key (e.g. ``"X_vae"``) for the condition vector.
    units
        Restrict to these obs names (e.g. the training split); default all units with tiles.
    augment
        ``True`` for :class:`TileAugment` defaults, an instance, or ``None``/``False``.
    value_range
        Pixel range of the returned images: ``(-1, 1)`` for GANs and diffusion, ``(0, 1)`` otherwise.
    augment_on
        Where augmentation happens. With ``"worker"`` items hold finished float images (augmented
        in the loader workers). With ``"device"`` items hold the tile as it is stored, ``(H, W, 3)``
        uint8, and the training step finishes each batch on its device with :meth:`finish`:
        workers then only read, and a batch crosses processes and the PCIe bus as uint8 (a quarter
        of float32's bytes). The generators train this way.
    """

    def __init__(
        self,
        tiles: TileStore | str | os.PathLike | np.ndarray,
        adata: ad.AnnData,
        rep: str | None = None,
        units=None,
        augment: bool | TileAugment | None = None,
        value_range: tuple[float, float] = (-1.0, 1.0),
        augment_on: str = "worker",
    ):
        if augment_on not in ("worker", "device"):
            raise ValueError(f"augment_on must be 'worker' or 'device', got {augment_on!r}.")
        self.augment_on = augment_on
        if not adata.obs_names.is_unique:  # tiles are matched to their unit by obs name
            dup = adata.obs_names[adata.obs_names.duplicated()]
            raise ValueError(
                f"obs names are the tiles' units and must be unique (e.g. {dup[0]!r} repeats); "
                "run adata.obs_names_make_unique() first (and cut the tiles again for a store)."
            )
        x = adata.X if rep is None else adata.obsm[rep] if rep in adata.obsm else None
        if x is None:
            raise ValueError(f"adata.obsm has no {rep!r}; run rp.tl.vae first or pass rep=None for adata.X.")
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        if not np.isfinite(x).all():
            raise ValueError("The condition holds NaN or infinite values.")
        self.condition = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        keep = np.ones(adata.n_obs, bool) if units is None else adata.obs_names.isin(list(units))
        if isinstance(tiles, np.ndarray):
            # Channels last, RGB, square: a channels-first or RGBA array would be read as other pixels.
            if (
                tiles.ndim != 5
                or len(tiles) != adata.n_obs
                or tiles.dtype != np.uint8
                or tiles.shape[4] != 3
                or tiles.shape[2] != tiles.shape[3]
            ):
                raise ValueError(
                    f"tiles must be uint8 (n_obs={adata.n_obs}, k, H, W, 3) with H == W, got {tiles.dtype} "
                    f"{tiles.shape}."
                )
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
            absent = unit_names[pos < 0]
            if len(absent) and len(absent) == len(unit_names):
                raise ValueError(
                    f"None of the {len(unit_names)} units of the tile store {store.path} is in adata "
                    f"(e.g. {absent[0]!r}): pass the AnnData (or a subset of it) the tiles were cut for."
                )
            if len(absent) and units is None:
                logger.info(
                    f"{len(absent)} units of the tile store {store.path} are not in adata (e.g. {absent[0]!r}); "
                    "their tiles are left out."
                )
            # Tiles of units that adata does not hold (a subset, e.g. one split) are dropped.
            obs_rows = pos[codes]
            present = obs_rows >= 0
            obs_rows = obs_rows[present]
            self._tile_rows = np.flatnonzero(present)
        sel = keep[obs_rows]
        self._obs_rows = obs_rows[sel].astype(np.int64)
        self._tile_rows = self._tile_rows[sel].astype(np.int64)
        if len(self._tile_rows) == 0:
            raise ValueError("No tiles left for the requested units.")
        self.augment = TileAugment() if augment is True else (augment or None)
        lo, hi = value_range
        self.value_range = (float(lo), float(hi))
        self._scale, self._shift = (hi - lo), lo
        self._reader = None
        self._pid = None

    def __len__(self) -> int:
        return len(self._tile_rows)

    @property
    def tile_size(self) -> int:
        """Side of the (square) tiles, in pixels."""
        return int(self._tile(0).shape[0])

    @property
    def obs_rows(self) -> np.ndarray:
        """``(len(self),)`` adata row of each item (for samplers that balance units)."""
        return self._obs_rows

    def _tile(self, i: int) -> np.ndarray:
        t = int(self._tile_rows[i])
        if self._memory is not None:
            k = self._memory.shape[1]
            return self._memory[t // k, t % k]
        if self._reader is None or self._pid != os.getpid():  # one store handle per worker process
            # The parent checked the store's codes when it built this dataset: a worker need not
            # read them again (8 bytes a tile, in every worker).
            self._reader = TileStore(self._store_path, check_codes=False).reader
            self._pid = os.getpid()
        out = np.empty(self._reader.shape, np.uint8)
        self._reader.read_into(t, out)
        return out

    def finish(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Turn a batch of ``augment_on="device"`` items into model input, on the batch's device.

        Parameters
        ----------
        images
            ``(B, H, W, 3)`` uint8 (``batch["image"]``), e.g. already on the GPU.
        generator
            CPU generator for the augmentation's random choices (seed it per step to repeat a run).

        Returns
        -------
        ``(B, 3, H, W)`` float32 in ``value_range``, augmented as the worker path would.
        """
        if images.dtype != torch.uint8:
            raise ValueError(f"finish() takes the uint8 tiles of augment_on='device' items, got {images.dtype}.")
        if self.augment is not None:
            return self.augment.batch(images, generator, value_range=self.value_range)
        return images.permute(0, 3, 1, 2).float().div_(255.0).mul_(self._scale).add_(self._shift).contiguous()

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        tile = self._tile(i)
        if self.augment_on == "device":
            img = torch.from_numpy(np.ascontiguousarray(tile))
        elif self.augment is not None:
            img = self.augment.from_uint8(tile)
        else:
            img = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1))).float().div_(255.0)
        obs = int(self._obs_rows[i])
        return {
            "image": img if self.augment_on == "device" else img * self._scale + self._shift,
            "condition": self.condition[obs],
            "unit": torch.tensor(obs),
            "tile": torch.tensor(int(self._tile_rows[i])),
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_reader"] = None  # zarr handles are reopened in each worker
        return state


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator for one training step's augmentation, from (seed, step, rank).

    Seeded per step rather than carried along, so augmentation needs no state in a checkpoint: a
    run resumed at step ``k`` draws from step ``k``'s stream. (The loader is reseeded on resume,
    so the tiles those draws fall on differ from the uninterrupted run's.)
    """
    word = np.random.SeedSequence([int(seed), int(step), int(rank), 0x617567]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(word >> np.uint64(1)))
