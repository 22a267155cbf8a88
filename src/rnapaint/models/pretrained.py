"""Shipped defaults: small trained models inside the package, listed and loaded by name.

Each was made by a script in the repository with a fixed seed; its recipe and scores are in
``benchmarks/README.md``. The weights are safetensors + JSON like every rnapaint model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

_WEIGHTS = Path(__file__).with_name("weights")
# name → (class, what it is, the script that made it)
_DEFAULTS: dict[str, tuple[str, str, str]] = {
    "he-autoencoder-small": (
        "TileAutoencoder",
        "H&E image prior: 128-px tiles at 1.2 µm/px ↔ 4 × 32 × 32 latents; trained on crops of the HER2ST "
        "C2–C5 images, the CMU-1 slide and LC25000 lung tiles",
        "benchmarks/autoencoder.py default --minutes 12 --lr 3e-4 --no-adv",
    ),
}


def pretrained(name: str | None = None) -> Any:
    """The shipped default models: a table of them, or one loaded by name.

    Parameters
    ----------
    name
        A name from the table; ``None`` lists them.

    Returns
    -------
    With ``name``: the model (e.g. a :class:`~rnapaint.models.TileAutoencoder`). Without: a
    DataFrame with ``name``, ``class``, ``description``, ``made_by``, ``mib`` and ``available`` (its
    files are in this installation).

    Raises
    ------
    KeyError
        For an unknown name; ``ValueError`` if its files are missing or damaged.

    Examples
    --------
    >>> rp.models.pretrained()
    >>> ae = rp.models.pretrained("he-autoencoder-small")
    """
    if name is None:
        rows = []
        for n, (cls, what, script) in _DEFAULTS.items():
            w = _WEIGHTS / n / "model.safetensors"
            rows.append(
                {
                    "name": n,
                    "class": cls,
                    "description": what,
                    "made_by": script,
                    "mib": round(w.stat().st_size / 2**20, 2) if w.is_file() else None,
                    "available": w.is_file(),
                }
            )
        return pd.DataFrame(rows)
    if name not in _DEFAULTS:
        raise KeyError(f"no shipped model {name!r}; rnapaint ships {sorted(_DEFAULTS)}.")
    folder = _WEIGHTS / name
    if not (folder / "model.safetensors").is_file():
        raise ValueError(
            f"the shipped model {name!r} is missing from this installation ({folder}); reinstall rnapaint, or make "
            f"it again with `python {_DEFAULTS[name][2]}`."
        )
    from .loading import load_model

    model = load_model(folder)
    if type(model).__name__ != _DEFAULTS[name][0]:
        raise ValueError(f"{folder} holds a {type(model).__name__}, not the {_DEFAULTS[name][0]} {name!r} should be.")
    return model


def weights_dir(name: str) -> Path:
    """Where the shipped model ``name`` lives in the package (what its script writes)."""
    return _WEIGHTS / name
