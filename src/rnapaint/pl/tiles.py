"""A grid of tiles with labels, from arrays, an AnnData's obsm or a TileStore."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._figures import finish


def _gather(source: Any, key: str, groupby: str | None, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    if hasattr(source, "obsm"):  # AnnData with tiles (n_obs, k, H, W, 3)
        if key not in source.obsm:
            raise ValueError(f"adata.obsm has no {key!r}; tiles come from rp.pp.spot_tiles or rp.tl.generate.")
        arr = np.asarray(source.obsm[key])
        if arr.ndim == 4:
            arr = arr[:, None]
        rows = np.sort(rng.choice(len(arr), size=min(n, len(arr)), replace=False))
        labels = source.obs[groupby].astype(str).to_numpy() if groupby else np.asarray(source.obs_names)
        return arr[rows, 0], [str(labels[r]) for r in rows]
    if hasattr(source, "table") and hasattr(source, "tile_size"):  # TileStore
        table = source.table
        idx = np.sort(rng.choice(len(source), size=min(n, len(source)), replace=False))
        col = groupby or "unit"
        return source[idx], [str(v) for v in table[col].to_numpy()[idx]]
    arr = np.asarray(source)
    if arr.ndim == 5:
        arr = arr[:, 0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"tiles must have shape (n, H, W, 3) or (n, k, H, W, 3), got {arr.shape}.")
    idx = np.arange(min(n, len(arr)))
    return arr[idx], [str(i) for i in idx]


def tiles(
    tiles_or_adata: Any,
    key: str = "tiles",
    groupby: str | None = None,
    labels: Sequence[str] | None = None,
    n: int = 24,
    ncols: int = 8,
    seed: int = 0,
    title: str | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """Show tiles in a grid, each labelled by its unit, group or slide.

    Parameters
    ----------
    tiles_or_adata
        An array ``(n, H, W, 3)`` or ``(n, k, H, W, 3)`` uint8; an AnnData with ``obsm[key]``
        (first tile of each observation); or a :class:`~rnapaint.data.TileStore`.
    key
        obsm key when an AnnData is given.
    groupby
        obs column (AnnData) or table column (TileStore: ``unit``, ``slide``) for the labels.
    labels
        Explicit labels, one per shown tile (overrides ``groupby``).
    n, ncols
        How many tiles (drawn at random with ``seed`` from an AnnData or store) and columns.
    title
        Figure title.
    show, save
        Show the figure; save it to this path.

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    imgs, names = _gather(tiles_or_adata, key, groupby, n, seed)
    if labels is not None:
        names = [str(v) for v in labels][: len(imgs)]
    if len(imgs) == 0:
        raise ValueError("No tiles to show.")
    ncols = min(ncols, len(imgs))
    nrows = int(np.ceil(len(imgs) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, name in zip(axes.ravel(), imgs, names, strict=False):
        ax.imshow(img)
        ax.set_title(name if len(name) <= 18 else name[:8] + "…" + name[-8:], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, show, save)
