"""Train / validation / test split, stratified, optionally keeping groups (patients) together."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .._logging import logger
from .._validation import check_nonempty

SPLITS = ("train", "val", "test")


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Counts per split summing to n (largest remainder), each non-zero fraction getting ≥ 1 when n allows."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    # Give an empty split one unit from the largest when possible, so small strata still reach test.
    for i in np.flatnonzero((counts == 0) & (fractions > 0)):
        j = int(np.argmax(counts))
        if counts[j] > 1:
            counts[j] -= 1
            counts[i] += 1
    return counts


def split(
    adata: ad.AnnData,
    stratify: str | Sequence[str] | None = None,
    groups: str | None = None,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    key_added: str = "split",
    copy: bool = False,
) -> ad.AnnData | None:
    """Assign each observation to ``train``, ``val`` or ``test``.

    Parameters
    ----------
    adata
        Any AnnData.
    stratify
        obs column(s) whose combinations keep their proportions in every split (e.g.
        ``["cohort", "sample_type"]``).
    groups
        obs column whose members always land in the same split (e.g. ``"patient"``, so a patient's
        tumour and normal samples never straddle train and test).
    fractions
        Fractions of train, val and test (of groups, when ``groups`` is given); must sum to 1.
    seed
        Random seed.
    key_added
        obs column to write (not one of the ``stratify``/``groups`` columns).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes ``adata.obs[key_added]`` (categorical).

    Raises
    ------
    ValueError
        For bad ``fractions``, a missing column, ``key_added`` equal to a ``stratify``/``groups``
        column, or duplicated obs names (observations are assigned by name).
    """
    check_nonempty(adata)
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}.")
    cols = [stratify] if isinstance(stratify, str) else list(stratify or [])
    for c in [*cols, *([groups] if groups else [])]:
        if c not in adata.obs:
            raise ValueError(f"obs has no column {c!r}; available: {list(adata.obs.columns)}.")
        if c == key_added:
            raise ValueError(
                f"key_added={key_added!r} is also a stratify/groups column: the split would replace it. "
                "Pick another key_added (default 'split')."
            )
    if not adata.obs_names.is_unique:
        # Observations are assigned by name: repeated names would all land where the last one went.
        dup = adata.obs_names[adata.obs_names.duplicated()]
        raise ValueError(
            f"obs names must be unique to split by them ({len(dup)} rows repeat an earlier name, e.g. {dup[0]!r}); "
            "run adata.obs_names_make_unique() first."
        )
    adata = adata.copy() if copy else adata
    strata = adata.obs[cols].astype(str).agg("|".join, axis=1) if cols else pd.Series("all", index=adata.obs_names)
    unit = adata.obs[groups].astype(str) if groups else pd.Series(adata.obs_names, index=adata.obs_names)
    if groups:
        # A group's stratum is its most common one (a patient has tumour and normal: keep it whole).
        unit_stratum = strata.groupby(unit.to_numpy()).agg(lambda s: s.value_counts().index[0])
    else:
        unit_stratum = pd.Series(strata.to_numpy(), index=unit.to_numpy())
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in sorted(unit_stratum.unique()):
        units = np.array(sorted(unit_stratum.index[unit_stratum.to_numpy() == stratum]))
        units = units[rng.permutation(len(units))]
        counts = _allocate(len(units), fr)
        bounds = np.cumsum(counts)[:-1]
        for name, chunk in zip(SPLITS, np.split(units, bounds), strict=True):
            assignment.update(dict.fromkeys(chunk, name))
    adata.obs[key_added] = pd.Categorical(unit.map(assignment).to_numpy(), categories=list(SPLITS))
    sizes = adata.obs[key_added].value_counts().reindex(list(SPLITS)).to_dict()
    logger.info(f"Adding adata.obs[{key_added!r}]: {sizes}")
    return adata if copy else None
