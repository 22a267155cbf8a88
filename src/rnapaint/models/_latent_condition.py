"""The β-VAE latent a generator is conditioned on: ``obsm[rep]``, or the latent of ``.X``."""

from __future__ import annotations

import warnings
from typing import Any

import anndata as ad
import numpy as np


def latent_condition(adata: ad.AnnData, rep: str, dim: int, vae: Any) -> np.ndarray:
    """``(n_obs, dim)`` conditions: ``obsm[rep]`` when it has the width, else ``vae.get_latent(adata)``.

    ``obsm[rep]`` wins, so a profile edited after it was encoded (``enriched.X = profiles.X + …`` on a
    copy that kept ``X_vae``) would be painted from its old latent. When the model carries its β-VAE
    and ``adata`` has its genes, the stored latents are compared with those of ``.X`` and a mismatch
    is a warning that says how to paint from ``.X`` (not for profiles that rnapaint decoded from
    latents, whose ``obsm[rep]`` is their condition by design).
    """
    if rep in adata.obsm and np.shape(adata.obsm[rep])[1:] == (dim,):
        z = np.asarray(adata.obsm[rep], np.float32)
        # Profiles decoded from drawn or shifted latents (rp.tl.synthetic_expression / shift mark them in
        # obs['rp_kind']) are conditioned on those latents by design: re-encoding their .X differs.
        decoded = "rp_kind" in adata.obs
        if vae is not None and not decoded and adata.n_obs and adata.var_names.equals(vae.var_names):
            try:
                with warnings.catch_warnings():  # scale warnings about .X do not apply: obsm is used
                    warnings.simplefilter("ignore")
                    fresh = vae.get_latent(adata)
            except ValueError:  # .X cannot be encoded (NaN, ...): obsm[rep] is all there is
                fresh = None
            if fresh is not None and np.abs(fresh - z).max() > 1e-3 * max(1.0, float(np.abs(fresh).max())):
                warnings.warn(
                    f"adata.obsm[{rep!r}] is not the model's β-VAE latent of adata.X (was .X changed after it "
                    f"was encoded, or encoded by another β-VAE?). The tiles follow obsm[{rep!r}]; to paint "
                    f"from .X, delete it first (del adata.obsm[{rep!r}]).",
                    UserWarning,
                    stacklevel=4,
                )
    elif vae is not None:
        z = vae.get_latent(adata)  # checks the genes
    else:
        raise ValueError(f"adata.obsm has no {rep!r} and the model carries no β-VAE to compute it.")
    if not np.isfinite(z).all():
        raise ValueError(f"adata.obsm[{rep!r}] holds NaN or infinite values.")
    return z
