"""One H&E patch per spatial-transcriptomics spot (GenVinci's spot → patch pairs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._logging import logger
from ..io.slides import Slide
from ..io.spatial import library_of_each_spot
from ..io.tile_store import TileStore, check_replaceable, move_into_place, staging_path


class _Source:
    """Full-resolution pixels of one library: its source image file, or its hires image upscaled."""

    def __init__(self, lib: str, entry: dict[str, Any]):
        meta = entry.get("metadata", {}) or {}
        path = meta.get("source_image_path")
        self.lib = lib
        self.mpp = float(meta["mpp"]) if meta.get("mpp") is not None else np.nan
        if path and Path(path).is_file():
            self.slide = Slide(path)
            self.name = str(path)
            self.scale = 1.0
            self.width, self.height = self.slide.dimensions
        else:
            images = entry.get("images", {})
            key = "hires" if "hires" in images else "lowres" if "lowres" in images else None
            if key is None:
                raise ValueError(f"adata.uns['spatial'][{lib!r}] has neither a source image nor hires/lowres.")
            self.slide = None
            self.image = np.asarray(images[key])
            if self.image.ndim != 3 or self.image.shape[2] not in (3, 4):
                # [..., :3] of a greyscale (H, W) image would cut its width, not its channels.
                raise ValueError(
                    f"adata.uns['spatial'][{lib!r}]['images'][{key!r}] has shape {self.image.shape}: the image "
                    "must be RGB (H, W, 3) or RGBA (H, W, 4). Convert a greyscale image first, e.g. "
                    "np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)."
                )
            if self.image.dtype != np.uint8:  # scanpy stores float images in [0, 1]
                self.image = (np.clip(self.image, 0, 1) * 255).round().astype(np.uint8)
            self.image = self.image[..., :3]
            self.scale = float(entry["scalefactors"][f"tissue_{key}_scalef"])
            self.name = f"{lib}:{key}"
            self.height = self.image.shape[0] / self.scale
            self.width = self.image.shape[1] / self.scale

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc) -> None:
        if self.slide is not None:  # an open slide holds a file handle (and openslide's caches)
            self.slide.close()

    def patch(self, x0: float, y0: float, size: int) -> np.ndarray:
        if self.slide is not None:
            return self.slide.read_region(int(x0), int(y0), 0, size, size)
        from PIL import Image

        s = self.scale
        box = (x0 * s, y0 * s, (x0 + size) * s, (y0 + size) * s)
        img = Image.fromarray(self.image)
        return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC, box=box))


def _resized(tile: np.ndarray, out: int) -> np.ndarray:
    if tile.shape[0] == out:
        return tile
    from PIL import Image

    return np.asarray(Image.fromarray(tile).resize((out, out), Image.Resampling.BOX))


def spot_tiles(
    adata: ad.AnnData,
    size: int = 224,
    library_id: str | None = None,
    library_key: str | None = None,
    store: str | os.PathLike | None = None,
    spatial_key: str = "spatial",
    key_added: str = "tiles",
    out_size: int | None = None,
    overwrite: bool = False,
    progress_bar: bool = True,
    copy: bool = False,
) -> ad.AnnData | None:
    """Cut a ``size × size`` patch centred on every spot from the tissue image.

    The image is found as scanpy/squidpy keep it: ``adata.uns['spatial'][library_id]`` with
    ``images`` (``hires``/``lowres``), ``scalefactors`` and, when present,
    ``metadata['source_image_path']`` — the full-resolution image, which is then read instead of the
    downscaled one. Spot centres are ``obsm[spatial_key]`` in full-resolution pixels. A spot whose
    patch would leave the image is flagged in ``obs['{key_added}_outside']`` (its row in ``obsm`` is
    left black and it is not written to a store): nothing is silently padded. So are the spots of a
    library that has no image in ``uns['spatial']`` (e.g. HER2ST sections C1, A1, E1): they are
    also marked in ``obs['{key_added}_no_image']``, and a warning names those libraries.

    Parameters
    ----------
    adata
        Spots with ``obsm[spatial_key]`` and ``uns['spatial']`` (e.g. ``rp.datasets.her2st(images=True)``,
        ``sc.read_visium``, or :func:`rnapaint.io.from_spatialdata`).
    size
        Patch edge in full-resolution pixels.
    library_id, library_key
        Which library's image to use: one for all spots, or an obs column naming each spot's
        (default: the first of ``library_id``, ``section``, ``sample``, ``batch`` that names the
        libraries). Values of that column without an entry in ``uns['spatial']`` are libraries
        without an image, see above.
    store
        Write patches to this TileStore (unit = obs name, so obs names must be unique) instead of
        ``obsm``. The store is built in a hidden folder beside it and moved into place once every
        library is done: a run that fails part-way leaves nothing at ``store``.
    spatial_key
        obsm key of the spot centres.
    key_added
        ``obsm[key_added]`` gets ``(n_obs, 1, S, S, 3)`` uint8 when no store is given (not
        ``spatial_key``: the coordinates are kept).
    out_size
        Resize each patch to ``out_size`` pixels (box filter), e.g. 64 for a small generator; the
        patch still covers ``size`` full-resolution pixels.
    overwrite
        Replace an existing ``store`` (otherwise a FileExistsError). Only a tile store (or an empty
        folder) is replaced: anything else at ``store`` raises.
    progress_bar
        Show a progress bar over libraries.
    copy
        Return a copy with the patches instead of adding them to ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``.

    Raises
    ------
    ValueError
        For a ``size`` or ``out_size`` that is not a positive integer, ``key_added == spatial_key``,
        duplicated obs names with ``store``, missing or non-finite coordinates, or an image that is
        not RGB.
    FileExistsError
        If ``store`` exists and ``overwrite`` is ``False``, or is something other than a tile store.
    """
    from tqdm.auto import tqdm

    # Every setting is checked before anything is written.
    for name, value in (("size", size), ("out_size", out_size)):
        if value is None and name == "out_size":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer number of pixels, got {value!r}.")
    if key_added == spatial_key:
        raise ValueError(
            f"key_added={key_added!r} is the obsm key of the spot coordinates (spatial_key): the patches would "
            "replace them. Pick another key_added (default 'tiles')."
        )
    if store is not None:
        if not adata.obs_names.is_unique:
            dup = adata.obs_names[adata.obs_names.duplicated()]
            raise ValueError(
                f"obs names are the tiles' units and must be unique (e.g. {dup[0]!r} repeats); "
                "run adata.obs_names_make_unique() first."
            )
        check_replaceable(store, overwrite)
    adata = adata.copy() if copy else adata
    if "spatial" not in adata.uns or not adata.uns["spatial"]:
        raise ValueError("adata.uns['spatial'] holds no image: load one (e.g. rp.datasets.her2st(images=True)).")
    if spatial_key not in adata.obsm:
        raise ValueError(f"adata.obsm has no {spatial_key!r} spot coordinates.")
    xy = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
        raise ValueError(f"obsm[{spatial_key!r}] must be finite (n_obs, 2) coordinates.")
    libs = list(adata.uns["spatial"].keys())
    spot_lib = library_of_each_spot(adata, libs, library_id, library_key, allow_missing=True)
    no_image = ~pd.Series(spot_lib).isin(libs).to_numpy()
    missing_libs = sorted(pd.unique(spot_lib[no_image]).tolist())
    if missing_libs:
        logger.warning(
            f"{int(no_image.sum())} spots of {len(missing_libs)} libraries without an image in "
            f"adata.uns['spatial'] ({', '.join(missing_libs)}) get no patch; they are flagged in "
            f"adata.obs['{key_added}_outside'] and adata.obs['{key_added}_no_image']."
        )
    x0 = np.floor(xy[:, 0] - size / 2)
    y0 = np.floor(xy[:, 1] - size / 2)
    outside = no_image.copy()
    edge = int(out_size if out_size is not None else size)
    patches = None if store is not None else np.zeros((adata.n_obs, 1, edge, edge, 3), np.uint8)
    # Built aside and moved into place at the end: a failure part-way leaves no half store to block a rerun.
    staged = staging_path(store) if store is not None else None
    ts = TileStore.create(staged, edge, overwrite=True) if staged is not None else None
    sources = {}
    try:
        for lib in tqdm(pd.unique(spot_lib[~no_image]), desc="spot patches", disable=not progress_bar):
            with _Source(lib, adata.uns["spatial"][lib]) as src:
                sources[lib] = src.name
                rows = np.flatnonzero(spot_lib == lib)
                out = (x0[rows] < 0) | (y0[rows] < 0) | (x0[rows] + size > src.width) | (y0[rows] + size > src.height)
                outside[rows] = out
                inside = rows[~out]
                tiles = np.zeros((len(inside), edge, edge, 3), np.uint8)
                for j, r in enumerate(inside):
                    tiles[j] = _resized(src.patch(x0[r], y0[r], size), edge)
                if ts is not None:
                    ts.append(
                        tiles,
                        pd.DataFrame(
                            {
                                "unit": adata.obs_names[inside],
                                "slide": src.name,
                                "x": x0[inside].astype(np.int64),
                                "y": y0[inside].astype(np.int64),
                                "mpp": src.mpp * size / edge,
                            }
                        ),
                        slide_done=src.name,
                    )
                else:
                    patches[inside, 0] = tiles
        if ts is not None:
            ts.close()
            move_into_place(staged, store, overwrite)
    finally:
        if ts is not None:
            ts.close()  # release the writer lock, also when a patch cannot be read
            shutil.rmtree(staged, ignore_errors=True)  # gone already when the store was moved in place
    adata.obs[f"{key_added}_outside"] = outside
    adata.obs[f"{key_added}_no_image"] = no_image
    if patches is not None:
        adata.obsm[key_added] = patches
    adata.uns[key_added] = {
        "size": int(size),
        "out_size": int(edge),
        "sources": sources,
        "n_outside": int(outside.sum()),
        "no_image": missing_libs,
        "store": str(store) if store is not None else None,
    }
    where = f"store {store}" if store is not None else f"adata.obsm[{key_added!r}]"
    logger.info(
        f"{adata.n_obs - outside.sum()} spot patches of {size}px to {where}; {outside.sum()} spots "
        f"flagged in adata.obs['{key_added}_outside'] (patch leaves the image, or no image)."
    )
    return adata if copy else None
