"""Read whole tiles straight from a local zarr array's chunk files.

A tile store keeps one tile per chunk. zarr 3.1 reads one such chunk in about 1–2 ms, nearly all of
it the cost of its asynchronous call path (indexer, event loop, codec pipeline); the file read and
the LZ4 decode take about 0.1 ms. Loader workers read tiles one by one, so that overhead capped a
worker at a few hundred tiles/s. For the layout :class:`~rnapaint.io.TileStore` writes (a local
store, chunks of one whole tile, bytes + Blosc codecs, no sharding) :class:`TileChunkReader` opens the
chunk file and decodes it with numcodecs' Blosc (the same library zarr uses); the same layout in
another zarr store (memory, remote) is read chunk by chunk through the store's own ``get``. Any other
layout goes through zarr. zarr offers no synchronous single-chunk read; if it gains one, this module
should go.

Blosc's decoder trusts the sizes in a frame's 16-byte header and never sees the buffer's length, so
a truncated chunk file (a copy cut short, a full disk) can decode "successfully" into wrong pixels.
Every chunk read here is checked first: its CRC32C where the array has zarr's ``crc32c`` codec (a
flipped byte), then the header's compressed size must be the frame's length and its decoded size the
tile's; otherwise the read raises ``ValueError`` (the store is damaged).

zarr skips writing a chunk equal to the fill value, so a missing chunk file normally means "all
black". Stores whose writer wrote every chunk (``TileStore`` marks its ``images`` array so) make a
missing chunk an error instead: a deleted file is damage, not a black tile.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

try:  # the CRC32C implementation zarr's crc32c codec uses (zarr ≥ 3.1.4: google-crc32c; before: crc32c)
    from google_crc32c import value as _crc32c
except ImportError:  # pragma: no cover - older zarr
    from crc32c import crc32c as _crc32c

_BLOSC_HEADER = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, nbytes, blocksize, cbytes


def blosc_frame_sizes(raw: bytes) -> tuple[int, int]:
    """``(nbytes, cbytes)`` of a Blosc-1 frame: its decoded size and the frame length its header declares.

    The same numbers as ``numcodecs.blosc.cbuffer_sizes`` (private in recent numcodecs), read from
    the documented header layout. Raises ``ValueError`` when ``raw`` is too short to hold a header.
    """
    if len(raw) < _BLOSC_HEADER.size:
        raise ValueError(f"{len(raw)} bytes cannot hold a Blosc header ({_BLOSC_HEADER.size} bytes)")
    _, _, _, _, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(raw)
    return nbytes, cbytes


class TileChunkReader:
    """Whole-tile reads from a zarr v3 array ``(n, H, W, 3)`` uint8 with one tile per chunk.

    Parameters
    ----------
    array
        The zarr array (e.g. ``TileStore.images``).
    missing
        What a tile whose chunk was never stored reads as: ``"fill"`` (the fill value, zarr's own
        behaviour) or ``"error"`` (``ValueError``; for arrays whose writer stored every chunk).

    Attributes
    ----------
    direct
        Whether chunks are read and checked here (chunk files of a local store, or the raw chunk
        bytes of another store); else every read goes through zarr, which checks no frame sizes.
    """

    def __init__(self, array, missing: str = "fill"):
        if missing not in ("fill", "error"):
            raise ValueError(f"missing must be 'fill' or 'error', got {missing!r}.")
        self.array = array
        self.missing = missing
        self.shape = tuple(array.shape[1:])
        self._root: Path | None = None
        self._decompress = None
        self.direct = False
        self.checksummed = False
        try:
            self._setup_direct()
        except Exception:  # an unknown layout or zarr version: fall back to zarr's own reads
            self.direct = False

    def _setup_direct(self) -> None:
        from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec
        from zarr.storage import LocalStore

        a, md = self.array, self.array.metadata
        if getattr(md, "zarr_format", None) != 3:
            return
        if tuple(md.chunk_grid.chunk_shape) != (1, *self.shape) or np.dtype(a.dtype) != np.uint8:
            return
        codecs = tuple(md.codecs)
        self.checksummed = len(codecs) == 3 and isinstance(codecs[2], Crc32cCodec)
        if len(codecs) != 2 + self.checksummed or not isinstance(codecs[0], BytesCodec):
            return
        if not isinstance(codecs[1], BloscCodec):
            return
        from numcodecs import blosc

        if isinstance(a.store, LocalStore):
            self._root = Path(a.store.root) / a.path
        else:  # the same layout in a memory or remote store: fetch the raw chunk through the store
            from zarr.core.buffer import default_buffer_prototype
            from zarr.core.sync import sync

            self._prefix = f"{a.path}/" if a.path else ""
            self._store_get = lambda key: sync(a.store.get(key, prototype=default_buffer_prototype()))
        self._key = md.encode_chunk_key
        self._fill = md.fill_value
        self._decompress = blosc.decompress
        self.direct = True

    def _raw(self, i: int) -> tuple[bytes | None, str]:
        """The stored bytes of tile ``i``'s chunk (``None`` when it was never written) and its name."""
        key = self._key((int(i), 0, 0, 0))
        if self._root is not None:
            path = self._root / key
            try:
                return path.read_bytes(), str(path)
            except FileNotFoundError:
                return None, str(path)
        buf = self._store_get(self._prefix + key)
        return (None if buf is None else buf.to_bytes()), self._prefix + key

    def read_into(self, i: int, out: np.ndarray) -> None:
        """Write tile ``i`` (a non-negative row) into ``out`` ``(H, W, 3)`` uint8."""
        if not self.direct:
            out[...] = self.array[int(i)]
            return
        raw, path = self._raw(i)
        if raw is None:
            if self.missing == "error":
                raise ValueError(
                    f"Tile chunk {path} is missing, but this store's writer stored every tile: the store is "
                    "damaged (a file was deleted or a copy is incomplete)."
                )
            out.fill(int(self._fill))  # zarr does not write chunks that equal the fill value
            return
        if self.checksummed:  # zarr's crc32c codec: the frame, then its CRC32C (4 bytes, little-endian)
            raw = self._verified(raw, path)
        # Blosc decodes a frame cut short without complaint (it trusts the header): check the sizes.
        try:
            nbytes, cbytes = blosc_frame_sizes(raw)
        except ValueError as e:
            raise ValueError(f"Tile chunk {path} cannot be decoded ({e}): the store is damaged.") from e
        if cbytes != len(raw) or nbytes != out.nbytes:
            raise ValueError(
                f"Tile chunk {path} holds {len(raw)} bytes but its Blosc header declares {cbytes} bytes "
                f"decoding to {nbytes} (a tile is {out.nbytes}): the file is truncated or corrupted, "
                "the store is damaged."
            )
        try:
            buf = self._decompress(raw)
        except Exception as e:  # numcodecs raises RuntimeError for a corrupt frame
            raise ValueError(f"Tile chunk {path} cannot be decoded ({e}): the store is damaged.") from e
        if len(buf) != out.nbytes:
            raise ValueError(
                f"Tile chunk {path} decodes to {len(buf)} bytes, expected {out.nbytes}: the store is damaged."
            )
        out[...] = np.frombuffer(buf, np.uint8).reshape(out.shape)

    @staticmethod
    def _verified(raw: bytes, path: str) -> bytes:
        body = raw[:-4]
        if len(raw) < 4 or _crc32c(body).to_bytes(4, "little") != raw[-4:]:
            raise ValueError(
                f"Tile chunk {path} does not match its checksum: the file is truncated or corrupted, the store "
                "is damaged."
            )
        return body

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Tiles at ``rows`` ``(k,)`` non-negative ints → ``(k, H, W, 3)`` uint8, in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape), np.uint8)
        for j, i in enumerate(rows):
            self.read_into(int(i), out[j])
        return out
