"""log1p and per-gene z-scores fitted on the training split (statistics kept with the genes)."""

from __future__ import annotations

import warnings
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._logging import logger
from .._validation import check_expression, check_finite, check_nonnegative


def _rp_uns(adata: ad.AnnData) -> dict[str, Any]:
    if "rnapaint" not in adata.uns:
        adata.uns["rnapaint"] = {}
    return adata.uns["rnapaint"]


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _looks_logged(x) -> bool:
    v = x.data if sp.issparse(x) else np.asarray(x).ravel()
    if v.size == 0:
        return False
    sample = v[:: max(1, v.size // 200_000)]
    non_integer = bool(np.any(np.abs(sample - np.round(sample)) > 1e-6))
    return non_integer and float(v.max()) < 30.0


def log1p(
    adata: ad.AnnData,
    layer: str | None = None,
    force: bool = False,
    copy: bool = False,
) -> ad.AnnData | None:
    """Natural ``log(1 + x)`` of counts, refusing data that already looks log-transformed.

    Parameters
    ----------
    adata
        Counts in ``.X`` (or ``layers[layer]``), shape ``(n_obs, n_vars)``.
    layer
        Read counts from this layer instead of ``.X``; the result always goes to ``.X``.
    force
        Transform even when the values look logged already (non-integer and all below 30).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. ``.X`` becomes float32; counts read from ``.X`` are
    kept in ``layers['counts']`` when that layer does not exist (counts read from ``layer`` stay
    there).

    Raises
    ------
    ValueError
        On NaN/inf, negative values, or data that was already log-transformed (by rnapaint or by
        scanpy, or judging by its values) unless ``force=True``.
    """
    check_expression(adata)
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"adata has no layer {layer!r}; layers: {list(adata.layers)}.")
    x = adata.layers[layer] if layer is not None else adata.X
    check_finite(x, f"adata.layers[{layer!r}]" if layer else "adata.X")
    check_nonnegative(x, "values passed to log1p")
    if not force:
        if "log1p" in adata.uns.get("rnapaint", {}) or "log1p" in adata.uns:
            raise ValueError("adata was already log1p-transformed (uns records it); force=True redoes it.")
        if _looks_logged(x):
            raise ValueError(
                "adata's values look log-transformed already (non-integer, all below 30): log1p twice "
                "squashes the signal. TCGA-style log2 tables need only rp.pp.zscore; pass force=True to "
                "transform anyway."
            )
    adata = adata.copy() if copy else adata
    kept = f"adata.layers[{layer!r}]" if layer is not None else None
    if "counts" not in adata.layers and layer is None:
        adata.layers["counts"] = x.copy()
        kept = "adata.layers['counts']"
    out = x.astype(np.float32)
    if sp.issparse(out):
        out.data = np.log1p(out.data)
    else:
        out = np.log1p(out)
    adata.X = out
    _rp_uns(adata)["log1p"] = {"base": "e", "layer": layer}
    logger.info(f"log1p: adata.X now holds log(1 + counts){'; counts kept in ' + kept if kept else ''}.")
    return adata if copy else None


def zscore(
    adata: ad.AnnData,
    split_key: str | None = "split",
    train: str = "train",
    reference: Any = None,
    max_value: float | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-gene z-scores, fitted on the training split or taken from a reference.

    Parameters
    ----------
    adata
        Expression ``(n_obs, n_vars)`` in ``.X`` (already log-transformed).
    split_key
        obs column from :func:`rnapaint.pp.split`; statistics are fitted on rows equal to ``train``.
        When the column is missing (or ``None``) they are fitted on every row, with a warning.
    train
        Value of ``split_key`` that marks training rows.
    reference
        An AnnData (or a model) whose ``var['rp_mean']``/``var['rp_std']`` are applied instead of
        fitting: how an external cohort is put on the training data's scale. Its genes must be
        ``adata``'s, in order (use :func:`rnapaint.pp.align_genes` first).
    max_value
        Clip z-scores to ``[-max_value, max_value]`` (> 0); ``None`` does not clip.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. ``.X`` becomes dense float32; ``var['rp_mean']`` and
    ``var['rp_std']`` hold the statistics, ``uns['rnapaint']['zscore']`` the parameters. Genes that
    :func:`rnapaint.pp.align_genes` zero-filled (``var['rp_missing']``) get z = 0, the training mean.
    """
    check_expression(adata)
    # A cap ≤ 0 (or NaN) would set every value to it: almost surely a typo, refuse it.
    if max_value is not None and (isinstance(max_value, bool) or not np.isfinite(max_value) or max_value <= 0):
        raise ValueError(
            f"max_value must be a positive number of standard deviations (e.g. 10) or None, got {max_value!r}."
        )
    if reference is not None:
        rvar = reference.var
        if "rp_mean" not in rvar or "rp_std" not in rvar:
            raise ValueError("reference has no var['rp_mean']/var['rp_std']: run rp.pp.zscore on it first.")
        if not rvar.index.equals(adata.var_names):
            n_common = len(rvar.index.intersection(adata.var_names))
            raise ValueError(
                f"adata's genes differ from the reference's ({adata.n_vars} vs {len(rvar)}, {n_common} in "
                "common, or another order): run adata = rp.pp.align_genes(adata, reference.var_names) first."
            )
        mean = rvar["rp_mean"].to_numpy(np.float64)
        std = rvar["rp_std"].to_numpy(np.float64)
        if hasattr(reference, "uns"):
            ref_z = reference.uns.get("rnapaint", {}).get("zscore", {})
        else:  # a model carries the parameters of the z-scores it was trained on
            ref_z = getattr(reference, "config", {}).get("zscore", {})
        fit_on, n_fit = "reference", int(ref_z.get("n_fit", 0))
    else:
        x = adata.X
        if split_key is not None and split_key in adata.obs:
            rows = (adata.obs[split_key] == train).to_numpy()
            if not rows.any():
                raise ValueError(f"No rows with obs[{split_key!r}] == {train!r} to fit z-scores on.")
            fit_on = train
        else:
            warnings.warn(
                f"obs has no split column {split_key!r}: fitting z-scores on all {adata.n_obs} rows "
                "(held-out rows then leak into the statistics; run rp.pp.split first).",
                UserWarning,
                stacklevel=2,
            )
            rows, fit_on = np.ones(adata.n_obs, bool), "all"
        fit = _dense(x[rows]).astype(np.float64)
        mean, std = fit.mean(0), fit.std(0)
        n_fit = int(rows.sum())
        if n_fit == 1:
            warnings.warn(
                "z-scores fitted on a single sample: every value becomes 0 (its own mean, no spread). Fit them on "
                "a cohort, or pass reference= a fitted AnnData or model.",
                UserWarning,
                stacklevel=2,
            )
    constant = ~(std > 1e-8)
    std = np.where(constant, 1.0, std)  # constant genes: centred to 0, not divided by 0
    z = ((_dense(adata.X).astype(np.float64) - mean) / std).astype(np.float32)
    missing = adata.var["rp_missing"].to_numpy(bool) if "rp_missing" in adata.var else np.zeros(adata.n_vars, bool)
    z[:, missing] = 0.0  # genes zero-filled by align_genes: the training mean, not a fake −mean/std
    if max_value is not None:
        np.clip(z, -max_value, max_value, out=z)
    check_finite(z, "z-scores")
    adata = adata.copy() if copy else adata
    adata.X = z
    adata.var["rp_mean"] = mean.astype(np.float32)
    adata.var["rp_std"] = std.astype(np.float32)
    _rp_uns(adata)["zscore"] = {
        "fit_on": fit_on,
        "split_key": split_key,
        "n_fit": n_fit,
        "n_constant": int(constant.sum()),
        "max_value": max_value,
        "n_missing_set_to_mean": int(missing.sum()),
    }
    logger.info(f"zscore: fitted on {fit_on} ({n_fit} rows); adding adata.var['rp_mean'], adata.var['rp_std'].")
    return adata if copy else None
