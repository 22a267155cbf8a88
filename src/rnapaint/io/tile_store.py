"""TileStore: a zarr group of uint8 tiles and a per-tile table, safe to kill and resume.

Layout of ``<path>/`` (a zarr v3 group):

- ``images`` — ``(n, H, W, 3)`` uint8, one tile per chunk (random access for data loaders), Blosc-LZ4
  compressed (lossless H&E shrinks only to ~85 %, but LZ4 decodes a 256 px tile in ~0.03 ms; zstd
  saves 4 % more at 7× the decode time);
- ``x``, ``y`` (int64, tile origin in level-0 pixels of the slide), ``mpp`` (float32),
  ``unit_code``, ``slide_code`` (int32) — the per-tile table, one array per column;
- ``rnapaint_commit.json`` — how many rows are committed, the unit and slide names behind the codes,
  and which slides are finished or failed. It is replaced atomically (write + rename) *after* the
  rows it counts are written, so a writer killed at any point leaves a store whose committed part
  is whole; rows past the count are overwritten by the next writer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._logging import logger
from .tile_chunks import TileChunkReader
from .writer_lock import LOCK_FILE, WriterLock, check_no_writer

COMMIT = "rnapaint_commit.json"
FORMAT_VERSION = 1
# Marks an images array whose writer stored every chunk (zarr would skip all-fill-value ones), so
# that a missing chunk file reads as damage, not as a black tile. Stores made before it read as before.
_EVERY_CHUNK = "rnapaint_every_chunk_written"
_COLUMNS = {"x": "int64", "y": "int64", "mpp": "float32", "unit_code": "int32", "slide_code": "int32"}


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _existing_kind(path: Path) -> str:
    """What an existing path is: ``"store"``, ``"unfinished"`` (created, never committed), ``"empty"``, ``"other"``."""
    if not path.is_dir() or path.is_symlink():
        return "other"
    if (path / COMMIT).is_file():
        return "store"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    # A writer killed between creating the group and writing the first commit leaves the group's
    # zarr.json, some of the (empty) arrays and maybe a temp commit file; appends need a commit first,
    # so such a folder holds no tile.
    ours = {"zarr.json", "images", *_COLUMNS}
    temp = {n for n in names if n.startswith(f".{COMMIT}.") and n.endswith(".tmp")} | {LOCK_FILE}
    if "zarr.json" not in names or not names - temp <= ours:
        return "other"
    try:
        group = json.loads((path / "zarr.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "other"
    if not isinstance(group, dict) or group.get("node_type") != "group":
        return "other"
    for name in names & ours - {"zarr.json"}:
        try:
            meta = json.loads((path / name / "zarr.json").read_text())
        except (OSError, json.JSONDecodeError):
            meta = None
        # A folder without metadata may be a half-written array; one with a non-empty shape holds data.
        if meta is not None and (not isinstance(meta, dict) or (meta.get("shape") or [0])[0] != 0):
            return "other"
        if any(p.is_file() and p.name != "zarr.json" for p in (path / name).rglob("*")):
            return "other"
    return "unfinished"


_SAID_UNCHECKSUMMED: set[str] = set()


def _say_once_if_unchecksummed(path: Path, images: Any) -> None:
    """Warn once per store that its chunks carry no checksum (a store written before they existed)."""
    from zarr.codecs import Crc32cCodec

    if any(isinstance(c, Crc32cCodec) for c in images.metadata.codecs) or str(path) in _SAID_UNCHECKSUMMED:
        return
    _SAID_UNCHECKSUMMED.add(str(path))
    logger.warning(
        f"{path} was written without chunk checksums: a corrupted chunk may read as wrong pixels. Create the "
        "store again (rp.pp.tile_slides, rp.pp.spot_tiles) to protect it."
    )


def _origins(column: pd.Series, name: str) -> np.ndarray:
    """A table's ``x`` or ``y`` column as int64 pixels; NaN/inf would become INT64_MIN silently."""
    values = column.to_numpy()
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    try:
        f = values.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"table column {name!r} must hold numbers (tile origins in pixels), got {values.dtype}."
        ) from e
    bad = ~np.isfinite(f)
    if bad.any():
        raise ValueError(
            f"table column {name!r} holds {int(bad.sum())} NaN or infinite values (first at row "
            f"{int(np.flatnonzero(bad)[0])}); a tile's origin must be a finite pixel position: drop those "
            "tiles or give their origin (0 for tiles not cut from a slide)."
        )
    return f.astype(np.int64)


class TileStore:
    """Tiles ``(n, H, W, 3)`` uint8 with a table (unit, slide, x, y, mpp), stored in zarr.

    Create with :meth:`create`, open with :meth:`open` (``mode="r"`` read-only, ``"a"`` append).
    ``store[i]`` / ``store[idx]`` returns tiles as numpy; ``store.table`` the table of the rows this
    handle sees (committed ones; a writer also sees its pending rows);
    ``store.indices(unit)`` the rows of one expression unit.

    A store has one writer at a time: an ``"a"`` handle (and :meth:`create`) holds a lock until
    :meth:`close` (or ``with TileStore.open(path, "a") as s: ...``, or the handle being deleted),
    and a second writer raises :class:`~rnapaint.io.writer_lock.StoreBusyError`. Readers never wait:
    they see the rows committed when they opened.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, check_codes: bool = True):
        """Open a store; see :meth:`open`. ``check_codes=False`` skips reading the unit and slide code
        arrays to check them (8 bytes a tile): for loader workers reopening a store their parent checked."""
        import zarr

        self.path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}.")
        old = self.path.with_name(f".{self.path.name}.old")
        if not self.path.exists() and (old / COMMIT).is_file():
            # Replacing the store (rnapaint.models.GeneratedTileWriter) was killed between its two
            # renames: the old store goes back in place.
            os.replace(old, self.path)
        if not (self.path / COMMIT).is_file():
            hint = (
                " It is a store whose creation was interrupted (it holds no tile): TileStore.create and "
                "rnapaint.pp.tile_slides create it again."
                if self.path.is_dir() and _existing_kind(self.path) == "unfinished"
                else ""
            )
            raise ValueError(f"{self.path} is not a rnapaint TileStore ({COMMIT} is missing).{hint}")
        self.mode = mode
        # The lock comes before reading the commit, so a writer starts from the last writer's rows.
        self._lock = WriterLock(self.path) if mode == "a" else None
        try:
            try:
                self._group = zarr.open_group(str(self.path), mode="r" if mode == "r" else "r+")
            except Exception as e:  # zarr raises its own errors for a missing or corrupt zarr.json
                raise self._damaged(f"its zarr group cannot be opened ({type(e).__name__}: {e})") from e
            self._load_commit()
            self._check_layout(check_codes)
        except BaseException:
            self.close()  # a damaged store keeps no lock
            raise

    def _damaged(self, what: str) -> ValueError:
        """The error for a store whose files do not hold what its writer wrote."""
        return ValueError(
            f"{self.path} is a damaged rnapaint TileStore: {what}. Copy it again from its source, or "
            "create it again (TileStore.create(..., overwrite=True), rnapaint.pp.tile_slides)."
        )

    def _check_layout(self, check_codes: bool = True) -> None:
        """Raise if the arrays cannot hold the committed rows (a copy cut short, an edited file)."""
        ts, n = self.tile_size, self._n
        arrays = {}
        for name in ("images", *_COLUMNS):
            try:
                arrays[name] = self._group[name]
            except Exception as e:  # KeyError for a missing array, zarr/JSON errors for corrupt metadata
                raise self._damaged(f"its array {name!r} cannot be opened ({type(e).__name__}: {e})") from e
        images = arrays["images"]
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != (ts, ts, 3):
            raise self._damaged(
                f"its images array is {images.dtype} {images.shape}, not uint8 (n, {ts}, {ts}, 3) as committed"
            )
        for name, a in arrays.items():
            if a.shape[0] < n:
                raise self._damaged(f"its array {name!r} has {a.shape[0]} rows but {n} are committed")
        self._check_column_chunks(arrays)
        _say_once_if_unchecksummed(self.path, images)
        # A code past the names committed with it would read as another unit's tile, or crash later.
        for name, names in (("unit_code", self._units), ("slide_code", self._slides)) if check_codes else ():
            codes = self._column(name)
            if n and (codes.min() < 0 or codes.max() >= len(names)):
                raise self._damaged(
                    f"its {name} array holds codes up to {int(codes.max())} but {COMMIT} names "
                    f"{len(names)} {name.split('_')[0]}s"
                )

    def _check_column_chunks(self, arrays: dict[str, Any]) -> None:
        """Raise if a chunk file of a table column is missing: zarr would read it as zeros (all tiles unit 0)."""
        for name in _COLUMNS:
            a = arrays[name]
            if not a.attrs.get(_EVERY_CHUNK):  # written before every chunk was stored: zeros may be absent
                continue
            folder = self.path / name
            for c in range(-(-self._n // a.chunks[0])):
                if not (folder / a.metadata.encode_chunk_key((c,))).is_file():
                    raise self._damaged(
                        f"chunk {c} of its {name!r} column is missing (a file was deleted or a copy is incomplete)"
                    )

    def close(self) -> None:
        """Release the writer lock; the handle becomes read-only. Safe to call twice."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.mode = "r"

    def __enter__(self) -> TileStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, tile_size: int, overwrite: bool = False) -> TileStore:
        """Create an empty store for square tiles of ``tile_size`` pixels.

        Parameters
        ----------
        path
            Folder of the new store. An empty folder, or one a creation left unfinished (a zarr group
            of a store's arrays and no commit file, no tile in it: a run killed while creating the
            store), is created into.
        tile_size
            Tile edge in pixels (> 0).
        overwrite
            Replace an existing tile store. Only a folder recognisably a TileStore (it holds
            ``rnapaint_commit.json``) is deleted: any other non-empty folder, or a file, raises.

        Raises
        ------
        FileExistsError
            If ``path`` is a tile store and ``overwrite`` is ``False``, or is anything else that is
            neither empty nor an unfinished store.
        """
        import zarr
        from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

        path = Path(path)
        # Checked before anything is written: zarr would fail on a float or str shape part-way.
        if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size <= 0:
            raise ValueError(
                f"tile_size must be a positive integer number of pixels, got {tile_size!r} "
                f"({type(tile_size).__name__}); pass e.g. int(tile_size)."
            )
        tile_size = int(tile_size)
        if path.exists() or path.is_symlink():
            kind = _existing_kind(path)
            if kind == "store":
                if not overwrite:
                    raise FileExistsError(f"{path} exists; open it with TileStore.open or pass overwrite=True.")
                check_no_writer(path)  # never delete a store another writer is filling
                shutil.rmtree(path)
            elif kind == "unfinished":
                check_no_writer(path)  # another process may be creating it right now
                shutil.rmtree(path)  # only a group and empty arrays: nothing of value
            elif kind == "other":
                raise FileExistsError(
                    f"{path} exists and is not a rnapaint TileStore ({COMMIT} is missing and it holds other "
                    "files); rnapaint does not delete it, even with overwrite=True. Pick another path."
                )
            # "empty": create into it
        g = zarr.open_group(str(path), mode="w")
        images = g.create_array(
            "images",
            shape=(0, tile_size, tile_size, 3),
            chunks=(1, tile_size, tile_size, 3),
            shards=None,  # one file a tile: TileChunkReader reads it directly (zarr plans auto-sharding)
            dtype="uint8",
            # A CRC32C of every chunk (zarr's own codec, so any zarr reader checks it too): a flipped
            # byte is an error, not wrong pixels.
            compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"), Crc32cCodec()],
        )
        images.attrs[_EVERY_CHUNK] = True
        for name, dtype in _COLUMNS.items():
            col = g.create_array(
                name, shape=(0,), chunks=(65536,), dtype=dtype, compressors=[ZstdCodec(level=0), Crc32cCodec()]
            )
            col.attrs[_EVERY_CHUNK] = True
        g.attrs["rnapaint"] = {"format_version": FORMAT_VERSION, "tile_size": int(tile_size)}
        _write_json_atomic(
            path / COMMIT,
            {
                "n": 0,
                "units": [],
                "slides": [],
                "done": {},
                "failed": {},
                "format_version": FORMAT_VERSION,
                "tile_size": int(tile_size),
            },
        )
        return cls(path, mode="a")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> TileStore:
        """Open an existing store (``"r"`` read-only, ``"a"`` to append)."""
        return cls(path, mode=mode)

    # ------------------------------------------------------------------ state
    def _load_commit(self) -> None:
        try:
            c = json.loads((self.path / COMMIT).read_text(encoding="utf-8"))
        except ValueError as e:  # not JSON, or not UTF-8 (it is written atomically: a damaged copy)
            raise self._damaged(f"{COMMIT} cannot be read ({type(e).__name__}: {e})") from e
        if not isinstance(c, dict):
            raise self._damaged(f"{COMMIT} holds a JSON {type(c).__name__}, not an object")
        version = c.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ValueError(
                f"{self.path} was written by a newer rnapaint (format {version} > {FORMAT_VERSION}); upgrade rnapaint."
            )
        try:
            self._n = int(c["n"])
            self._units: list[str] = [str(u) for u in c["units"]]
            self._slides: list[str] = [str(v) for v in c["slides"]]
            self._done: dict[str, int] = {str(k): int(v) for k, v in dict(c["done"]).items()}
            self._failed: dict[str, str] = {str(k): str(v) for k, v in dict(c["failed"]).items()}
            self.tile_size = int(c["tile_size"])
        except KeyError as e:
            raise self._damaged(f"{COMMIT} has no {e.args[0]!r} entry") from e
        except (TypeError, ValueError) as e:
            raise self._damaged(f"{COMMIT} holds a malformed entry ({e})") from e
        if self._n < 0 or self.tile_size <= 0:
            raise self._damaged(f"{COMMIT} records {self._n} rows of {self.tile_size}px tiles")
        self._unit_index = {u: i for i, u in enumerate(self._units)}
        self._slide_index = {s: i for i, s in enumerate(self._slides)}
        self._pending = 0  # rows written since the last commit
        self._n_committed = self._n

    def _commit(self) -> None:
        _write_json_atomic(
            self.path / COMMIT,
            {
                "n": self._n_committed,
                "units": self._units,
                "slides": self._slides,
                "done": self._done,
                "failed": self._failed,
                "format_version": FORMAT_VERSION,
                "tile_size": self.tile_size,
            },
        )

    def __len__(self) -> int:
        """Rows written (by this handle, committed or not: the writer sees its own pending rows)."""
        return self._n

    def __repr__(self) -> str:
        return (
            f"TileStore({str(self.path)!r}, {self._n} tiles of {self.tile_size}px, "
            f"{len(self._units)} units, {len(self._done)} slides done, {len(self._failed)} failed)"
        )

    @property
    def images(self):
        """The zarr array of tiles (rows past ``len(self)`` are uncommitted)."""
        return self._group["images"]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            if not -self._n <= idx < self._n:
                raise IndexError(f"tile {idx} out of range for {self._n} tiles.")
            return self.reader.read([int(idx) % self._n])[0]
        if isinstance(idx, slice):
            idx = np.arange(self._n)[idx]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and (idx.min() < -self._n or idx.max() >= self._n):
            raise IndexError(f"tile indices out of range for {self._n} tiles.")
        idx = idx % max(self._n, 1)
        if idx.size == 0:
            return np.zeros((0, self.tile_size, self.tile_size, 3), np.uint8)
        return self.reader.read(idx)

    @property
    def reader(self) -> TileChunkReader:
        """Fast whole-tile reads (:class:`~rnapaint.io.tile_chunks.TileChunkReader`); no bounds checks."""
        # A read-only handle's array never grows: keep one reader. A writer's array does, and zarr's
        # array object caches its shape, so take a fresh one.
        if self.mode == "r" and getattr(self, "_reader", None) is not None:
            return self._reader
        images = self.images
        reader = TileChunkReader(images, missing="error" if images.attrs.get(_EVERY_CHUNK) else "fill")
        if self.mode == "r":
            self._reader = reader
        return reader

    @property
    def table(self) -> pd.DataFrame:
        """Per-tile table (``unit``, ``slide``, ``x``, ``y``, ``mpp``) of the rows this handle sees: the committed
        ones, and for a writer also its rows not committed yet (as ``len``)."""
        n = self._n
        cols = {k: self._column(k) for k in _COLUMNS}
        return pd.DataFrame(
            {
                "unit": pd.Categorical.from_codes(cols["unit_code"], categories=self._units)
                if n
                else pd.Categorical([], categories=self._units),
                "slide": pd.Categorical.from_codes(cols["slide_code"], categories=self._slides)
                if n
                else pd.Categorical([], categories=self._slides),
                "x": cols["x"],
                "y": cols["y"],
                "mpp": cols["mpp"],
            }
        )

    @property
    def attrs(self):
        """The zarr group's attributes (JSON), e.g. the settings a writer recorded."""
        return self._group.attrs

    @property
    def units(self) -> list[str]:
        """Names of the expression units that have tiles."""
        return list(self._units)

    def indices(self, unit: str) -> np.ndarray:
        """Row indices of one unit's tiles."""
        if unit not in self._unit_index:
            raise KeyError(f"unit {unit!r} has no tiles in {self.path}.")
        return np.flatnonzero(self._column("unit_code") == self._unit_index[unit])

    def unit_codes(self) -> np.ndarray:
        """``(n,)`` int32 unit code of every committed tile (index into :attr:`units`)."""
        return self._column("unit_code")

    def _column(self, name: str) -> np.ndarray:
        """The committed rows of one table column; a chunk that is lost or cannot be decoded is damage."""
        try:
            return np.asarray(self._group[name][: self._n])
        except Exception as e:  # a codec's RuntimeError/ValueError (a cut or flipped chunk, a bad checksum)
            raise self._damaged(f"its {name!r} column cannot be read ({type(e).__name__}: {e})") from e

    @property
    def done_slides(self) -> dict[str, int]:
        """Slides fully written, with their tile counts (a rerun skips them)."""
        return dict(self._done)

    @property
    def failures(self) -> pd.DataFrame:
        """Slides that could not be tiled and why."""
        return pd.DataFrame({"slide": list(self._failed), "error": list(self._failed.values())})

    # ------------------------------------------------------------------ writing
    def _code(self, names: list[str], index: dict[str, int], values) -> np.ndarray:
        out = np.empty(len(values), np.int32)
        for i, v in enumerate(map(str, values)):
            if v not in index:
                index[v] = len(names)
                names.append(v)
            out[i] = index[v]
        return out

    def append(
        self, images: np.ndarray, table: pd.DataFrame, slide_done: str | None = None, commit: bool = True
    ) -> None:
        """Append tiles and their table rows, then commit them (optionally marking a slide finished).

        Parameters
        ----------
        images
            ``(k, H, W, 3)`` uint8 with ``H == W == tile_size``.
        table
            ``k`` rows with columns ``unit``, ``slide``, ``x``, ``y``, ``mpp``.
        slide_done
            Slide to record as finished in the same commit.
        commit
            ``False`` writes the rows without committing them, so that several batches of one slide
            become visible together (a kill before the final commit leaves none of them).
        """
        if self.mode != "a":
            raise ValueError("The store is open read-only; open it with mode='a' to append.")
        images = np.asarray(images)
        k = len(images)
        ts = self.tile_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (ts, ts, 3):
            raise ValueError(f"images must be uint8 (k, {ts}, {ts}, 3), got {images.dtype} {images.shape}.")
        missing = {"unit", "slide", "x", "y", "mpp"} - set(table.columns)
        if len(table) != k or missing:
            raise ValueError(f"table must have {k} rows and columns unit, slide, x, y, mpp (missing {missing}).")
        n0, n1 = self._n, self._n + k
        xy = {c: _origins(table[c], c) for c in ("x", "y")}
        units, slides = list(self._units), list(self._slides)
        uidx, sidx = dict(self._unit_index), dict(self._slide_index)
        cols = {
            "x": xy["x"],
            "y": xy["y"],
            "mpp": table["mpp"].to_numpy(np.float32),
            "unit_code": self._code(units, uidx, table["unit"]),
            "slide_code": self._code(slides, sidx, table["slide"]),
        }
        if k:
            # Store all-black tiles too (zarr skips chunks equal to the fill value), so that a missing
            # chunk can be told from a black tile.
            arr = self.images.with_config({"write_empty_chunks": True})
            if arr.shape[0] < n1:
                arr.resize((n1, ts, ts, 3))
            arr[n0:n1] = images
            for name, values in cols.items():
                # Every chunk is stored (zeros too), so that a lost chunk file is damage, not unit 0.
                a = self._group[name].with_config({"write_empty_chunks": True})
                if a.shape[0] < n1:
                    a.resize((n1,))
                a[n0:n1] = values
        self._units, self._slides, self._unit_index, self._slide_index = units, slides, uidx, sidx
        self._n = n1
        self._pending += k
        if slide_done is not None:
            self._done[str(slide_done)] = self._pending + int(self._done.get(str(slide_done), 0))
            self._failed.pop(str(slide_done), None)
        if commit:
            self._n_committed = self._n
            self._commit()
            self._pending = 0

    def mark_failed(self, slide: str, error: str) -> None:
        """Record a slide that could not be tiled (a rerun tries it again)."""
        if self.mode != "a":
            raise ValueError("The store is open read-only.")
        self._failed[str(slide)] = str(error)
        self._commit()


# ---------------------------------------------------------------------- building a whole store aside
# A writer that makes a store in one go (spot patches, generated tiles) builds it in a hidden sibling
# folder and renames it into place at the end, so that a failure part-way leaves nothing at the path
# (and never a half store that blocks the rerun): rnapaint.pp.spot_tiles and
# rnapaint.models.GeneratedTileWriter use these.


def staging_path(path: str | os.PathLike) -> Path:
    """The hidden sibling folder ``.<name>.partial-<host>-<pid>`` where this process builds a store for ``path``.

    The host is in the name because a pid tells whether a process is alive only on its own machine
    (a folder on a shared file system may be another node's live staging store).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{_HOST}-{os.getpid()}")


_HOST = socket.gethostname().replace("-", "_") or "host"


def _dead_local_writer(folder: Path) -> bool:
    """Whether a ``.*.partial-[<host>-]<pid>`` folder was left by a process of this machine that is gone."""
    tail = folder.name.rsplit(".partial-", 1)[-1]
    host, _, pid = tail.rpartition("-")
    if host not in ("", _HOST) or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not _alive(int(pid))


def _old_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def recover_replacement(path: str | os.PathLike) -> None:
    """Finish or undo a :func:`move_into_place` that was killed, and remove staging folders of dead processes.

    ``.<name>.old`` without ``<name>``: killed between the two renames, the old store goes back.
    Both present: killed while deleting the old one, which is removed.
    """
    path = Path(path)
    old = _old_path(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    if os.name != "posix":  # os.kill(pid, 0) only probes a process on POSIX
        return
    for tmp in path.parent.glob(".*.partial-*"):  # any store's, not only this path's: killed runs leave them
        if tmp.is_dir() and _dead_local_writer(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's; anything else: cannot tell, keep its folder
        return True
    return True


def check_replaceable(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise unless a new store may go to ``path``.

    Free are: nothing there, an empty folder, a store whose creation was interrupted (no tile); a
    tile store only with ``overwrite``. Anything else raises whatever ``overwrite`` says.

    Raises
    ------
    FileExistsError
        If ``path`` is a store and ``overwrite`` is ``False``, or is something other than a store.
    StoreBusyError
        If another writer holds the store at ``path``.
    """
    path = Path(path)
    recover_replacement(path)
    if not (path.exists() or path.is_symlink()):
        return
    kind = _existing_kind(path)
    if kind == "other":
        raise FileExistsError(
            f"{path} exists and is not a rnapaint TileStore ({COMMIT} is missing and it holds other files); "
            "rnapaint does not replace it, even with overwrite=True. Pick another path."
        )
    if kind == "store" and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    if kind != "empty":
        check_no_writer(path)  # never swap a store away under a writer filling it


def move_into_place(staged: str | os.PathLike, path: str | os.PathLike, overwrite: bool) -> None:
    """Rename the finished store ``staged`` to ``path``, replacing what :func:`check_replaceable` allows.

    The store being replaced is renamed aside to ``.<name>.old`` and deleted only once the new one
    is in place: a kill in between leaves it there for :func:`recover_replacement` to put back.
    """
    staged, path = Path(staged), Path(path)
    check_replaceable(path, overwrite)  # again: something may have appeared while the store was built
    old = _old_path(path)
    if path.exists() and _existing_kind(path) in ("empty", "unfinished"):
        shutil.rmtree(path)  # nothing of value, and a folder cannot be renamed onto a non-empty one
    if path.exists():
        os.replace(path, old)
    os.replace(staged, path)
    shutil.rmtree(old, ignore_errors=True)
