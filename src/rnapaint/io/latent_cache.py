"""Cached autoencoder latents of a TileStore's tiles: a ``latents`` array beside ``images``.

The array's attributes name the autoencoder that made it (a fingerprint of its weights and latent
scale) and how many tiles it covers, so a reader can refuse a cache of another latent space or one
the store has outgrown. It is written under a hidden name and renamed into place when whole: a run
killed part-way leaves the previous cache, or none, never half of one.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from .folder_swap import swap_in
from .tile_store import TileStore

LATENTS = "latents"
_PARTIAL = ".latents.partial"


def cache_info(store: TileStore) -> dict[str, Any] | None:
    """The attributes of ``store``'s latent cache (``autoencoder``, ``n_tiles``, ``shape``), or ``None``."""
    if not (store.path / LATENTS / "zarr.json").is_file():
        return None
    import zarr

    return dict(zarr.open_array(str(store.path / LATENTS), mode="r").attrs.get("rnapaint", {}))


def read_latents(store: TileStore, fingerprint: str) -> Any:
    """The cached latents ``(n, C, h, w)`` float32 zarr array of ``store``, made by the autoencoder ``fingerprint``.

    Raises
    ------
    ValueError
        If there is no cache, it was made by another autoencoder, or it covers fewer tiles than the
        store now holds (tiles were appended since): re-encode with ``rp.tl.encode_tiles(..., overwrite=True)``.
    """
    import zarr

    info = cache_info(store)
    if info is None:
        raise ValueError(f"{store.path} has no cached latents: run rp.tl.encode_tiles(store, autoencoder) first.")
    if info.get("autoencoder") != fingerprint:
        raise ValueError(
            f"the latents cached in {store.path} were made by another autoencoder (fingerprint "
            f"{str(info.get('autoencoder'))[:12]}…, this one {fingerprint[:12]}…): they are in another latent "
            "space. Re-encode with rp.tl.encode_tiles(store, autoencoder, overwrite=True)."
        )
    if int(info.get("n_tiles", -1)) != len(store):
        raise ValueError(
            f"the latents cached in {store.path} cover {info.get('n_tiles')} tiles but the store holds {len(store)}: "
            "tiles were added since. Re-encode with rp.tl.encode_tiles(store, autoencoder, overwrite=True)."
        )
    arr = zarr.open_array(str(store.path / LATENTS), mode="r")
    if arr.shape[0] != len(store):
        raise ValueError(f"{store.path} is damaged: its latents array has {arr.shape[0]} rows for {len(store)} tiles.")
    return arr


@contextlib.contextmanager
def latent_writer(store: TileStore, shape: tuple[int, ...], attrs: dict[str, Any]) -> Iterator[Any]:
    """A new ``(len(store), *shape)`` float32 array to fill; it replaces the cache only if the block ends cleanly.

    The store must be open for writing (``mode="a"``), so no other writer changes it meanwhile.
    """
    import zarr

    if store.mode != "a":
        raise ValueError(f"{store.path} is open read-only; open it with mode='a' to cache latents.")
    partial, final = store.path / _PARTIAL, store.path / LATENTS
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed writer
    n = len(store)
    from zarr.codecs import Crc32cCodec, ZstdCodec

    arr = zarr.create_array(
        str(partial),
        shape=(n, *shape),
        chunks=(max(1, min(n, 256)), *shape),
        dtype="float32",
        fill_value=np.nan,
        compressors=[ZstdCodec(level=0), Crc32cCodec()],
    )
    try:
        yield arr
        arr.attrs["rnapaint"] = dict(attrs, n_tiles=n, shape=list(shape))
        swap_in(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
