"""The virtual H&E section that :func:`rnapaint.tl.virtual_he` painted, beside the real one where there is one."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._figures import finish


def _panel(ax, entry: dict, key: str, title: str) -> None:
    img = np.asarray(entry["images"][key])
    s = float(entry["scalefactors"][f"tissue_{key}_scalef"])
    # Drawn in the spots' coordinate units, so the spots of every panel land on their place.
    extent = (0, img.shape[1] / s, img.shape[0] / s, 0)
    if key.endswith("_spread"):  # a grey map: one channel, its own colour range
        im = ax.imshow(img[..., 0], extent=extent, cmap="magma", vmin=0, vmax=max(1, int(img.max())))
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="2 × s.d. over draws (0–255)")
    else:
        ax.imshow(img, extent=extent, interpolation="antialiased")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def virtual_he(
    adata: Any,
    library_id: str | None = None,
    *,
    key: str = "virtual_he",
    real_key: str = "hires",
    color: str | None = None,
    spread: bool = False,
    spot_size: float = 6.0,
    zoom_to_spots: bool = True,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """The virtual section, the real H&E beside it where the library has one, and optionally the spread map.

    Parameters
    ----------
    adata
        Spots with an image written by :func:`rnapaint.tl.virtual_he` in ``uns['spatial'][library_id]``.
    library_id
        The section (default: the one ``uns[key]`` records).
    key, real_key
        Image keys of the virtual and the real section.
    color
        An obs column to draw the spots in (labels or numbers); ``None`` draws no spots.
    spread
        Add a panel of the per-pixel spread over draws (``n_draws > 1``).
    spot_size
        Marker size of the spots.
    zoom_to_spots
        Frame the spots rather than the whole image.
    show, save
        Show when matplotlib is interactive and nothing is saved; save atomically.

    Returns
    -------
    The Figure.
    """
    import matplotlib.pyplot as plt

    lib = library_id or (adata.uns.get(key) or {}).get("library_id")
    spatial = adata.uns.get("spatial") or {}
    if lib not in spatial or key not in spatial[lib].get("images", {}):
        raise ValueError(f"no {key!r} image for library {lib!r}: run rp.tl.virtual_he first.")
    entry = spatial[lib]
    panels = [(key, "virtual H&E")]
    if real_key in entry["images"] and f"tissue_{real_key}_scalef" in entry["scalefactors"]:
        panels.append((real_key, "real H&E"))
    if spread and f"{key}_spread" in entry["images"]:
        panels.append((f"{key}_spread", "spread over draws"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    lib_col = next((c for c in ("library_id", "section", "sample", "batch") if c in adata.obs), None)
    rows = np.flatnonzero(adata.obs[lib_col].astype(str).to_numpy() == str(lib)) if lib_col else np.arange(adata.n_obs)
    xy = np.asarray(adata.obsm["spatial"])[rows, :2]
    for ax, (k, title) in zip(axes[0], panels, strict=True):
        _panel(ax, entry, k, title)
        if color is not None:
            values = adata.obs[color].iloc[rows]
            if values.dtype.kind in "biuf":
                ax.scatter(*xy.T, c=values.to_numpy(float), s=spot_size, cmap="viridis", linewidths=0)
            else:
                for cat in sorted(values.astype(str).unique()):
                    m = (values.astype(str) == cat).to_numpy()
                    ax.scatter(*xy[m].T, s=spot_size, label=cat, linewidths=0)
        if zoom_to_spots and len(xy):
            pad = 0.08 * np.ptp(xy, axis=0).max() + 1
            ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
            ax.set_ylim(xy[:, 1].max() + pad, xy[:, 1].min() - pad)
    if color is not None and adata.obs[color].dtype.kind not in "biuf":
        axes[0, -1].legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(f"{lib}: painted from expression", fontsize=10)
    fig.tight_layout()
    return finish(fig, show, save)
