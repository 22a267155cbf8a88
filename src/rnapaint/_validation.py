"""Checks of user input shared by every layer; each raises a ValueError that names the problem."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp


def _values(x) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x)


def check_nonempty(adata, what: str = "adata") -> None:
    """Raise if an AnnData has no observations or no variables."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{what} is empty ({adata.n_obs} observations × {adata.n_vars} genes); nothing to work on.")


def check_finite(x, what: str = "adata.X") -> None:
    """Raise if an array (dense or sparse) holds NaN or infinite values."""
    v = _values(x)
    if v.dtype == bool:
        raise ValueError(
            f"{what} is boolean: rnapaint reads expression as numbers. If True/False mean 1/0, convert it "
            "first (e.g. adata.X = adata.X.astype(np.float32))."
        )
    if np.issubdtype(v.dtype, np.complexfloating):
        raise ValueError(f"{what} holds complex numbers ({v.dtype}): expression values must be real.")
    if not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {v.dtype}.")
    if np.issubdtype(v.dtype, np.floating):
        if v.dtype.itemsize > 4:  # the models see float32: a float64 1e39 becomes inf there
            big = np.abs(v[np.isfinite(v)]) > np.finfo(np.float32).max
            if big.any():
                raise ValueError(
                    f"{what} holds {int(big.sum())} values beyond float32's range (|x| > 3.4e38), which become "
                    "infinite in the models; rescale or log-transform them."
                )
        bad = ~np.isfinite(v)
        if bad.any():
            n_nan = int(np.isnan(v).sum())
            n_inf = int(bad.sum()) - n_nan
            raise ValueError(
                f"{what} holds {n_nan} NaN and {n_inf} infinite values; impute or drop them before using rnapaint."
            )


def check_count(value, name: str) -> int:
    """``value`` as an int if it is a whole number ≥ 1 (not a bool, float or string), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r} ({type(value).__name__}).")
    return int(value)


def check_nonnegative(x, what: str = "counts") -> None:
    """Raise if an array that should hold counts has negative entries."""
    v = _values(x)
    if v.size and v.min() < 0:
        raise ValueError(
            f"{what} holds {int((v < 0).sum())} negative values (min {v.min():.3g}); "
            "counts cannot be negative: was the data already centred or log-ratio transformed?"
        )


def check_unique(names: Iterable[str], what: str = "gene names") -> None:
    """Raise if names are duplicated, listing a few of the duplicates."""
    names = list(names)
    seen: set[str] = set()
    dups: list[str] = []
    for n in names:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    if dups:
        shown = ", ".join(map(str, dups[:5]))
        raise ValueError(
            f"{len(dups)} duplicated {what} (e.g. {shown}); make them unique "
            "(adata.var_names_make_unique()) or aggregate them first."
        )


def check_expression(adata, what: str = "adata") -> None:
    """All checks that an expression AnnData must pass before any computation."""
    check_nonempty(adata, what)
    check_unique(adata.var_names, f"gene names in {what}")
    check_finite(adata.X, f"{what}.X")
