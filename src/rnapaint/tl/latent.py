"""Latent-space tools of RNA-GAN's Fig. 2: reconstruction error, synthetic profiles, group shifts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._logging import logger
from .._validation import check_expression
from . import _registry
from .vae import _uns_key, get_model


def _model_and_latent(adata: ad.AnnData, model: Any, key: str) -> tuple[Any, np.ndarray]:
    """The model and the latents of ``adata``: ``obsm['X_<key>']`` when that model wrote them, else encoded."""
    own = get_model(adata, key) if model is None else None
    model = own if model is None else model
    # Decoded profiles are labelled with adata's genes: they must be the model's, in its order.
    model.check_genes(adata)
    obsm_key = f"X_{_uns_key(key)}"
    entry = adata.uns.get(_uns_key(key), {})
    wrote_them = own is not None or _registry.lookup(entry.get("model_uid", "")) is model
    if wrote_them and obsm_key in adata.obsm and adata.obsm[obsm_key].shape[1] == model.config["latent_dim"]:
        return model, np.asarray(adata.obsm[obsm_key], dtype=np.float32)
    return model, model.get_latent(adata)


def _group_mask(adata: ad.AnnData, groupby: str | Sequence[str], group: Any) -> np.ndarray:
    cols = [groupby] if isinstance(groupby, str) else list(groupby)
    values = [group] if isinstance(groupby, str) else list(group)
    if len(values) != len(cols):
        raise ValueError(f"group {group!r} must give one value per groupby column {cols}.")
    mask = np.ones(adata.n_obs, bool)
    for col, val in zip(cols, values, strict=True):
        if col not in adata.obs:
            raise ValueError(f"obs has no column {col!r}; available: {list(adata.obs.columns)}.")
        mask &= (adata.obs[col].astype(str) == str(val)).to_numpy()
    if not mask.any():
        raise ValueError(f"No observations with obs{cols} == {values}.")
    return mask


def _decoded_anndata(
    model: Any, z: np.ndarray, obs: pd.DataFrame, adata: ad.AnnData, kind: str, key: str
) -> ad.AnnData:
    x = model.decode(z)
    out = ad.AnnData(X=x.astype(np.float32), obs=obs, var=adata.var.copy())
    out.obsm[f"X_{_uns_key(key)}"] = z.astype(np.float32)
    out.obs["rp_kind"] = pd.Categorical([kind] * len(obs))
    out.uns["rnapaint"] = {k: v for k, v in adata.uns.get("rnapaint", {}).items() if k in ("zscore", "log1p")}
    return out


def reconstruct(
    adata: ad.AnnData,
    model: Any = None,
    groupby: str | None = None,
    key: str = "vae",
    mape_floor: float = 0.1,
    key_added: str = "reconstruction",
    copy: bool = False,
) -> ad.AnnData | None:
    """Reconstruction error of each sample and group (RMSE and MAPE), as RNA-GAN reports it.

    RMSE is in the model's input units (z-scores). MAPE is on the original scale (z-scores turned
    back with ``var['rp_mean']``/``var['rp_std']``), over entries whose true value is at least
    ``mape_floor`` in magnitude (the ratio is meaningless near zero).

    Parameters
    ----------
    adata
        z-scored expression with the model's genes.
    model
        A trained BetaVAE; default the one of ``adata.uns[key]``.
    groupby
        obs column to summarise by (e.g. ``"split"`` or ``"cohort"``).
    key
        uns key of the model (from :func:`rnapaint.tl.vae`).
    mape_floor
        Smallest absolute true value counted in MAPE.
    key_added
        Prefix of the obs columns (``{key_added}_rmse``, ``{key_added}_mape``) and uns key.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` or the copy; ``uns[key_added]`` holds ``rmse``, ``mape`` (pooled over all samples) and a
    per-group table ``per_group`` (DataFrame: ``n``, ``rmse``, ``mape``).
    """
    check_expression(adata)
    model = get_model(adata, key) if model is None else model
    recon = model.reconstruct(adata).astype(np.float64)
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)
    sq = (recon - x) ** 2
    if "rp_mean" in adata.var and "rp_std" in adata.var:
        mean, std = adata.var["rp_mean"].to_numpy(np.float64), adata.var["rp_std"].to_numpy(np.float64)
        orig, orig_hat = x * std + mean, recon * std + mean
    else:
        orig, orig_hat = x, recon
    counted = np.abs(orig) >= mape_floor
    ape = np.where(counted, np.abs(orig_hat - orig) / np.where(counted, np.abs(orig), 1.0), 0.0)
    n_counted = counted.sum(1)
    per_sample_rmse = np.sqrt(sq.mean(1))
    per_sample_mape = np.where(n_counted > 0, ape.sum(1) / np.maximum(n_counted, 1), np.nan)

    def summary(rows: np.ndarray) -> dict[str, float]:
        return {
            "n": int(rows.sum()),
            "rmse": float(np.sqrt(sq[rows].mean())),
            "mape": float(ape[rows].sum() / max(1, n_counted[rows].sum())),
        }

    everything = np.ones(adata.n_obs, bool)
    result: dict[str, Any] = summary(everything)
    if groupby is not None:
        if groupby not in adata.obs:
            raise ValueError(f"obs has no column {groupby!r}.")
        labels = adata.obs[groupby].astype(str).to_numpy()
        table = pd.DataFrame({g: summary(labels == g) for g in pd.unique(labels)}).T
        table.index.name = groupby
        result["per_group"] = table
    adata = adata.copy() if copy else adata
    adata.obs[f"{key_added}_rmse"] = per_sample_rmse.astype(np.float32)
    adata.obs[f"{key_added}_mape"] = per_sample_mape.astype(np.float32)
    adata.uns[key_added] = result
    logger.info(
        f"Reconstruction RMSE {result['rmse']:.3f} (z-score units), MAPE {result['mape']:.3f}; adding "
        f"adata.obs['{key_added}_rmse'], adata.obs['{key_added}_mape'], adata.uns[{key_added!r}]"
    )
    return adata if copy else None


def synthetic_expression(
    adata: ad.AnnData,
    groupby: str | Sequence[str],
    group: Any,
    n: int = 100,
    model: Any = None,
    key: str = "vae",
    spread: str = "prior",
    scale: float = 0.3,
    seed: int = 0,
) -> ad.AnnData:
    """New profiles of a group: its latent centroid plus Gaussian draws, decoded.

    ``z = centroid + scale · s ⊙ ε`` with ``ε ~ N(0, I)``. With ``spread="prior"`` (default),
    ``s = 1``: prior draws around the centroid, as RNA-GAN describes. With a small β the posterior
    means of real samples spread far less than the prior (per-dimension standard deviation ≈ 0.3 on
    TCGA with β = 0.005), so full-width prior draws (``scale=1``) land off the data — on TCGA 22 %
    of them are then classified as another cohort — hence the default ``scale=0.3``.
    ``spread="group"`` uses ``s`` = the per-dimension standard deviation of the group's own latent
    means (a diagonal Gaussian fitted to the group): more diverse, less faithful.

    Parameters
    ----------
    adata
        Expression with the model's genes and ``obsm['X_<key>']`` (computed if missing).
    groupby, group
        obs column and the group whose centroid is used; or several columns and a tuple of values,
        e.g. ``["cohort", "sample_type"]`` and ``("LUSC", "tumor")`` (a cohort's tumours and
        normals are two clusters, and the midpoint of two clusters is no real profile).
    n
        Number of profiles.
    model
        A trained BetaVAE; default the one of ``adata.uns[key]``.
    key
        uns key of the model.
    spread
        ``"group"`` or ``"prior"``, see above.
    scale
        Multiplies the spread (default 0.3 of the prior).
    seed
        Random seed.

    Returns
    -------
    A new AnnData ``(n, n_genes)`` in the model's units, obs ``[groupby] = group`` and
    ``rp_kind = 'synthetic'``, ``obsm['X_<key>']`` the latents.
    """
    check_expression(adata)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    mask = _group_mask(adata, groupby, group)
    model, z = _model_and_latent(adata, model, key)
    if spread not in ("group", "prior"):
        raise ValueError(f"spread must be 'group' or 'prior', got {spread!r}.")
    centroid = z[mask].mean(0)
    s = z[mask].std(0) if spread == "group" and mask.sum() > 1 else np.ones(z.shape[1], np.float32)
    rng = np.random.default_rng(seed)
    draws = centroid + scale * s * rng.standard_normal((n, z.shape[1])).astype(np.float32)
    cols = [groupby] if isinstance(groupby, str) else list(groupby)
    vals = [group] if isinstance(groupby, str) else list(group)
    tag = "_".join(map(str, vals))
    obs = pd.DataFrame(
        {c: [str(v)] * n for c, v in zip(cols, vals, strict=True)}, index=[f"synthetic_{tag}_{i}" for i in range(n)]
    )
    return _decoded_anndata(model, draws.astype(np.float32), obs, adata, "synthetic", key)


def shift(
    adata: ad.AnnData,
    groupby: str,
    source: str,
    target: str,
    model: Any = None,
    key: str = "vae",
    subset: np.ndarray | pd.Series | None = None,
) -> ad.AnnData:
    """Move profiles of ``source`` toward ``target`` by the difference of their latent centroids.

    ``z' = z + (centroid(target) − centroid(source))``, decoded: RNA-GAN's latent transfer (e.g.
    normal → tumour within a tissue).

    Parameters
    ----------
    adata
        Expression with the model's genes; centroids are computed over all of it (pass a view such
        as ``adata[adata.obs.cohort == 'BRCA']`` to shift within a tissue).
    groupby, source, target
        obs column and the two groups.
    model
        A trained BetaVAE; default the one of ``adata.uns[key]``.
    key
        uns key of the model.
    subset
        Boolean mask of the observations to shift (default all of ``source``).

    Returns
    -------
    A new AnnData with one shifted profile per shifted observation (its obs copied,
    ``rp_shifted_to = target``, ``rp_kind = 'shifted'``).
    """
    check_expression(adata)
    src, tgt = _group_mask(adata, groupby, source), _group_mask(adata, groupby, target)
    model, z = _model_and_latent(adata, model, key)
    delta = z[tgt].mean(0) - z[src].mean(0)
    rows = src if subset is None else np.asarray(subset, dtype=bool)
    if rows.shape != (adata.n_obs,):
        raise ValueError(f"subset must be a boolean mask of length {adata.n_obs}.")
    if not rows.any():
        raise ValueError("subset selects no observations.")
    obs = adata.obs.loc[rows].copy()
    obs["rp_shifted_to"] = str(target)
    obs.index = [f"{i}_to_{target}" for i in obs.index]
    return _decoded_anndata(model, z[rows] + delta, obs, adata, "shifted", key)
