"""UMAP of real, reconstructed and synthetic profiles in one embedding (RNA-GAN, Fig. 2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ._figures import finish


def latent_umap(
    adata: ad.AnnData,
    groupby: str,
    synthetic: ad.AnnData | Sequence[ad.AnnData] | None = None,
    model: Any = None,
    key: str = "vae",
    reconstructed: bool = True,
    n_pcs: int = 50,
    seed: int = 0,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """Real, reconstructed and synthetic profiles in one UMAP, one panel each, coloured by group.

    The UMAP is fitted on the expression of all three together (PCA → neighbours → UMAP through
    scanpy) so that the panels share coordinates: a good model puts its reconstructions and
    synthetic profiles where the real ones of the same group lie.

    Parameters
    ----------
    adata
        Real expression (the model's input units) with ``obs[groupby]``.
    groupby
        obs column for colours (e.g. ``"cohort"``).
    synthetic
        AnnData(s) from :func:`rnapaint.tl.synthetic_expression` or :func:`rnapaint.tl.shift`
        (their ``obs[groupby]`` colours them; shifted profiles take their target group).
    model
        The β-VAE for the reconstructions; default the one of ``adata.uns[key]``.
    key
        uns key of the model.
    reconstructed
        Include the reconstructions of ``adata``.
    n_pcs
        Principal components before the neighbour graph.
    seed
        UMAP's random state.
    show, save
        Show the figure; save it to this path.

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    if groupby not in adata.obs:
        raise ValueError(f"obs has no column {groupby!r}.")
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    blocks = [("real", x, adata.obs[groupby].astype(str).to_numpy())]
    if reconstructed:
        if model is None:
            from ..tl import get_model  # pl may read models a tool made; it never trains one

            model = get_model(adata, key)
        blocks.append(("reconstructed", model.reconstruct(adata), blocks[0][2]))
    if synthetic is not None:
        synth = [synthetic] if isinstance(synthetic, ad.AnnData) else list(synthetic)
        xs, gs = [], []
        for s in synth:
            if not s.var_names.equals(adata.var_names):
                raise ValueError("synthetic profiles must have adata's genes, in order.")
            col = "rp_shifted_to" if "rp_shifted_to" in s.obs else groupby
            xs.append(np.asarray(s.X))
            gs.append(s.obs[col].astype(str).to_numpy())
        blocks.append(("synthetic", np.vstack(xs), np.concatenate(gs)))
    n_total = sum(len(b[1]) for b in blocks)
    joint = ad.AnnData(
        X=np.vstack([b[1] for b in blocks]).astype(np.float32),
        obs=pd.DataFrame(
            {
                "kind": np.concatenate([[b[0]] * len(b[1]) for b in blocks]),
                "group": np.concatenate([b[2] for b in blocks]),
            },
            index=[f"p{i}" for i in range(n_total)],
        ),
    )
    sc.pp.pca(joint, n_comps=min(n_pcs, joint.n_obs - 1, joint.n_vars - 1), random_state=seed)
    sc.pp.neighbors(joint, random_state=seed)
    sc.tl.umap(joint, random_state=seed)
    emb = joint.obsm["X_umap"]
    groups = list(pd.unique(blocks[0][2]))
    groups += [g for g in pd.unique(joint.obs["group"]) if g not in groups]
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    colors = {g: cmap(i % cmap.N) for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 4.2), squeeze=False, sharex=True, sharey=True)
    for ax, (kind, _, _) in zip(axes[0], blocks, strict=True):
        ax.scatter(emb[:, 0], emb[:, 1], s=4, c="0.88", linewidths=0)
        sel = (joint.obs["kind"] == kind).to_numpy()
        g = joint.obs["group"].to_numpy()[sel]
        ax.scatter(emb[sel, 0], emb[sel, 1], s=8, c=[colors[v] for v in g], linewidths=0)
        ax.set_title(f"{kind} (n={sel.sum()})")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], ls="", marker="o", color=colors[g], label=g) for g in groups]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title=groupby)
    fig.supxlabel("UMAP 1")
    fig.supylabel("UMAP 2")
    fig.tight_layout()
    return finish(fig, show, save)
