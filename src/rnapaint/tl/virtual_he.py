"""``rp.tl.virtual_he``: a virtual H&E section painted spot by spot and stitched on the section's physical scale."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
from scipy.spatial import cKDTree

from .._logging import logger

# Spot geometry of the two grids (µm): legacy ST arrays (HER2ST) and Visium.
GRIDS = {"st": {"pitch": 200.0, "diameter": 100.0}, "visium": {"pitch": 100.0, "diameter": 55.0}}
GLASS = 242  # what uncovered slide looks like: near white


def _grid_of(xy: np.ndarray, grid: str | None) -> tuple[str, float]:
    """The grid type and its pitch in coordinate units, from the spots' nearest-neighbour distances."""
    if len(xy) < 2:
        raise ValueError("a virtual section needs at least 2 spots to know the grid's spacing.")
    d, _ = cKDTree(xy).query(xy, k=min(7, len(xy)))
    pitch = float(np.median(d[:, 1]))
    if pitch <= 0:
        raise ValueError("several spots share one position: the grid's spacing cannot be measured.")
    if grid is None:  # inside a hexagonal grid a spot has 6 neighbours at the pitch, in a square one never more than 4
        neighbours = np.percentile((d[:, 1:] < pitch * 1.15).sum(1), 90)
        grid = "visium" if neighbours >= 5 else "st"
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)} or None (detected), got {grid!r}.")
    return grid, pitch


def _library_rows(adata: ad.AnnData, library_id: str | None, library_key: str | None) -> tuple[str, np.ndarray]:
    if library_key is None:
        library_key = next((k for k in ("library_id", "section", "sample", "batch") if k in adata.obs), None)
    if library_key is None or library_key not in adata.obs:
        if library_id is None:
            libs = list((adata.uns.get("spatial") or {}).keys())
            library_id = libs[0] if len(libs) == 1 else "virtual"
        return str(library_id), np.arange(adata.n_obs)
    values = adata.obs[library_key].astype(str).to_numpy()
    libs = list(dict.fromkeys(values))
    if library_id is None:
        if len(libs) > 1:
            raise ValueError(f"adata holds several libraries in obs[{library_key!r}] ({libs[:5]}): pass library_id=.")
        library_id = libs[0]
    if str(library_id) not in libs:
        raise ValueError(f"library_id {library_id!r} is not in obs[{library_key!r}] (it holds {libs[:8]}).")
    return str(library_id), np.flatnonzero(values == str(library_id))


def _feather(side: int) -> np.ndarray:
    """``(side, side)`` blending weights: 1 inside, falling linearly to a small positive value at the edge."""
    ramp = np.minimum(np.arange(side) + 1, np.arange(side)[::-1] + 1) / max(1.0, side / 8)
    w = np.minimum(1.0, ramp)
    return np.outer(w, w).astype(np.float32)


def _paste(acc: np.ndarray, weight: np.ndarray | None, tile: np.ndarray, w: np.ndarray, x0: int, y0: int) -> None:
    """Add ``w · tile`` into ``acc`` and ``w`` into ``weight`` at ``(x0, y0)`` (clipped to the canvas)."""
    h, wd = tile.shape[:2]
    ys, xs = slice(max(0, y0), min(acc.shape[0], y0 + h)), slice(max(0, x0), min(acc.shape[1], x0 + wd))
    ty, tx = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    acc[ys, xs] += w[ty, tx, None] * tile[ty, tx]
    if weight is not None:
        weight[ys, xs] += w[ty, tx]


def _resize_tiles(tiles: np.ndarray, side: int) -> np.ndarray:
    if tiles.shape[-2] == side:
        return tiles.astype(np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(tiles.reshape(-1, *tiles.shape[-3:]))).permute(0, 3, 1, 2).float()
    t = F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return t.permute(0, 2, 3, 1).numpy().reshape(*tiles.shape[:-3], side, side, 3)


def virtual_he(
    adata: ad.AnnData,
    model: Any,
    library_id: str | None = None,
    *,
    library_key: str | None = None,
    spatial_key: str = "spatial",
    grid: str | None = None,
    tile_um: float | None = None,
    mpp: float = 2.0,
    n_draws: int = 1,
    seed: int = 0,
    batch_size: int = 64,
    key_added: str = "virtual_he",
    keep_tiles: bool = True,
    overwrite: bool = False,
    progress_bar: bool = True,
    **generate_kwargs: Any,
) -> None:
    """Paint every spot of a section from its expression and stitch the patches into a virtual H&E image.

    Each spot's patch is placed at its centre on the section's physical scale — the spot pitch of the
    grid (legacy ST: 200 µm, Visium: 100 µm) tells how many µm a coordinate unit is — with
    overlapping patches blended and uncovered slide left as glass. The image goes where scanpy and
    squidpy look for one, so ``sc.pl.spatial(adata, img_key=key_added, library_id=...)`` draws the
    spots on it; :func:`rnapaint.io.to_spatialdata` turns it into a SpatialData image element.

    Parameters
    ----------
    adata
        Spots with expression the model reads and centres in ``obsm[spatial_key]`` (any unit: the
        grid's pitch sets the scale).
    model
        A trained generator (:class:`~rnapaint.models.TileGAN`, :class:`~rnapaint.models.CascadedDiffusion`,
        or anything with ``generate(adata, n_per_obs=, seed=, batch_size=)`` and ``config['image_size']``).
    library_id, library_key
        Which section to paint: one value of ``obs[library_key]`` (default: the first of
        ``library_id``, ``section``, ``sample``, ``batch`` in obs; without one, all spots).
    spatial_key
        obsm key of the spot centres.
    grid
        ``"st"`` or ``"visium"``; default: detected from the number of nearest neighbours (4 or 6).
    tile_um
        Physical side of a painted patch (default: the grid's pitch, so that patches meet).
    mpp
        µm per pixel of the stitched image.
    n_draws
        Draws per spot: the image is their mean, and ``images[f'{key_added}_spread']`` the per-pixel
        spread (standard deviation over draws, mean over channels, × 2, as grey uint8) — where the
        model is unsure what the tissue looks like.
    seed, batch_size, **generate_kwargs
        Passed to the model's ``generate``; spots are painted ``batch_size`` at a time and pasted at
        once, so memory holds the canvas and one batch.
    key_added
        The image key in ``uns['spatial'][library_id]['images']`` (with ``tissue_{key_added}_scalef``
        in its scale factors); ``uns[key_added]`` records the settings.
    keep_tiles
        Also keep the first draw of every spot in ``obsm[f'tiles_{key_added}']`` ``(n_obs, 1, H, W, 3)``
        (zeros for spots of other libraries).
    overwrite
        Replace an existing image of that key.
    progress_bar
        A bar over the batches.

    Raises
    ------
    ValueError
        For spots without coordinates, a library that is not there, a model that does not paint
        tiles, or an existing image without ``overwrite``.
    """
    from tqdm.auto import tqdm

    from .._validation import check_count

    n_draws, batch_size = check_count(n_draws, "n_draws"), check_count(batch_size, "batch_size")
    if not hasattr(model, "generate") or "image_size" not in getattr(model, "config", {}):
        raise ValueError(
            f"model must be a trained tile generator (TileGAN, CascadedDiffusion), got {type(model).__name__}."
        )
    if spatial_key not in adata.obsm:
        raise ValueError(f"adata.obsm has no {spatial_key!r}: the spots have no coordinates to place patches at.")
    lib, rows = _library_rows(adata, library_id, library_key)
    xy = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[rows, :2]
    if not np.isfinite(xy).all():
        raise ValueError(f"{int((~np.isfinite(xy)).any(1).sum())} spots of {lib!r} have no coordinates (NaN).")
    entry = adata.uns.setdefault("spatial", {}).setdefault(lib, {"images": {}, "scalefactors": {}, "metadata": {}})
    if key_added in entry.get("images", {}) and not overwrite:
        raise ValueError(f"uns['spatial'][{lib!r}]['images'] already holds {key_added!r}; pass overwrite=True.")
    grid, pitch = _grid_of(xy, grid)
    um_per_unit = GRIDS[grid]["pitch"] / pitch
    tile_um = float(tile_um or GRIDS[grid]["pitch"])
    side = max(2, round(tile_um / mpp))
    scalef = um_per_unit / mpp  # coordinate units → image pixels
    half = tile_um / um_per_unit / 2
    hgt, wid = (int(np.ceil((xy[:, i].max() + half) * scalef)) + 1 for i in (1, 0))
    acc = np.zeros((hgt, wid, 3), np.float32)
    weight = np.zeros((hgt, wid), np.float32)
    spread = np.zeros((hgt, wid), np.float32) if n_draws > 1 else None
    w = _feather(side)
    size = int(model.config["image_size"])
    kept = np.zeros((adata.n_obs, 1, size, size, 3), np.uint8) if keep_tiles else None
    for i in tqdm(range(0, len(rows), batch_size), desc=f"painting {lib}", disable=not progress_bar):
        part = rows[i : i + batch_size]
        tiles = model.generate(adata[part], n_per_obs=n_draws, seed=seed, batch_size=batch_size, **generate_kwargs)
        if kept is not None:
            kept[part] = tiles[:, :1]
        big = _resize_tiles(tiles, side)  # (b, n_draws, side, side, 3)
        mean, sd = big.mean(1), big.std(1).mean(-1, keepdims=True)
        for j, (cx, cy) in enumerate(xy[i : i + batch_size] * scalef):
            x0, y0 = round(cx - side / 2), round(cy - side / 2)
            _paste(acc, weight, mean[j], w, x0, y0)
            if spread is not None:
                _paste(spread[..., None], None, sd[j], w, x0, y0)
    covered = weight > 0
    img = np.full((hgt, wid, 3), GLASS, np.uint8)
    img[covered] = np.clip(acc[covered] / weight[covered, None], 0, 255).round().astype(np.uint8)
    entry.setdefault("images", {})[key_added] = img
    sf = entry.setdefault("scalefactors", {})
    sf[f"tissue_{key_added}_scalef"] = scalef
    sf.setdefault("spot_diameter_fullres", GRIDS[grid]["diameter"] / um_per_unit)
    if spread is not None:
        grey = np.zeros((hgt, wid), np.uint8)
        grey[covered] = np.clip(2 * spread[covered] / weight[covered], 0, 255).round().astype(np.uint8)
        entry["images"][f"{key_added}_spread"] = np.repeat(grey[..., None], 3, axis=2)
        sf[f"tissue_{key_added}_spread_scalef"] = scalef
    if kept is not None:
        adata.obsm[f"tiles_{key_added}"] = kept
    adata.uns[key_added] = {
        "library_id": lib,
        "grid": grid,
        "um_per_unit": um_per_unit,
        "tile_um": tile_um,
        "mpp": float(mpp),
        "n_draws": n_draws,
        "seed": int(seed),
        "model": repr(model),
    }
    logger.info(
        f"Painted {len(rows)} spots of {lib!r} ({grid} grid, {um_per_unit:.3g} µm a coordinate unit) into "
        f"uns['spatial'][{lib!r}]['images'][{key_added!r}] ({wid} × {hgt} px at {mpp:g} µm/px)"
    )
