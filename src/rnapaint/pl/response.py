"""Does a measured tile property follow the expression that drove the generator?"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ._figures import finish


def response(
    driver: np.ndarray,
    measured: Mapping[str, np.ndarray],
    xlabel: str = "driving expression program",
    ylabel: str = "property measured on tiles",
    title: str | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """Scatter a measured tile property against the program that drove it, one panel per source.

    Parameters
    ----------
    driver
        ``(n,)`` value of the driving program per unit (ground truth, or a marker score).
    measured
        Label (e.g. ``"real"``, ``"RNA-GAN"``, ``"GAN"``) → ``(n,)`` property of that unit's tiles.
    xlabel, ylabel, title
        Axis labels and figure title.
    show, save
        Show the figure; save it to this path.

    Returns
    -------
    The matplotlib Figure; each panel's title carries Spearman's ρ.
    """
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    driver = np.asarray(driver, dtype=float)
    fig, axes = plt.subplots(1, len(measured), figsize=(3.6 * len(measured), 3.4), squeeze=False, sharey=True)
    for ax, (label, y) in zip(axes[0], measured.items(), strict=True):
        y = np.asarray(y, dtype=float)
        if y.shape != driver.shape:
            raise ValueError(f"{label}: {y.shape} values for {driver.shape} units.")
        rho = spearmanr(driver, y).statistic
        ax.scatter(driver, y, s=8, alpha=0.7, linewidths=0)
        ax.set_title(f"{label}: Spearman ρ = {rho:.2f}")
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, show, save)
