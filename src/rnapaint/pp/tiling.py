"""Whole-slide tiling for bulk samples (RNA-GAN, RNA-CDM): tissue mask, grid, filters, a TileStore."""

from __future__ import annotations

import os
import shutil
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._logging import logger
from ..io.slides import Slide, SlideError
from ..io.tile_store import COMMIT, TileStore

STAGING = ".staging"  # inside the store: each slide is tiled here, then merged in one commit


@dataclass(frozen=True)
class TilingParams:
    """Settings shared by every slide of one tiling run."""

    tile_size: int = 256
    mpp: float = 0.5
    max_tiles: int | None = 4000
    max_background: float = 0.6
    min_contrast: float = 8.0
    seed: int = 0
    thumbnail_size: int = 2048

    def __post_init__(self) -> None:
        _check_params(self.tile_size, self.mpp, self.max_tiles, self.max_background)


def _check_params(tile_size, mpp, max_tiles, max_background) -> None:
    """Raise a ValueError naming the first tiling setting that cannot work."""
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size <= 0:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size!r}.")
    if not np.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"mpp must be a positive number of µm per pixel (0.5 for 20×), got {mpp!r}.")
    if max_tiles is not None and (
        isinstance(max_tiles, bool) or not isinstance(max_tiles, (int, np.integer)) or max_tiles < 1
    ):
        raise ValueError(f"max_tiles must be an integer ≥ 1, or None for every tile, got {max_tiles!r}.")
    if not 0.0 <= max_background <= 1.0:
        raise ValueError(f"max_background is a fraction of a tile and must lie in [0, 1], got {max_background!r}.")


def _check_slide_mpp(slide_mpp) -> None:
    values = slide_mpp.items() if isinstance(slide_mpp, dict) else [("slide_mpp", slide_mpp)]
    for name, v in values:
        if v is None:
            continue
        try:
            ok = np.isfinite(float(v)) and float(v) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            where = "slide_mpp" if name == "slide_mpp" else f"slide_mpp[{name!r}]"
            raise ValueError(f"{where} must be a positive number of µm per pixel at level 0, got {v!r}.")


def _gray(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def _saturation(rgb: np.ndarray) -> np.ndarray:
    # Channel-wise maximum/minimum: much faster than reducing over a last axis of length 3.
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = np.maximum(np.maximum(r, g), b).astype(np.float32)
    mn = np.minimum(np.minimum(r, g), b).astype(np.float32)
    return (mx - mn) / np.maximum(mx, 1.0)


def background_thresholds(thumbnail: np.ndarray) -> tuple[float, float]:
    """Grey level and saturation above / below which a pixel is glass, from Otsu on the thumbnail.

    Otsu's grey threshold is clipped to [160, 235] so that a slide that is nearly all tissue (Otsu
    then splits light from dark tissue) or nearly all glass still gets a sensible cut.
    """
    from skimage.filters import threshold_otsu

    g = _gray(thumbnail).ravel()
    try:
        t = float(threshold_otsu(g))
    except ValueError:  # a single grey level: a blank slide
        t = 220.0
    return float(np.clip(t, 160.0, 235.0)), 0.1


def glass_mask(rgb: np.ndarray, grey_threshold: float, sat_threshold: float = 0.1) -> np.ndarray:
    """Glass pixels — bright and unsaturated — of RGB images ``(..., 3)`` → bool ``(...)``."""
    return (_gray(rgb) >= grey_threshold) & (_saturation(rgb) <= sat_threshold)


def background_fraction(tiles: np.ndarray, grey_threshold: float, sat_threshold: float = 0.1) -> np.ndarray:
    """Fraction of glass pixels — bright and unsaturated — per tile ``(..., H, W, 3)`` → ``(...)``."""
    return glass_mask(tiles, grey_threshold, sat_threshold).mean(axis=(-1, -2))


def contrast(tiles: np.ndarray) -> np.ndarray:
    """Standard deviation of the grey level per tile ``(..., H, W, 3)`` → ``(...)``."""
    return _gray(tiles).std(axis=(-1, -2))


def _level_for(slide: Slide, scale: float) -> int:
    """Coarsest level whose resolution is still at least the target's (downsample ≤ scale)."""
    best = 0
    for i, d in enumerate(slide.level_downsamples):
        if d <= scale * (1 + 1e-3):
            best = i if d >= slide.level_downsamples[best] else best
    return best


def plan_tiles(slide: Slide, params: TilingParams) -> tuple[pd.DataFrame, dict[str, Any]]:
    """All grid positions of a slide at the target µm/px, with the tissue mask's verdict.

    Returns
    -------
    ``(grid, info)``: grid has one row per non-overlapping tile (``x``, ``y`` in level-0 pixels,
    ``mask_tissue`` = tissue fraction of its footprint in the thumbnail mask, ``candidate``);
    info holds the level, scale and thresholds used.
    """
    if slide.mpp is None:
        raise SlideError(
            f"{slide.path.name} records no µm/px: give it with slide_mpp= (e.g. slide_mpp=0.25 or "
            f"slide_mpp={{'{slide.path.name}': 0.25}})."
        )
    scale = params.mpp / slide.mpp  # level-0 pixels per target pixel
    if scale < 1 - 1e-3:
        raise SlideError(
            f"{slide.path.name} is scanned at {slide.mpp:.3g} µm/px, coarser than the requested "
            f"{params.mpp:.3g} µm/px: tiles would be upsampled. Ask for mpp ≥ {slide.mpp:.3g}."
        )
    level = _level_for(slide, scale)
    foot = params.tile_size * scale
    w0, h0 = slide.dimensions
    nx, ny = int(w0 // foot), int(h0 // foot)
    thumb, tdown = slide.thumbnail(params.thumbnail_size)
    grey_t, sat_t = background_thresholds(thumb)
    mask = ~((_gray(thumb) >= grey_t) & (_saturation(thumb) <= sat_t))
    rows = []
    for j in range(ny):
        for i in range(nx):
            x0, y0 = i * foot, j * foot
            tx0, ty0 = int(x0 / tdown), int(y0 / tdown)
            tx1, ty1 = max(tx0 + 1, int((x0 + foot) / tdown)), max(ty0 + 1, int((y0 + foot) / tdown))
            rows.append((i, j, round(x0), round(y0), float(mask[ty0:ty1, tx0:tx1].mean())))
    grid = pd.DataFrame(rows, columns=["col", "row", "x", "y", "mask_tissue"])
    # The thumbnail is coarse: keep a margin, the exact decision is made on the tile's own pixels.
    grid["candidate"] = grid["mask_tissue"] >= (1.0 - params.max_background) - 0.15
    info = {
        "level": level,
        "scale": scale,
        "downsample": slide.level_downsamples[level],
        "grey_threshold": grey_t,
        "sat_threshold": sat_t,
        "footprint": foot,
    }
    return grid, info


def read_tile(slide: Slide, x: int, y: int, info: dict[str, Any], tile_size: int) -> np.ndarray:
    """One tile ``(tile_size, tile_size, 3)`` uint8 at the target µm/px, top-left ``(x, y)`` at level 0."""
    from PIL import Image

    d = info["downsample"]
    size = max(1, round(info["footprint"] / d))
    region = slide.read_region(x, y, info["level"], size, size)
    if size == tile_size:
        return region
    # Box filtering averages the level's pixels under each target pixel: right for downsampling, fast.
    return np.asarray(Image.fromarray(region).resize((tile_size, tile_size), Image.Resampling.BOX))


def tile_one_slide(
    path: str,
    unit: str,
    staging: str,
    params: TilingParams,
    slide_mpp: float | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Tile one slide into a staging TileStore; never raises (errors come back in the result).

    Runs in a worker process (or on a Dask worker): returns a small dict, the tiles stay on disk.
    ``path`` is opened; ``key`` (default ``path``) names the slide in the store.
    """
    key = path if key is None else key
    result: dict[str, Any] = {"slide": key, "unit": unit, "staging": staging, "n": 0, "error": None}
    try:
        with Slide(path, mpp=slide_mpp) as slide:
            grid, info = plan_tiles(slide, params)
            cand = grid[grid["candidate"]]
            rng = np.random.default_rng([params.seed, zlib.crc32(Path(path).name.encode())])
            order = rng.permutation(len(cand))
            limit = params.max_tiles if params.max_tiles is not None else len(cand)
            columns = ["unit", "slide", "x", "y", "mpp"]
            with TileStore.create(staging, params.tile_size, overwrite=True) as store:
                batch, meta, kept = [], [], 0
                for k in order:
                    if kept >= limit:
                        break
                    r = cand.iloc[k]
                    tile = read_tile(slide, int(r.x), int(r.y), info, params.tile_size)
                    bg = float(background_fraction(tile, info["grey_threshold"], info["sat_threshold"]))
                    if bg > params.max_background or float(contrast(tile)) < params.min_contrast:
                        continue
                    batch.append(tile)
                    meta.append((unit, key, int(r.x), int(r.y), params.mpp))
                    kept += 1
                    if len(batch) == 256:
                        store.append(np.stack(batch), pd.DataFrame(meta, columns=columns))
                        batch, meta = [], []
                if batch:
                    store.append(np.stack(batch), pd.DataFrame(meta, columns=columns))
            result.update(n=kept, n_grid=len(grid), n_candidates=len(cand), level=info["level"])
            if kept == 0:
                result["error"] = "no tissue: no tile passed the background and contrast filters"
    except Exception as e:  # one bad slide must not stop the batch
        result["error"] = f"{type(e).__name__}: {e}"
    return result


def _merge(store: TileStore, result: dict[str, Any]) -> int:
    """Copy a slide's staged tiles into the store in one commit (all of the slide or none of it)."""
    staged = TileStore.open(result["staging"])
    n = len(staged)
    table = staged.table
    # Keep tiles in grid order (top-left to bottom-right) so a slide's tiles are contiguous and sorted.
    order = np.lexsort((table["x"].to_numpy(), table["y"].to_numpy()))
    for start in range(0, n, 512):
        idx = order[start : start + 512]
        last = start + 512 >= n
        store.append(
            staged[idx],
            table.iloc[idx].reset_index(drop=True).astype({"unit": str, "slide": str}),
            slide_done=result["slide"] if last else None,
            commit=last,
        )
    shutil.rmtree(result["staging"], ignore_errors=True)
    return n


def tile_slides(
    adata: ad.AnnData,
    slide_key: str = "slide",
    store: str | os.PathLike = "tiles.zarr",
    tile_size: int = 256,
    mpp: float = 0.5,
    max_tiles: int | None = 4000,
    max_background: float = 0.6,
    min_contrast: float = 8.0,
    seed: int = 0,
    n_jobs: int = 1,
    client: Executor | Any = None,
    slide_mpp: float | dict[str, float] | None = None,
    progress_bar: bool = True,
    key_added: str = "tiles",
    copy: bool = False,
) -> ad.AnnData | None:
    """Cut each unit's whole-slide image into tissue tiles at a fixed µm/px and store them.

    For every observation, the slide at ``obs[slide_key]`` is opened (OpenSlide; PIL for plain
    images), an Otsu tissue mask is computed on a thumbnail, and a non-overlapping grid at ``mpp``
    µm/px (20× = 0.5) is read from the coarsest level that is still fine enough, resized when the
    level does not match exactly. Tiles with more than ``max_background`` glass or a grey-level
    standard deviation below ``min_contrast`` are dropped; at most ``max_tiles`` per slide are kept,
    drawn with ``seed``. Slides run in parallel processes (``n_jobs``) or on a Dask cluster
    (``client=``; anything with ``submit`` whose futures have ``result``). The run is resumable:
    slides already finished in the store are skipped, and a slide's tiles are committed at once,
    so a killed run never leaves a half slide. Slides are known by their real path
    (``os.path.realpath``: a relative and an absolute path, or a symlink, name one slide), which is
    what the store's table, finished and failure lists record; a unit that already has tiles in the
    store is never tiled again, even when its slide path changed. Each slide is tiled in
    ``<store>/.staging`` and merged from there; that folder is cleared when a run starts, so what a
    killed run left is removed (one run per store at a time). A slide that cannot be read, has no
    µm/px, or has no tissue is recorded in the store's failure table and the others go on. Settings
    are checked before anything is written.

    Parameters
    ----------
    adata
        One row per expression unit (bulk sample) with the slide path in ``obs[slide_key]``.
    slide_key
        obs column holding slide paths.
    store
        TileStore path (created if absent, empty, or left unfinished by a killed run; appended to
        when it is a store; any other existing folder raises).
    tile_size, mpp
        Tile edge in pixels (> 0) and its resolution in µm/px (> 0).
    max_tiles, max_background, min_contrast, seed
        Tile selection, see above: ``max_tiles`` ≥ 1 or ``None`` (every tile), ``max_background`` in
        [0, 1].
    n_jobs
        Worker processes (1: in this process).
    client
        A ``dask.distributed.Client`` or any ``concurrent.futures.Executor``.
    slide_mpp
        µm/px at level 0 (> 0) for slides that do not record it: one number, or slide path/name → value.
    progress_bar
        Show a progress bar over slides.
    key_added
        obs column ``n_{key_added}`` gets each unit's tile count; ``uns[key_added]`` the store path,
        settings and failure table.
    copy
        Record the counts on a copy of ``adata`` and return it (the tiles go to the store either way).

    Returns
    -------
    ``None`` or the copy; tiles go to the store.

    Raises
    ------
    ValueError
        For an impossible setting (``tile_size``, ``mpp``, ``max_tiles``, ``max_background``,
        ``slide_mpp``), a slide shared by several units, or a store tiled with other settings.
    FileExistsError
        If ``store`` is an existing folder that is not a tile store.
    """
    from tqdm.auto import tqdm

    # Every setting is checked before anything is written.
    _check_params(tile_size, mpp, max_tiles, max_background)
    _check_slide_mpp(slide_mpp)
    if slide_key not in adata.obs:
        raise ValueError(f"obs has no column {slide_key!r} with slide paths.")
    if not adata.obs_names.is_unique:
        dup_units = adata.obs_names[adata.obs_names.duplicated()]
        raise ValueError(f"obs names are the tiles' units and must be unique (e.g. {dup_units[0]!r} repeats).")
    no_slide = adata.obs[slide_key].isna().to_numpy()
    if no_slide.any():
        raise ValueError(
            f"{int(no_slide.sum())} observations have no slide path in obs[{slide_key!r}] (NaN; e.g. "
            f"{adata.obs_names[no_slide][0]!r}): tile only those with a slide, adata[adata.obs[{slide_key!r}].notna()]."
        )
    paths = adata.obs[slide_key].astype(str)
    # One slide under two spellings (relative/absolute, a symlink) is still one slide.
    keys = pd.Series([os.path.realpath(p) for p in paths], index=paths.index)
    dup = keys[keys.duplicated()]
    if len(dup):
        raise ValueError(
            f"{len(dup)} slides are shared by several observations (e.g. {dup.iloc[0]}); give each unit its own slide."
        )
    params = TilingParams(tile_size, mpp, max_tiles, max_background, min_contrast, seed)
    store_path = Path(store)
    ts = TileStore.open(store_path, "a") if (store_path / COMMIT).is_file() else TileStore.create(store_path, tile_size)
    with ts:  # holds the store's writer lock; released even when a check below raises
        if ts.tile_size != tile_size:
            raise ValueError(f"{store_path} holds {ts.tile_size}px tiles, not {tile_size}px.")
        # A resumed run must cut tiles the way the first did, or one store would mix resolutions.
        wanted = {k: v for k, v in asdict(params).items() if k != "thumbnail_size"}
        recorded = dict(ts.attrs.get("tiling", {}))
        differ = sorted(k for k in wanted if k in recorded and recorded[k] != wanted[k])
        if differ:
            was = ", ".join(f"{k}={recorded[k]}" for k in differ)
            raise ValueError(
                f"{store_path} was tiled with other settings ({was}); use the same settings to resume, "
                "or another store."
            )
        if not recorded:
            ts.attrs["tiling"] = wanted
        # Finished slides are known by their real path (stores written before kept the path as given).
        done_keys = {os.path.realpath(k) for k in ts.done_slides}
        have_tiles = set(ts.units)
        todo, elsewhere = [], []
        for u, p, k in zip(adata.obs_names, paths, keys, strict=True):
            if k in done_keys:
                continue
            if u in have_tiles:  # its tiles came from a slide recorded under another path: never tile a unit twice
                elsewhere.append(u)
                continue
            todo.append((u, p, k))
        if elsewhere:
            logger.warning(
                f"{len(elsewhere)} units already have tiles in {store_path} from a slide recorded under another "
                f"path (e.g. {elsewhere[0]!r}); they are not tiled again. Use another store to tile them anew."
            )
        logger.info(f"Tiling {len(todo)} slides ({len(paths) - len(todo)} already in {store_path}).")
        # Staging lives at one fixed place inside the store and is cleared at the start (this run holds the
        # writer lock), so what a killed run left there never piles up.
        staging_root = store_path / STAGING
        shutil.rmtree(staging_root, ignore_errors=True)
        staging_root.mkdir()

        def mpp_of(p: str, k: str) -> float | None:
            if isinstance(slide_mpp, dict):
                for name in (p, k, Path(p).name):
                    if name in slide_mpp:
                        return slide_mpp[name]
                return None
            return slide_mpp

        jobs = [(p, u, str(staging_root / f"s{i}.zarr"), params, mpp_of(p, k), k) for i, (u, p, k) in enumerate(todo)]
        own_pool = None
        try:
            if client is None and n_jobs > 1 and len(jobs) > 1:
                import multiprocessing as mp

                own_pool = client = ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn"))
            if client is None:
                results = (tile_one_slide(*j) for j in jobs)
            else:
                futures = [client.submit(tile_one_slide, *j) for j in jobs]
                results = (f.result() for f in futures)
            for res in tqdm(results, total=len(jobs), desc="tiling slides", disable=not progress_bar):
                if res["error"] is not None:
                    ts.mark_failed(res["slide"], res["error"])
                    logger.warning(f"Could not tile {res['slide']}: {res['error']}")
                else:
                    _merge(ts, res)
        finally:
            if own_pool is not None:
                own_pool.shutdown()
            shutil.rmtree(staging_root, ignore_errors=True)
    per_unit = np.bincount(ts.unit_codes(), minlength=len(ts.units))
    count_of = dict(zip(ts.units, per_unit.tolist(), strict=True))
    adata = adata.copy() if copy else adata
    adata.obs[f"n_{key_added}"] = np.array([count_of.get(u, 0) for u in adata.obs_names], dtype=int)
    failures = ts.failures
    adata.uns[key_added] = {"store": str(store_path), "params": asdict(params), "failures": failures.astype(str)}
    logger.info(
        f"{len(ts)} tiles in {store_path}; {len(failures)} slides failed. Adding "
        f"adata.obs['n_{key_added}'], adata.uns[{key_added!r}]"
    )
    return adata if copy else None
