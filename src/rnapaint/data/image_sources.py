"""Images that crops are cut from: whole-slide images, image files, arrays, spatial AnnData, TileStores.

Every source is seen on its own pixel grid with a known µm/px and cut with :meth:`ImageSource.region`.
Whole-slide images stay on disk (OpenSlide reads the pyramid level that fits each crop); plain images
are decoded once and kept downscaled to the resolution the crops need, so loader workers share them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io.slides import Slide, SlideError
from ..io.tile_store import COMMIT, TileStore
from ..pp.tiling import background_thresholds, glass_mask

_THUMB = 1024  # thumbnail side for the tissue mask


def _check_rgb(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{name} has shape {img.shape}: an H&E image must be RGB (H, W, 3) or RGBA (H, W, 4).")
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.floating) or not np.isfinite(img).all():
            raise ValueError(f"{name} is {img.dtype}: give uint8 RGB, or float RGB in [0, 1] without NaN.")
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)  # scanpy keeps float images in [0, 1]
    img = img[..., :3]
    step = max(1, max(img.shape[:2]) // 512)  # a sample of pixels tells a greyscale image
    probe = img[::step, ::step].astype(np.int16)
    if np.ptp(probe, axis=2).max(initial=0) == 0:
        raise ValueError(f"{name} is greyscale (its three channels are equal): H&E crops must be colour images.")
    return img


def _check_mpp(mpp: Any, name: str) -> float:
    try:
        ok = mpp is not None and np.isfinite(float(mpp)) and float(mpp) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} has no usable µm/px ({mpp!r}): pass mpp= (e.g. 0.5 for a 20× scan).")
    return float(mpp)


class ImageSource:
    """One image on its own pixel grid: ``region(x, y, side, out)`` cuts and resizes a square.

    Build with :func:`image_sources`; subclasses hold an array or an open slide.

    Attributes
    ----------
    name
        Where the image came from (a path, ``library:key``, ``store[row]``).
    mpp
        µm per pixel of the grid ``region`` works on.
    width, height
        Size of that grid in pixels.
    """

    name: str
    mpp: float
    width: int
    height: int

    def region(self, x: float, y: float, side: float, out: int) -> np.ndarray:
        """``(out, out, 3)`` uint8: the square of ``side`` px whose top-left corner is ``(x, y)``, resized."""
        raise NotImplementedError

    def thumbnail(self) -> tuple[np.ndarray, float]:
        """A small RGB view and its downsample factor relative to this source's grid."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.width} × {self.height} px at {self.mpp:.3g} µm/px)"


def _resize(img: np.ndarray, out: int) -> np.ndarray:
    if img.shape[0] == out and img.shape[1] == out:
        return img
    from PIL import Image

    # Box filter when shrinking (no aliasing of nuclei edges), bicubic when enlarging.
    method = Image.Resampling.BOX if img.shape[0] > out else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(img).resize((out, out), method))


class ArraySource(ImageSource):
    """An image held in memory as ``(H, W, 3)`` uint8."""

    def __init__(self, image: np.ndarray, mpp: float, name: str = "array"):
        self.pixels = _check_rgb(image, name)
        self.mpp, self.name = _check_mpp(mpp, name), name
        self.height, self.width = self.pixels.shape[:2]

    def region(self, x: float, y: float, side: float, out: int) -> np.ndarray:
        s = max(1, round(side))
        x0, y0 = round(x), round(y)
        return _resize(self.pixels[y0 : y0 + s, x0 : x0 + s], out)

    def thumbnail(self) -> tuple[np.ndarray, float]:
        step = max(1, int(np.ceil(max(self.height, self.width) / _THUMB)))
        return self.pixels[::step, ::step], float(step)

    def coarsened(self, mpp: float) -> ArraySource:
        """This image box-downscaled to ``mpp`` where that is coarser (less memory, faster crops)."""
        if mpp <= self.mpp * 1.01:
            return self
        from PIL import Image

        f = self.mpp / mpp
        size = (max(1, round(self.width * f)), max(1, round(self.height * f)))
        small = np.asarray(Image.fromarray(self.pixels).resize(size, Image.Resampling.BOX))
        return ArraySource(small, self.mpp * self.width / size[0], self.name)


class SlideSource(ImageSource):
    """A whole-slide image read through OpenSlide at the pyramid level that suits each crop.

    The slide is opened lazily in each process (OpenSlide handles do not survive a fork), so a
    source can be handed to loader workers.
    """

    def __init__(self, path: str | os.PathLike, mpp: float | None = None):
        with Slide(path, mpp=mpp) as slide:
            self.mpp = _check_mpp(slide.mpp, str(path))
            self.width, self.height = slide.dimensions
            self.downsamples = slide.level_downsamples
        self.path, self.name, self._given_mpp = Path(path), str(path), mpp
        self._slide: Slide | None = None
        self._pid = -1

    def _open(self) -> Slide:
        if self._slide is None or self._pid != os.getpid():
            self._slide, self._pid = Slide(self.path, mpp=self._given_mpp), os.getpid()
        return self._slide

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_slide"} | {"_slide": None}

    def region(self, x: float, y: float, side: float, out: int) -> np.ndarray:
        slide = self._open()
        level = max((i for i, d in enumerate(self.downsamples) if d <= side / out * 1.001), default=0)
        d = self.downsamples[level]
        s = max(1, round(side / d))
        return _resize(slide.read_region(int(x), int(y), level, s, s), out)

    def thumbnail(self) -> tuple[np.ndarray, float]:
        return self._open().thumbnail(_THUMB)


class StoreTileSource(ArraySource):
    """One tile of a TileStore, read when a crop is cut (the store is never held in memory whole)."""

    def __init__(self, path: Path, row: int, mpp: float, tile_size: int):
        self.path, self.row, self.name = Path(path), int(row), f"{path}[{row}]"
        self.mpp, self.width, self.height = _check_mpp(mpp, self.name), int(tile_size), int(tile_size)

    @property
    def pixels(self) -> np.ndarray:
        store = _open_store(self.path)
        return store[self.row]

    def coarsened(self, mpp: float) -> StoreTileSource:
        return self  # a tile is small: resampled crop by crop


_STORES: dict[tuple[int, str], TileStore] = {}


def _open_store(path: Path) -> TileStore:
    """One read-only handle per process and store (handles do not survive a fork)."""
    key = (os.getpid(), str(path))
    if key not in _STORES:
        _STORES[key] = TileStore.open(path)
    return _STORES[key]


def _plain_image(path: Path, mpp: float | None, target_mpp: float | None = None) -> ArraySource:
    """A JPEG/PNG/TIFF decoded once, straight at ``target_mpp`` where that is coarser (JPEG draft mode)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # H&E scans are legitimately huge
    mpp = _check_mpp(mpp, str(path))
    try:
        with Image.open(path) as img:
            if img.mode in ("L", "LA", "I", "I;16", "F", "1"):
                raise ValueError(f"{path} is a greyscale image ({img.mode}): H&E crops must be colour images.")
            w, h = img.size
            if target_mpp is not None and target_mpp > mpp * 1.01:
                size = (max(1, round(w * mpp / target_mpp)), max(1, round(h * mpp / target_mpp)))
                img.draft("RGB", size)  # JPEG: decode at the smallest DCT scale that is still large enough
                img = img.convert("RGB").resize(size, Image.Resampling.BOX)
                mpp = mpp * w / size[0]
            pixels = np.asarray(img.convert("RGB"))
    except ValueError:
        raise
    except Exception as e:  # PIL's UnidentifiedImageError, truncated files, OSError
        raise SlideError(f"Cannot read {path} as an image: {e}") from e
    return ArraySource(pixels, mpp, str(path))


def _spatial_sources(adata: Any, mpp: float | None, target_mpp: float | None) -> list[ImageSource]:
    """Each library's full-resolution H&E (its source file when present, else its hires/lowres copy)."""
    spatial = adata.uns.get("spatial")
    if not isinstance(spatial, dict) or not spatial:
        raise ValueError("the AnnData has no images in uns['spatial'] (scanpy's layout): nothing to crop from.")
    out: list[ImageSource] = []
    for lib, entry in spatial.items():
        meta = entry.get("metadata", {}) or {}
        full_mpp = meta.get("mpp", mpp)
        path = meta.get("source_image_path")
        if path and Path(path).is_file():
            out.append(image_sources(path, mpp=full_mpp, target_mpp=target_mpp)[0])
            continue
        images = entry.get("images", {}) or {}
        key = "hires" if "hires" in images else "lowres" if "lowres" in images else None
        if key is None:
            continue  # a library without an image (counts only)
        scale = float(entry["scalefactors"][f"tissue_{key}_scalef"])
        full_mpp = _check_mpp(full_mpp, f"uns['spatial'][{lib!r}]")
        out.append(ArraySource(images[key], full_mpp / scale, f"{lib}:{key}"))
    if not out:
        raise ValueError("no library in uns['spatial'] has an image: nothing to crop from.")
    return out


def _stack_sources(tiles: np.ndarray, mpp: Any, name: str) -> list[ImageSource]:
    tiles = np.asarray(tiles)
    if tiles.ndim == 5:
        tiles = tiles.reshape(-1, *tiles.shape[2:])
    mpps = np.broadcast_to(np.asarray(mpp, dtype=object), (len(tiles),))
    return [ArraySource(t, m, f"{name}[{i}]") for i, (t, m) in enumerate(zip(tiles, mpps, strict=True))]


def image_sources(obj: Any, mpp: float | None = None, target_mpp: float | None = None) -> list[ImageSource]:
    """Turn what a user has into :class:`ImageSource` s.

    Parameters
    ----------
    obj
        A path to an image file (JPEG, PNG, TIFF) or a whole-slide image (SVS, NDPI…, read with
        OpenSlide); an RGB array ``(H, W, 3)``; a stack of tiles ``(n, H, W, 3)`` or ``(n, k, H, W, 3)``;
        a spatial AnnData (every library's H&E in ``uns['spatial']``, full resolution where its source
        file is recorded); a :class:`~rnapaint.io.TileStore` (each tile, at the table's µm/px); an
        :class:`ImageSource`; or a list of these.
    mpp
        µm/px of ``obj`` at full resolution, where it does not say itself (plain images, arrays,
        Visium libraries without ``metadata['mpp']``); a whole-slide image's own value is used otherwise.
    target_mpp
        The µm/px crops will be cut at: plain images are decoded straight to it where it is coarser.

    Returns
    -------
    One source per image.

    Raises
    ------
    ValueError
        For greyscale or non-RGB images, an unknown µm/px, or an AnnData without images.
    rnapaint.io.SlideError
        For a file that is missing or cannot be read.
    """
    if isinstance(obj, ImageSource):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [s for o in obj for s in image_sources(o, mpp, target_mpp)]
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if (path / COMMIT).is_file():
            return image_sources(TileStore.open(path), mpp, target_mpp)
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            return [_plain_image(path, mpp, target_mpp)]
        try:
            return [SlideSource(path, mpp)]
        except SlideError:
            if not path.is_file():
                raise
            return [_plain_image(path, mpp, target_mpp)]  # a plain TIFF that OpenSlide does not take
    if isinstance(obj, TileStore):
        table = obj.table
        m = table["mpp"].to_numpy(float) if mpp is None else np.full(len(table), float(mpp))
        return [StoreTileSource(obj.path, i, m[i], obj.tile_size) for i in range(len(obj))]
    if hasattr(obj, "uns") and hasattr(obj, "obs"):
        return _spatial_sources(obj, mpp, target_mpp)
    arr = np.asarray(obj)
    if arr.ndim == 3:
        return [ArraySource(arr, _check_mpp(mpp, "the image"), "array")]
    if arr.ndim in (4, 5):
        return _stack_sources(arr, mpp, "tiles")
    if arr.dtype != object and arr.ndim in (1, 2):
        raise ValueError(f"the image has shape {arr.shape}: an H&E image must be RGB (H, W, 3) or RGBA (H, W, 4).")
    raise TypeError(f"cannot crop from a {type(obj).__name__} of shape {getattr(arr, 'shape', '?')}.")


def glass_thresholds(thumb: np.ndarray) -> tuple[float, float]:
    """The tiler's glass thresholds for an image from its thumbnail (a fixed grey level for a single small tile)."""
    grey, sat = background_thresholds(thumb)
    if max(thumb.shape[:2]) < 64:  # a single tile: Otsu on it would split its own tissue in two
        grey = 220.0
    return grey, sat


def tissue_corners(source: ImageSource, side: float, max_background: float) -> np.ndarray:
    """Top-left corners ``(m, 2)`` (x, y, in source pixels) of ``side``-px squares that hold tissue.

    Squares on a half-overlapping grid are judged on the thumbnail with the tiler's glass test
    (bright, unsaturated pixels; grey level from Otsu); those with at most ``max_background`` glass
    are kept. Crops are then jittered around them.
    """
    thumb, factor = source.thumbnail()
    if source.width < side or source.height < side:
        raise ValueError(
            f"{source.name} is {source.width} × {source.height} px at {source.mpp:.3g} µm/px, smaller than a "
            f"crop ({side:.0f} px there): lower the crop size or raise its µm/px."
        )
    grey, sat = glass_thresholds(thumb)
    glass = glass_mask(thumb, grey, sat).astype(np.float64)
    # Summed-area table: the glass fraction of every cell in one pass.
    sat_table = np.pad(glass.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ts = max(1, int(side / factor))  # crop side on the thumbnail
    step = max(1.0, side / 2)
    xs = np.arange(0, max(1.0, source.width - side) + 1e-9, step)
    ys = np.arange(0, max(1.0, source.height - side) + 1e-9, step)
    gx = np.minimum((xs / factor).astype(int), glass.shape[1] - 1)
    gy = np.minimum((ys / factor).astype(int), glass.shape[0] - 1)
    x1, y1 = np.minimum(gx + ts, glass.shape[1]), np.minimum(gy + ts, glass.shape[0])
    area = (y1 - gy)[:, None] * (x1 - gx)[None, :]
    total = sat_table[y1][:, x1] - sat_table[gy][:, x1] - sat_table[y1][:, gx] + sat_table[gy][:, gx]
    iy, ix = np.nonzero(total / np.maximum(area, 1) <= max_background)
    return np.stack([xs[ix], ys[iy]], 1).astype(np.float64).reshape(-1, 2)
