"""``rp.pl.evaluation``: the report of :func:`rnapaint.tl.evaluate` as one figure."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from ._figures import finish


def evaluation(
    report: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    ncols: int = 4,
    title: str | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
):
    """One panel per metric: a bar per method with its confidence interval and a dashed chance line.

    Panels of paired differences (``"A − B"``) draw a dotted line at 0, no difference, instead.

    Parameters
    ----------
    report
        Tidy report (``method, metric, value, ci_low, ci_high, chance``) from :func:`rnapaint.tl.evaluate`.
    metrics
        Metrics to draw, in order (default: all, in report order).
    ncols
        Panels per row.
    title
        Figure title.
    show, save
        As in scanpy: show when interactive, save to a path (written atomically).

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    need = {"method", "metric", "value", "ci_low", "ci_high", "chance"}
    if not need <= set(report.columns):
        raise ValueError(f"report lacks columns {sorted(need - set(report.columns))}; use rp.tl.evaluate's output.")
    metrics = list(dict.fromkeys(report["metric"])) if metrics is None else list(metrics)
    unknown = sorted(set(metrics) - set(report["metric"]))
    if unknown:
        raise ValueError(f"metrics {unknown} are not in the report.")
    methods = list(dict.fromkeys(report["method"]))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 0.45 * len(methods) * nrows + 1.2 * nrows), squeeze=False
    )
    colors = plt.get_cmap("tab10")(np.arange(len(methods)) % 10)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        sub = report[report["metric"] == metric].set_index("method").reindex(methods)
        y = np.arange(len(methods))
        v = sub["value"].to_numpy(float)
        err = np.vstack([v - sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float) - v])
        err = np.where(np.isfinite(err), np.abs(err), 0.0)
        ax.barh(y, v, xerr=err, color=colors, capsize=2)
        chance = sub["chance"].to_numpy(float)
        if np.isfinite(chance).any():
            # a paired difference's reference is "no difference", not a chance level
            paired = "A − B" in metric
            ax.axvline(
                np.nanmean(chance),
                color="k",
                ls=":" if paired else "--",
                lw=1,
                label="no difference" if paired else "chance",
            )
        ax.set_yticks(y, methods if ax in axes[:, 0] else [""] * len(methods), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, show, save)
