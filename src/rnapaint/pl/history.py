"""Training curves of a model (loss, reconstruction, KL) per epoch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._figures import finish


def history(
    data: Any,
    key: str = "vae",
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """Plot training and validation curves.

    Parameters
    ----------
    data
        An AnnData with ``uns[key]['history']`` (from :func:`rnapaint.tl.vae` or
        :func:`rnapaint.tl.train_generator`), a model with a ``history`` attribute, or the history
        dict itself (name → list of per-epoch values; or stage → such a dict for
        :class:`rnapaint.models.CascadedDiffusion`, one panel per stage).
    key
        uns key when ``data`` is an AnnData.
    show, save
        Show the figure; save it to this path (PNG, PDF, SVG…).

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if isinstance(data, dict):
        hist = data
    elif hasattr(data, "uns"):
        key = key[2:] if key.startswith("X_") else key
        if key not in data.uns or "history" not in data.uns[key]:
            raise ValueError(
                f"adata.uns[{key!r}] has no training history: run rp.tl.vae or rp.tl.train_generator first."
            )
        hist = data.uns[key]["history"]
    else:
        hist = getattr(data, "history", None)
        if hist is None:
            raise ValueError("data has no training history.")
    if hist and all(isinstance(v, Mapping) for v in hist.values()):
        # A staged model (CascadedDiffusion: stage → name → values): one panel per stage and term.
        hist = {
            f"{split}_{stage}: {name.split('_', 1)[1]}": v
            for stage, h in hist.items()
            for name, v in h.items()
            for split in ("train", "val")
            if name.startswith(f"{split}_")
        }
    # Every curve logged as train_<term> (β-VAE: loss, recon, kl; GAN: critic, generator, gp, ...).
    terms = [k.removeprefix("train_") for k in hist if k.startswith("train_")]
    if not terms:
        raise ValueError(f"The history holds no train_* curves (keys: {sorted(hist)}).")
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2), squeeze=False)
    titles = {
        "loss": "total loss",
        "recon": "reconstruction (MSE)",
        "kl": "KL divergence",
        "critic": "critic loss",
        "generator": "generator loss",
        "gp": "gradient penalty",
        "wasserstein": "Wasserstein estimate",
    }
    for ax, t in zip(axes[0], terms, strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            y = list(hist.get(f"{split}_{t}", []))
            if y:
                ax.plot(range(1, len(y) + 1), y, style, label=split)
        ax.set_title(titles.get(t, t))
        ax.set_xlabel("epoch")
        if t.split(": ")[-1] in ("loss", "recon"):
            ax.set_yscale("log")
        ax.legend(frameon=False)
    fig.tight_layout()
    return finish(fig, show, save)
