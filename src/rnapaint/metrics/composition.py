"""Do the nuclei of generated tiles follow each unit's cell mix? Rank correlations with paired intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .nuclei import FEATURES, nuclei
from .realism import _check_ci, _percentile_ci


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ (Pearson of ranks, ties averaged); NaN when either side is constant."""
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def check_pairs(pairs: Mapping[str, str | Sequence[str]], columns: Sequence[str]) -> dict[str, list[str]]:
    """Validate ``pairs`` (nuclei feature → cell type or types) against the proportions' ``columns``.

    Returns
    -------
    Each feature with its list of cell types.
    """
    cells: dict[str, list[str]] = {}
    for feat, types in pairs.items():
        if feat not in FEATURES:
            raise ValueError(f"{feat!r} is not a nuclei feature; choose from {list(FEATURES)}.")
        types = [types] if isinstance(types, str) else list(types)
        missing = [t for t in types if t not in columns]
        if missing:
            raise ValueError(f"proportions has no column {missing} (pair {feat!r}).")
        cells[feat] = types
    if not cells:
        raise ValueError("pairs is empty: name at least one nuclei feature and its cell types.")
    return cells


def composition_agreement(
    tiles: Mapping[str, Any],
    proportions: pd.DataFrame,
    pairs: Mapping[str, str | Sequence[str]],
    *,
    mpp: float | None = None,
    contrasts: Sequence[tuple[str, str]] = (),
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Spearman ρ, over units, between a nuclei feature of each source's tiles and the units' cell shares.

    For spatial spots with a deconvolved cell mix (stereoscope, cell2location, ...): do tiles of
    epithelium-rich spots have more haematoxylin, those of immune-rich spots more small round nuclei,
    as real tiles do? A rank correlation within one source is unchanged when all of its tiles shift
    together (a generator whose stain is off, whose nuclei are all too large): it asks only whether
    the tiles differ across units the way the units' cells do. A classifier trained on real tiles
    (:func:`condition_fidelity`) also scores that shift, and on tiles far from real ones mostly
    reports where their features land.

    Parameters
    ----------
    tiles
        Source name → tiles of the same ``m`` units, ``(m, k, H, W, 3)`` uint8 (``k`` may differ
        between sources; a unit's feature is the mean over its tiles with nuclei), e.g. ``{"real":
        adata.obsm["tiles"], "RNA-GAN": adata.obsm["X_rnagan"]}`` restricted to the test units. A
        source may instead be given as its nuclei, measured already: the :func:`nuclei` DataFrame of
        those tiles, whose ``unit`` column is the position among the ``m`` units.
    proportions
        ``(m, n_cell_types)`` cell shares of the same units, in the same order, one column per type.
    pairs
        Nuclei feature (a column of :func:`nuclei`: ``density``, ``hematoxylin_fraction``,
        ``mean_area``, ``small_round_fraction``, ...) → the cell type, or types whose shares are summed,
        that it should follow.
    mpp
        µm per pixel of the tiles (nuclei sizes; see :func:`nuclei`).
    contrasts
        Pairs ``(a, b)`` of source names: the difference ρ_a − ρ_b for each feature, over the same
        units resampled together, so its interval is that of the difference itself.
    n_boot, ci, seed
        Bootstrap over units for the intervals (``n_boot=0``: none).
    progress_bar
        Passed to :func:`nuclei`.

    Returns
    -------
    Tidy ``DataFrame`` with columns ``method, metric, value, ci_low, ci_high, chance, p_value,
    n_units``: one row per source and pair (``metric`` ``"ρ(feature, cells)"``, ``chance`` 0), and
    one per contrast and pair (``method`` ``"a − b"``, ``p_value`` the share of resamples in which a
    does not exceed b: a one-sided bootstrap p-value). Units where a feature is undefined (no
    nuclei in any of their tiles) are left out of that pair's correlation, and of a contrast when
    either source lacks it.
    """
    if not tiles:
        raise ValueError("tiles is empty: give at least one source.")
    if not isinstance(proportions, pd.DataFrame):
        raise TypeError("proportions must be a DataFrame with one column per cell type.")
    _check_ci(int(n_boot), ci)
    m = len(proportions)
    cells = check_pairs(pairs, proportions.columns)
    for a, b in contrasts:
        if a not in tiles or b not in tiles:
            raise ValueError(f"contrast ({a!r}, {b!r}) names a source not in tiles {list(tiles)}.")

    per_unit: dict[str, pd.DataFrame] = {}
    for name, t in tiles.items():
        if isinstance(t, pd.DataFrame):  # nuclei measured already (rp.tl.evaluate measures them once)
            lacking = sorted({"unit", *cells} - set(t.columns))
            if lacking:
                raise ValueError(f"tiles[{name!r}] is a DataFrame without the nuclei columns {lacking}.")
            units = t["unit"].to_numpy()
            if len(t) == 0 or units.min() < 0 or units.max() >= m:
                raise ValueError(f"tiles[{name!r}]: its 'unit' column must index the {m} units of proportions.")
            df = t
        else:
            t = np.asarray(t)
            if t.ndim != 5 or len(t) != m:
                raise ValueError(
                    f"tiles[{name!r}] must be (m, k, H, W, 3) for the {m} units of proportions, got {t.shape}."
                )
            df = nuclei(t, mpp=mpp, progress_bar=progress_bar)
        per_unit[name] = df.groupby("unit")[list(cells)].mean().reindex(range(m))
    share = {feat: proportions[types].to_numpy(float).sum(1) for feat, types in cells.items()}

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, (int(n_boot), m))
    rows = []
    for feat, types in cells.items():
        metric = f"ρ({feat}, {' + '.join(types)})"
        y = share[feat]
        for name, f in per_unit.items():
            x = f[feat].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            boots = np.array([_rho(x[i][ok[i]], y[i][ok[i]]) for i in idx], float)
            lo, hi = _percentile_ci(boots, ci)  # a resample with a constant side (NaN) is left out
            rows.append((name, metric, _rho(x[ok], y[ok]), lo, hi, 0.0, np.nan, int(ok.sum())))
        for a, b in contrasts:
            xa, xb = per_unit[a][feat].to_numpy(float), per_unit[b][feat].to_numpy(float)
            ok = np.isfinite(xa) & np.isfinite(xb) & np.isfinite(y)
            d = np.array([_rho(xa[i][ok[i]], y[i][ok[i]]) - _rho(xb[i][ok[i]], y[i][ok[i]]) for i in idx], float)
            lo, hi = _percentile_ci(d, ci)
            p = float(np.mean(d[np.isfinite(d)] <= 0)) if np.isfinite(d).any() else np.nan
            value = _rho(xa[ok], y[ok]) - _rho(xb[ok], y[ok])
            rows.append((f"{a} − {b}", metric, value, lo, hi, 0.0, p, int(ok.sum())))
    return pd.DataFrame(
        rows, columns=["method", "metric", "value", "ci_low", "ci_high", "chance", "p_value", "n_units"]
    )
