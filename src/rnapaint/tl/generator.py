"""``rp.tl.train_generator`` and ``rp.tl.generate``: expression → H&E tiles into AnnData or a TileStore."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anndata as ad

from .._logging import logger
from . import _registry

METHODS = {"gan": None, "rnagan": "vae", "cdm": "vae"}


def train_generator(
    adata: ad.AnnData,
    tiles: Any,
    method: str = "rnagan",
    vae: Any = None,
    rep: str = "X_vae",
    split_key: str | None = "split",
    save_path: str | os.PathLike | None = None,
    key_added: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **train_kwargs: Any,
) -> None:
    """Train a tile generator on (expression unit, tile) pairs.

    Parameters
    ----------
    adata
        Expression units; for ``"rnagan"`` with ``obsm[rep]`` from :func:`rnapaint.tl.vae` (or pass
        ``vae``).
    tiles
        TileStore (or path) of the units' tiles, or ``adata.obsm['tiles']``-style array.
    method
        ``"rnagan"`` (β-VAE latent + uniform noise), ``"gan"`` (the noise-only baseline) or ``"cdm"``
        (RNA-CDM's cascaded diffusion, :class:`rnapaint.models.CascadedDiffusion`; its condition is
        the β-VAE latent, or the genes with ``model_kwargs={"condition": "expression"}``).
    vae
        β-VAE model (default: the one that wrote ``adata.uns['vae']``, from this session or loaded
        from its saved files, see :func:`rnapaint.tl.get_model`).
    rep
        obsm key of the condition.
    split_key
        Train on units whose ``obs[split_key] == 'train'``. Without that column (a warning says so)
        every unit trains, test units included; ``None`` asks for that without the warning.
    save_path
        Save the trained model there (under DDP from rank 0 only).
    key_added
        uns key for the record (default ``"tile_gan"`` / ``"tile_rnagan"`` / ``"tile_cdm"``).
    model_kwargs
        Passed to :class:`rnapaint.models.TileGAN` (``width``, ``upsample``, ``critic_norm``, ...) or
        :class:`rnapaint.models.CascadedDiffusion` (``base_size``, ``base``, ``sr``, ``prediction``, ...).
    **train_kwargs
        Passed to the model's ``train`` (``max_steps``, ``batch_size``, ``max_time``...).

    Returns
    -------
    ``None``; ``uns[key_added]`` records settings and history, :func:`rnapaint.tl.get_model` returns
    the model.
    """
    from ..io.model_files import check_model_destination
    from ..models.cascaded_diffusion import CascadedDiffusion
    from ..models.tile_gan import TileGAN
    from .vae import get_model, warn_without_split

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}.")
    if save_path is not None:
        check_model_destination(save_path)  # before the training, not after it
    if vae is None and "vae" in adata.uns:
        try:
            vae = get_model(adata, "vae")
        except ValueError:
            vae = None
    units = None
    warn_without_split(adata, split_key, "training on every unit, test units included")
    if split_key is not None and split_key in adata.obs:
        units = adata.obs_names[(adata.obs[split_key] == "train").to_numpy()]
    if method == "cdm":
        model = CascadedDiffusion(adata, tiles, vae=vae, rep=rep, units=units, **(model_kwargs or {}))
    else:
        model = TileGAN(adata, tiles, condition=METHODS[method], vae=vae, rep=rep, units=units, **(model_kwargs or {}))
    model.train(**train_kwargs)
    if save_path is not None and model.global_rank == 0:  # DDP: every process runs this, one writes
        model.save(save_path, overwrite=True)
    key = key_added or f"tile_{method}"
    adata.uns[key] = {
        "params": {**{k: v for k, v in model.config.items() if v is not None}, "method": method},
        # CascadedDiffusion's history is per stage (stage → name → values), TileGAN's is flat.
        "history": {
            k: ({n: list(c) for n, c in v.items()} if isinstance(v, dict) else list(v))
            for k, v in model.history.items()
        },
        "train_info": dict(model.train_info),
        "model_uid": _registry.register(model),
        "model_path": str(Path(save_path).resolve()) if save_path is not None else None,  # any working directory
    }
    logger.info(f"Trained {model!r}; adding adata.uns[{key!r}] (rp.tl.get_model(adata, {key!r}))")


def generate(
    adata: ad.AnnData,
    model: Any,
    n_per_obs: int = 4,
    key_added: str = "X_tiles",
    store: str | os.PathLike | None = None,
    seed: int = 0,
    batch_size: int = 256,
    overwrite: bool = False,
    copy: bool = False,
    **generate_kwargs: Any,
) -> ad.AnnData | None:
    """Paint tiles for every observation of ``adata`` — measured, synthetic or shifted profiles alike.

    Parameters
    ----------
    adata
        Profiles with the model's genes (encoded with the model's β-VAE) or with ``obsm['X_vae']``.
        ``obsm['X_vae']`` wins when present: after editing ``.X`` of a copy (an enriched profile),
        ``del adata.obsm['X_vae']`` so that ``.X`` is encoded (a stale latent is warned about).
        Units without any image are exactly the imputation use case.
    model
        A trained :class:`rnapaint.models.TileGAN` or :class:`rnapaint.models.CascadedDiffusion`, or
        the path of a saved one.
    n_per_obs
        Tiles per observation.
    key_added
        ``obsm[key_added]`` gets ``(n_obs, n_per_obs, H, W, 3)`` uint8 (unless ``store`` is given).
    store
        Write to this TileStore instead of ``obsm``; unit = obs name, ``x`` = draw index. Tiles are
        streamed batch by batch into a hidden folder beside ``store`` and moved into place when all
        are written: memory holds one batch, and a failed run leaves no (or the old) store.
    seed
        The same seed gives a unit (known by its obs name) the same tiles whatever ``batch_size``
        and whatever other units ``adata`` holds (up to a rounding step: the network's float
        arithmetic depends on the batch shape).
    batch_size
        Generation batch.
    overwrite
        Replace an existing ``store`` (otherwise a FileExistsError).
    copy
        Return a copy instead of writing into ``adata``.
    **generate_kwargs
        Passed to the model's ``generate``: for the diffusion model ``sampler`` (``"ddpm"``,
        ``"ddim"``, ``"dpm++"``, ``"dpm++sde"``), ``steps``, ``guidance_scale``, ``sr_steps``, ...

    Returns
    -------
    ``None`` or the copy; ``uns['{key}_generation']`` (``key`` = ``key_added`` without ``X_``) records
    the settings.
    """
    from ..models.generated_store import GeneratedTileWriter
    from ..models.loading import load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not hasattr(model, "generate") or not hasattr(model, "is_trained"):
        raise ValueError(f"model must be a TileGAN or CascadedDiffusion, got {type(model).__name__}.")
    if not model.is_trained:
        raise ValueError("model is not trained.")
    if int(n_per_obs) < 1 or int(batch_size) < 1:
        raise ValueError(f"n_per_obs and batch_size must be ≥ 1, got {n_per_obs} and {batch_size}.")
    if store is not None and not adata.obs_names.is_unique:  # the store names each tile's unit by it
        dup = adata.obs_names[adata.obs_names.duplicated()][0]
        raise ValueError(f"obs names name the tiles' units in the store and must be unique ({dup!r} repeats).")
    if store is None and key_added in adata.obsm and key_added in ("tiles", "spatial"):
        # the real tiles (rp.pp.spot_tiles' default key) and the spot coordinates are never painted over
        raise ValueError(
            f"key_added={key_added!r} would overwrite adata.obsm[{key_added!r}] (real tiles or spot coordinates); "
            "pick another key, e.g. 'X_tiles'."
        )
    kw = {"n_per_obs": n_per_obs, "seed": seed, "batch_size": batch_size, **generate_kwargs}
    size = int(model.config["image_size"])
    if store is not None:  # streamed batch by batch; committed only when every tile is written
        writer = GeneratedTileWriter(store, size, adata.obs_names, overwrite=overwrite)
        try:
            model.generate(adata, sink=writer, **kw)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
        where = f"TileStore {Path(store)}"
    else:
        tiles = model.generate(adata, **kw)
        where = f"adata.obsm[{key_added!r}]"
    adata = adata.copy() if copy else adata
    if store is None:
        adata.obsm[key_added] = tiles
    adata.uns[f"{key_added.removeprefix('X_')}_generation"] = {
        "n_per_obs": int(n_per_obs),
        "seed": int(seed),
        "store": str(store) if store is not None else None,
        "model": repr(model),
        **{k: v for k, v in generate_kwargs.items() if isinstance(v, (int, float, str))},
    }
    logger.info(f"Generated {adata.n_obs} × {n_per_obs} tiles of {size}px into {where}")
    return adata if copy else None
