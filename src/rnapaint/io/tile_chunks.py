"""Read whole tiles straight from a local zarr array's chunk files.

A tile store keeps one tile per chunk. zarr 3.1 reads one such chunk in about 1–2 ms, nearly all of
it the cost of its asynchronous call path (indexer, event loop, codec pipeline); the file read and
the LZ4 decode take about 0.1 ms. Loader workers read tiles one by one, so that overhead capped a
worker at a few hundred tiles/s. For the layout :class:`~rnapaint.io.TileStore` writes (a local
store, chunks of one whole tile, bytes + Blosc codecs, no sharding) :class:`TileChunkReader` opens the
chunk file and decodes it with numcodecs' Blosc (the same library zarr uses); any other layout goes
through zarr. zarr offers no synchronous single-chunk read; if it gains one, this module should go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TileChunkReader:
    """Whole-tile reads from a zarr v3 array ``(n, H, W, 3)`` uint8 with one tile per chunk.

    Parameters
    ----------
    array
        The zarr array (e.g. ``TileStore.images``).

    Attributes
    ----------
    direct
        Whether chunk files are read directly (else every read goes through zarr).
    """

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape[1:])
        self._root: Path | None = None
        self._decompress = None
        self.direct = False
        try:
            self._setup_direct()
        except Exception:  # an unknown layout or zarr version: fall back to zarr's own reads
            self.direct = False

    def _setup_direct(self) -> None:
        from zarr.codecs import BloscCodec, BytesCodec
        from zarr.storage import LocalStore

        a, md = self.array, self.array.metadata
        if not isinstance(a.store, LocalStore) or getattr(md, "zarr_format", None) != 3:
            return
        if tuple(md.chunk_grid.chunk_shape) != (1, *self.shape) or np.dtype(a.dtype) != np.uint8:
            return
        codecs = tuple(md.codecs)
        if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec):
            return
        from numcodecs import blosc

        self._root = Path(a.store.root) / a.path
        self._key = md.encode_chunk_key
        self._fill = md.fill_value
        self._decompress = blosc.decompress
        self.direct = True

    def read_into(self, i: int, out: np.ndarray) -> None:
        """Write tile ``i`` (a non-negative row) into ``out`` ``(H, W, 3)`` uint8."""
        if not self.direct:
            out[...] = self.array[int(i)]
            return
        path = self._root / self._key((int(i), 0, 0, 0))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # zarr does not write chunks that equal the fill value
            out.fill(int(self._fill))
            return
        try:
            buf = self._decompress(raw)
        except Exception as e:  # numcodecs raises RuntimeError for a corrupt frame
            raise ValueError(f"Tile chunk {path} cannot be decoded ({e}): the store is damaged.") from e
        if len(buf) != out.nbytes:
            raise ValueError(
                f"Tile chunk {path} decodes to {len(buf)} bytes, expected {out.nbytes}: the store is damaged."
            )
        out[...] = np.frombuffer(buf, np.uint8).reshape(out.shape)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Tiles at ``rows`` ``(k,)`` non-negative ints → ``(k, H, W, 3)`` uint8, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape), np.uint8)
        for j, i in enumerate(rows):
            self.read_into(int(i), out[j])
        return out
