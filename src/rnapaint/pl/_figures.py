"""Shared handling of ``show``/``save`` for rnapaint figures (scanpy's convention)."""

from __future__ import annotations

import os
from pathlib import Path


def finish(fig, show: bool | None, save: str | os.PathLike | None):
    """Save the figure atomically when asked, show it when interactive; return it."""
    import matplotlib.pyplot as plt

    if save is not None:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        tmp = save.with_name(f".{save.stem}.tmp{save.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, save)
    if show is None:
        show = save is None and plt.isinteractive()
    if show:
        plt.show()
    return fig
