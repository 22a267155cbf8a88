"""``rp.tl.encode_tiles``: an autoencoder's latents of real tiles, cached so that generators need not re-encode."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._logging import logger


def _tiles_digest(tiles: np.ndarray) -> str:
    """A fast checksum of an in-memory tile array: an edited ``obsm['tiles']`` makes its cache stale."""
    return hashlib.blake2b(np.ascontiguousarray(tiles).data, digest_size=16).hexdigest()


def _as_autoencoder(autoencoder: Any) -> Any:
    from ..models.tile_autoencoder import TileAutoencoder

    if isinstance(autoencoder, (str, os.PathLike)):
        autoencoder = TileAutoencoder.load(autoencoder)
    if not isinstance(autoencoder, TileAutoencoder):
        raise TypeError(f"autoencoder must be a TileAutoencoder (or its folder), got {type(autoencoder).__name__}.")
    return autoencoder


def encode_tiles(
    data: Any,
    autoencoder: Any,
    *,
    tiles_key: str = "tiles",
    mpp: float | None = None,
    key_added: str = "latents",
    batch_size: int = 64,
    overwrite: bool = False,
    device: str | None = None,
    progress_bar: bool = True,
) -> None:
    """Encode real tiles with an autoencoder once, and cache the latents beside them.

    Parameters
    ----------
    data
        An AnnData with tiles in ``obsm[tiles_key]`` ``(n_obs, k, H, W, 3)`` (e.g. from
        :func:`rnapaint.pp.spot_tiles`), or a :class:`~rnapaint.io.TileStore` (or its path).
    autoencoder
        A :class:`~rnapaint.models.TileAutoencoder` or its folder (``rp.models.pretrained(...)`` too).
    tiles_key
        AnnData only: the obsm key of the tiles.
    mpp
        µm/px of the tiles (default: a store's table; for AnnData, the tiles are taken at the
        autoencoder's native size). Tiles are rescaled to the autoencoder's resolution.
    key_added
        AnnData only: latents go to ``obsm[key_added]`` ``(n_obs, k, C, h, w)`` float32 and the
        autoencoder's fingerprint to ``uns[key_added]``. A store's cache is its ``latents`` array.
    batch_size, device, progress_bar
        For the encoder.
    overwrite
        Replace a cache made by another autoencoder (or of other tiles); without it that raises. A
        cache of the same autoencoder and tiles is kept as it is.

    Raises
    ------
    ValueError
        If a cache of another autoencoder or other tiles is there and ``overwrite`` is ``False``, or
        the tiles are missing.
    """
    ae = _as_autoencoder(autoencoder)
    from ..io.tile_store import TileStore

    if isinstance(data, (str, os.PathLike)) or isinstance(data, TileStore):
        path = Path(data.path if isinstance(data, TileStore) else data)
        _encode_store(path, ae, mpp, batch_size, overwrite, device, progress_bar)
        return None
    if tiles_key not in data.obsm:
        raise ValueError(f"adata.obsm has no {tiles_key!r}: cut tiles first (rp.pp.spot_tiles).")
    tiles = np.asarray(data.obsm[tiles_key])
    digest = _tiles_digest(tiles)
    old = data.uns.get(key_added)
    if key_added in data.obsm and isinstance(old, dict):
        same = old.get("autoencoder") == ae.fingerprint and old.get("tiles_digest") == digest
        if same and not overwrite:
            logger.info(f"adata.obsm[{key_added!r}] already holds this autoencoder's latents of these tiles.")
            return None
        if not same and not overwrite:
            raise ValueError(
                f"adata.obsm[{key_added!r}] holds latents of another autoencoder or of other tiles; pass "
                "overwrite=True to replace them, or another key_added."
            )
    z = ae.encode(tiles, mpp=mpp, batch_size=batch_size, device=device, progress_bar=progress_bar)
    data.obsm[key_added] = z
    data.uns[key_added] = {
        "autoencoder": ae.fingerprint,
        "tiles_key": tiles_key,
        "tiles_digest": digest,
        "scaling_factor": ae.scaling_factor,
        "source": ae.source,
    }
    logger.info(f"Adding adata.obsm[{key_added!r}] {z.shape} and adata.uns[{key_added!r}]")
    return None


def _encode_store(path: Path, ae: Any, mpp, batch_size: int, overwrite: bool, device, progress_bar: bool) -> None:
    from tqdm.auto import tqdm

    from ..io.latent_cache import cache_info, latent_writer
    from ..io.tile_store import TileStore

    with TileStore.open(path, mode="a") as store:
        info = cache_info(store)
        if info is not None:
            same = info.get("autoencoder") == ae.fingerprint and int(info.get("n_tiles", -1)) == len(store)
            if same and not overwrite:
                logger.info(f"{path} already caches this autoencoder's latents of its {len(store)} tiles.")
                return
            if not same and not overwrite:
                raise ValueError(
                    f"{path} caches latents of another autoencoder or of fewer tiles; pass overwrite=True to replace."
                )
        if len(store) == 0:
            raise ValueError(f"{path} holds no tiles to encode.")
        mpps = store.table["mpp"].to_numpy(float) if mpp is None else np.full(len(store), float(mpp))
        if ae.mpp and len(np.unique(mpps)) > 1:  # checked before anything is written
            raise ValueError(
                f"{path} mixes tiles at µm/px {np.unique(mpps)[:5].tolist()}: pass mpp= (one for all), or tile "
                "at one µm/px."
            )
        first = ae.encode(store[[0]], mpp=float(mpps[0]) if ae.mpp else None, progress_bar=False)
        attrs = {"autoencoder": ae.fingerprint, "scaling_factor": ae.scaling_factor, "source": ae.source}
        with latent_writer(store, first.shape[1:], attrs) as out:
            # Stream the store: a large one never sits in memory whole.
            for i in tqdm(range(0, len(store), batch_size), desc="encoding tiles", disable=not progress_bar):
                rows = np.arange(i, min(i + batch_size, len(store)))
                out[rows[0] : rows[-1] + 1] = ae.encode(
                    store[rows], mpp=float(mpps[0]) if ae.mpp else None, device=device, progress_bar=False
                )
        logger.info(f"Cached {len(store)} latents {tuple(first.shape[1:])} in {path}/latents")


def cached_latents(data: Any, autoencoder: Any, key: str = "latents") -> Any:
    """The cached latents of ``data`` (AnnData ``obsm[key]``, a TileStore's ``latents``) if ``autoencoder`` made them.

    Raises
    ------
    ValueError
        If there is no cache, or it was made by another autoencoder, or of other (edited or more) tiles.
    """
    ae = _as_autoencoder(autoencoder)
    from ..io.latent_cache import read_latents
    from ..io.tile_store import TileStore

    if isinstance(data, (str, os.PathLike)):
        data = TileStore.open(data)
    if isinstance(data, TileStore):
        return read_latents(data, ae.fingerprint)
    info = data.uns.get(key)
    if key not in data.obsm or not isinstance(info, dict):
        raise ValueError(f"adata has no cached latents under {key!r}: run rp.tl.encode_tiles(adata, autoencoder).")
    if info.get("autoencoder") != ae.fingerprint:
        raise ValueError(
            f"adata.obsm[{key!r}] was made by another autoencoder: its latents are in another space. Re-encode "
            "with rp.tl.encode_tiles(adata, autoencoder, overwrite=True)."
        )
    tiles = data.obsm.get(info.get("tiles_key", "tiles"))
    if tiles is not None and _tiles_digest(np.asarray(tiles)) != info.get("tiles_digest"):
        raise ValueError(
            f"adata.obsm[{info.get('tiles_key')!r}] changed since its latents were cached: re-encode with "
            "rp.tl.encode_tiles(adata, autoencoder, overwrite=True)."
        )
    return data.obsm[key]
