"""``rp.tl.vae``: fit RNA-GAN's β-VAE (or reuse one) and write the latent means into ``obsm``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad

from .._logging import logger
from .._validation import check_expression
from . import _registry


def _uns_key(key_added: str) -> str:
    return key_added[2:] if key_added.startswith("X_") else key_added


def warn_without_split(adata: ad.AnnData, split_key: str | None, consequence: str) -> None:
    """Warn when ``split_key`` names no obs column: a misspelt key must not train on test units unseen."""
    if split_key is not None and split_key not in adata.obs:
        warnings.warn(
            f"adata.obs has no {split_key!r} column: {consequence}. Run rp.pp.split first, fix split_key, "
            "or pass split_key=None to mean this.",
            UserWarning,
            stacklevel=3,
        )


def vae(
    adata: ad.AnnData,
    model: Any = None,
    *,
    hidden: Sequence[int] = (6000, 4096),
    latent_dim: int = 2048,
    beta: float = 0.005,
    max_epochs: int = 300,
    batch_size: int = 128,
    lr: float = 3e-4,
    early_stopping_patience: int | None = 30,
    split_key: str | None = "split",
    accelerator: str = "auto",
    seed: int = 0,
    progress_bar: bool = True,
    save_path: str | Path | None = None,
    key_added: str = "X_vae",
    copy: bool = False,
) -> ad.AnnData | None:
    """Embed expression with a β-VAE (RNA-GAN, Fig. 2), training one unless ``model`` is given.

    Parameters
    ----------
    adata
        z-scored expression ``(n_obs, n_genes)`` (see :func:`rnapaint.pp.zscore`).
    model
        A trained :class:`rnapaint.models.BetaVAE` (or the path of a saved one): ``adata`` is only
        encoded, nothing is trained. Its genes must be ``adata``'s.
    hidden, latent_dim, beta
        Architecture when training (RNA-GAN defaults: ``(6000, 4096)``, 2048, 0.005;
        ``latent_dim=200`` is RNA-CDM's).
    max_epochs, batch_size, lr, early_stopping_patience, accelerator, seed, progress_bar
        Training settings, see :meth:`rnapaint.models.BetaVAE.train`.
    split_key
        obs column with ``train``/``val``/``test`` (:func:`rnapaint.pp.split`). Without that column
        (a warning says so) a random 10 % of all units is held out for early stopping; ``None``
        asks for that without the warning.
    save_path
        Also save the model there (safetensors + JSON); its path goes into ``uns``.
    key_added
        obsm key for the latent means; ``uns`` gets the same key without ``X_``.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy. Writes ``obsm[key_added]`` ``(n_obs, latent_dim)`` posterior means and
    ``uns['vae']`` (``params``, ``history``, ``train_info``, ``model_uid``, ``model_path``); the model
    is returned by :func:`rnapaint.tl.get_model`.
    """
    from ..io.model_files import check_model_destination
    from ..models.beta_vae import BetaVAE

    check_expression(adata)
    if isinstance(model, (str, Path)):
        model = BetaVAE.load(model)
    if model is not None and not isinstance(model, BetaVAE):
        raise ValueError(f"model must be a BetaVAE, the path of a saved one, or None; got {type(model).__name__}.")
    if save_path is not None:
        check_model_destination(save_path)  # before the training, not after it
    if model is None:
        warn_without_split(adata, split_key, "training on a random 90 % of all units, test units included")
        model = BetaVAE(adata, hidden=hidden, latent_dim=latent_dim, beta=beta, split_key=split_key)
        model.train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            early_stopping_patience=early_stopping_patience,
            accelerator=accelerator,
            seed=seed,
            progress_bar=progress_bar,
        )
        trained_here = True
    else:
        if not getattr(model, "is_trained", False):
            raise ValueError("model is not trained: call model.train() or pass model=None to train one.")
        trained_here = False
    z = model.get_latent(adata)
    if save_path is not None:
        model.save(save_path, overwrite=True)
    adata = adata.copy() if copy else adata
    key = _uns_key(key_added)
    adata.obsm[key_added] = z
    adata.uns[key] = {
        "params": {**model.config, "trained_on_this_adata": trained_here},
        "history": {k: list(v) for k, v in model.history.items()},
        "train_info": dict(model.train_info),
        "model_uid": _registry.register(model),
        "model_path": str(Path(save_path).resolve()) if save_path is not None else None,  # any working directory
    }
    logger.info(f"Adding adata.obsm[{key_added!r}] {z.shape}, adata.uns[{key!r}]")
    return adata if copy else None


def get_model(adata: ad.AnnData, key: str = "vae") -> Any:
    """The model that wrote ``adata.uns[key]``: from this session, or loaded from its saved files.

    Raises
    ------
    ValueError
        If ``adata`` has no such entry, or the model is neither in memory nor saved.
    """
    key = _uns_key(key)
    if key not in adata.uns or "model_uid" not in adata.uns[key]:
        raise ValueError(f"adata.uns has no {key!r} model entry: run rp.tl.vae(adata) first.")
    entry = adata.uns[key]
    model = _registry.lookup(entry["model_uid"])
    if model is not None:
        return model
    if entry.get("model_path"):
        from ..models.loading import load_model

        if not Path(entry["model_path"]).exists():
            raise ValueError(
                f"adata.uns[{key!r}] names the model files {entry['model_path']}, which do not exist (moved, or "
                "a relative path saved from another working directory?): load the model with "
                "rp.models.load_model(path) and pass it."
            )
        return load_model(entry["model_path"])
    raise ValueError(
        f"The model of adata.uns[{key!r}] is not in this session and was not saved: "
        "pass save_path= to rp.tl.vae to keep it across sessions."
    )
