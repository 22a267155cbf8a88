"""Load any saved rnapaint model by the class its ``config.json`` names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_CLASSES = ("BetaVAE", "TileGAN", "CascadedDiffusion", "TileEncoder")


def load_model(path: str | os.PathLike) -> Any:
    """Load a model directory written by any rnapaint model's ``save``.

    Parameters
    ----------
    path
        The model directory (``model.safetensors`` + ``config.json``).

    Returns
    -------
    A :class:`BetaVAE`, :class:`TileGAN`, :class:`CascadedDiffusion` or :class:`TileEncoder`.

    Raises
    ------
    ValueError
        If the directory holds no rnapaint model, or one this function does not know.
    """
    from . import BetaVAE, CascadedDiffusion, TileEncoder, TileGAN

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise ValueError(f"{path} is not a rnapaint model directory: config.json is missing.")
    try:
        kind = json.loads(cfg.read_text()).get("class")
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg} is not valid JSON (truncated or corrupted?): {e}") from e
    classes = {
        "BetaVAE": BetaVAE,
        "TileGAN": TileGAN,
        "CascadedDiffusion": CascadedDiffusion,
        "TileEncoder": TileEncoder,
    }
    if kind not in classes:
        raise ValueError(f"{path} holds a {kind!r} model; rnapaint loads {', '.join(_CLASSES)}.")
    return classes[kind].load(path)
