"""Put an AnnData on a fixed gene panel, as RNA-GAN does for external cohorts."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._logging import logger
from .._validation import check_nonempty, check_unique


def _reindex_columns(x, idx: np.ndarray, found: np.ndarray, n: int):
    """Columns ``idx`` of x at positions ``found``, zeros elsewhere; keeps sparse sparse."""
    if sp.issparse(x):
        # A 0/1 selection matrix maps old columns onto panel positions; missing columns stay empty.
        cols = np.flatnonzero(found)
        sel = sp.csr_matrix((np.ones(len(cols), dtype=x.dtype), (idx[found], cols)), shape=(x.shape[1], n))
        return sp.csr_matrix(x @ sel)
    x = np.asarray(x)
    out = np.zeros((x.shape[0], n), dtype=x.dtype)
    out[:, found] = x[:, idx[found]]
    return out


def align_genes(
    adata: ad.AnnData,
    genes: Sequence[str] | pd.Index,
    min_overlap: float = 0.5,
) -> ad.AnnData:
    """Reorder an AnnData to a gene panel, zero-filling genes it lacks.

    Parameters
    ----------
    adata
        Expression of shape ``(n_obs, n_vars)``; left unchanged.
    genes
        The panel (e.g. a model's ``var_names`` or the 19,198 protein-coding genes of RNA-GAN).
    min_overlap
        Smallest accepted fraction of the panel found in ``adata``; below it a ValueError is raised,
        since a model fed mostly zero-filled genes produces nonsense.

    Returns
    -------
    A new AnnData ``(n_obs, len(genes))`` with ``.X`` and every layer reordered, ``var['rp_missing']``
    marking the zero-filled genes, and the overlap recorded in ``uns['rnapaint']['align_genes']``.
    """
    check_nonempty(adata)
    if adata.X is None:
        raise ValueError(
            "adata has no X: align_genes reorders the expression in X (and its layers); set adata.X first."
        )
    genes = pd.Index([str(g) for g in genes])
    if len(genes) == 0:
        raise ValueError("The gene panel is empty.")
    check_unique(genes, "genes in the panel")
    check_unique(adata.var_names, "gene names in adata")
    idx = adata.var_names.get_indexer(genes)
    found = idx >= 0
    fraction = float(found.mean())
    if fraction < min_overlap:
        raise ValueError(
            f"Only {found.sum()} of {len(genes)} panel genes ({fraction:.1%}) are in adata, below "
            f"min_overlap={min_overlap:.0%}. Are the gene identifiers of the same kind (symbols vs "
            f"Ensembl ids; e.g. panel {genes[0]!r} vs data {adata.var_names[0]!r})?"
        )
    var = pd.DataFrame(index=genes)
    for col in adata.var.columns:
        var[col] = adata.var[col].reindex(genes).to_numpy()
    var["rp_missing"] = ~found
    out = ad.AnnData(
        X=_reindex_columns(adata.X, idx, found, len(genes)),
        obs=adata.obs.copy(),
        var=var,
        obsm={k: v.copy() for k, v in adata.obsm.items()},
        uns={k: v for k, v in adata.uns.items()},
    )
    for k, v in adata.layers.items():
        out.layers[k] = _reindex_columns(v, idx, found, len(genes))
    info = {
        "n_panel": len(genes),
        "n_found": int(found.sum()),
        "fraction": fraction,
        "missing": list(genes[~found][:50]),
    }
    out.uns["rnapaint"] = {**dict(adata.uns.get("rnapaint", {})), "align_genes": info}
    logger.info(
        f"Aligned to {len(genes)} genes: {found.sum()} found ({fraction:.1%}), "
        f"{(~found).sum()} zero-filled (var['rp_missing'])."
    )
    return out
