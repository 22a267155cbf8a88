"""Load any saved rnapaint model by the class its ``config.json`` names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_CLASSES = ("BetaVAE", "TileGAN", "CascadedDiffusion", "TileEncoder", "TileAutoencoder")


def load_model(path: str | os.PathLike) -> Any:
    """Load a model directory written by any rnapaint model's ``save``.

    Parameters
    ----------
    path
        The model directory (``model.safetensors`` + ``config.json``).

    Returns
    -------
    A :class:`BetaVAE`, :class:`TileGAN`, :class:`CascadedDiffusion`, :class:`TileEncoder` or
    :class:`TileAutoencoder`.

    Raises
    ------
    ValueError
        If the directory holds no rnapaint model (no ``config.json``, or one that is not a JSON
        object), or one this function does not know. A replacement interrupted by a kill
        (see :func:`rnapaint.io.save_model_files`) is finished first.
    """
    from ..io.model_files import read_config, recover_model_dir
    from . import BetaVAE, CascadedDiffusion, TileAutoencoder, TileEncoder, TileGAN

    recover_model_dir(path)  # finish a replacement a kill interrupted, as each class's load does
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise ValueError(f"{path} is not a rnapaint model directory: config.json is missing.")
    kind = read_config(cfg).get("class")
    classes = {
        "BetaVAE": BetaVAE,
        "TileGAN": TileGAN,
        "CascadedDiffusion": CascadedDiffusion,
        "TileEncoder": TileEncoder,
        "TileAutoencoder": TileAutoencoder,
    }
    if kind not in classes:
        raise ValueError(f"{path} holds a {kind!r} model; rnapaint loads {', '.join(_CLASSES)}.")
    return classes[kind].load(path)
