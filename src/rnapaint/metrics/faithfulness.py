"""Does a synthetic tile carry its expression? Condition fidelity and expression ↔ image retrieval.

Both work on image features — from :class:`rnapaint.models.TileEncoder` (``encoder=``) or any
``(n, d)`` float array the caller computed — so that the expensive part (encoding tiles) is done
once and the metrics, with their baselines and controls, cost seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _features(x: Any, encoder: Any, name: str) -> np.ndarray:
    """``(n, d)`` float features from features, or from uint8 tiles through ``encoder.encode``."""
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        if encoder is None:
            raise ValueError(
                f"{name} are uint8 tiles: pass encoder= (e.g. a trained rp.models.TileEncoder) or "
                "float features (n, d)."
            )
        if arr.ndim == 5:
            arr = arr.reshape(-1, *arr.shape[2:])
        arr = np.asarray(encoder.encode(arr), np.float32)
    arr = np.asarray(arr, np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be tiles (n, H, W, 3) or features (n, d), got shape {np.asarray(x).shape}.")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty: nothing to score.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} hold NaN or infinite values.")
    return arr


def _tiles_per_unit(x: Any) -> int:
    """k of ``(n, k, H, W, 3)`` tiles; 1 for anything else."""
    shape = np.shape(x)
    return int(shape[1]) if len(shape) == 5 else 1


def _labels(labels: Any, name: str) -> np.ndarray:
    """Labels as strings ``(n,)``; missing ones (NaN, None) are an error, not a class named "nan"."""
    import pandas as pd

    raw = np.asarray(labels, dtype=object).ravel()
    missing = pd.isna(raw)
    if missing.any():
        raise ValueError(f"{name} hold {int(missing.sum())} missing values (NaN/None): drop those units or label them.")
    return raw.astype(str)


def _check_interval(n_boot: int, ci: float) -> None:
    if not 0 < ci < 1 or n_boot < 0:
        raise ValueError(f"ci must be in (0, 1) and n_boot ≥ 0, got ci={ci}, n_boot={n_boot}.")


def _real_classifier(xr: np.ndarray, real_labels: Any, scored_labels: np.ndarray, C: float, per_unit: int = 1):
    """Standardised logistic regression on real features, after checking the labels it will be scored on.

    ``per_unit`` is k for real tiles given as ``(n, k, H, W, 3)`` (one label per unit); features and
    ``(n, H, W, 3)`` tiles need one label each.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    yr = _labels(real_labels, "real_labels")
    if per_unit > 1 and len(yr) * per_unit == len(xr):  # (n, k, ...) tiles, one label per unit
        yr = np.repeat(yr, per_unit)
    if len(yr) != len(xr):
        raise ValueError(f"{len(xr)} real tiles but {len(yr)} real_labels.")
    if len(np.unique(yr)) < 2:
        raise ValueError("real_labels hold a single class: nothing to tell apart.")
    unseen = sorted(set(scored_labels) - set(yr))
    if unseen:
        raise ValueError(f"synthetic labels {unseen} never occur among the real labels.")
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(xr, yr), yr


@dataclass(frozen=True)
class FidelityScore:
    """Accuracy of a real-tile classifier on synthetic tiles, with its controls."""

    accuracy: float
    ci_low: float
    ci_high: float
    balanced_accuracy: float
    chance: float
    shuffled_accuracy: float
    n_train: int
    n_test: int
    n_classes: int

    def __float__(self) -> float:
        return self.accuracy


def condition_fidelity(
    real_tiles: Any,
    real_labels: Any,
    synthetic_tiles: Any,
    synthetic_labels: Any,
    *,
    encoder: Any = None,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    C: float = 1.0,
) -> FidelityScore:
    """Classify synthetic tiles with a classifier trained on real tiles; score against their units' labels.

    RNA-GAN's test (80.5 % on tiles from GEO profiles): if a generator follows its condition, tiles
    painted from units of label ``k`` look like real tiles of label ``k``. Pass held-out *real* tiles
    as ``synthetic_tiles`` for the ceiling.

    Parameters
    ----------
    real_tiles
        Training tiles uint8 ``(n, H, W, 3)`` / ``(n, k, H, W, 3)`` (with ``encoder``) or features ``(n, d)``.
    real_labels
        ``(n,)`` labels (cluster, section, tissue...), one per tile or, for ``(n, k, H, W, 3)`` tiles,
        one per ``n``; missing labels are an error.
    synthetic_tiles, synthetic_labels
        Tiles (or features) to score, and the labels of the units they were made from.
    encoder
        Has ``encode(tiles) -> (n, d)``, e.g. :class:`rnapaint.models.TileEncoder`.
    n_boot, ci, seed
        Bootstrap interval over units: the synthetic tiles, or, when ``synthetic_labels`` has one
        label per unit for several tiles each, the units with all their tiles.
    C
        Inverse regularisation of the logistic regression (on standardised features).

    Returns
    -------
    :class:`FidelityScore`: ``accuracy`` with its interval, ``balanced_accuracy``, ``chance`` (the
    share of the most frequent label among the scored units: the best that always giving one answer
    can score) and ``shuffled_accuracy`` (the same tiles against permuted labels: a control that
    should sit near or below chance; one permutation can land a little above it).
    """
    from sklearn.metrics import balanced_accuracy_score

    _check_interval(n_boot, ci)
    xr = _features(real_tiles, encoder, "real_tiles")
    xs = _features(synthetic_tiles, encoder, "synthetic_tiles")
    ys = _labels(synthetic_labels, "synthetic_labels")
    per_unit = 1
    if len(ys) != len(xs):
        if len(xs) % max(len(ys), 1) == 0 and len(ys):  # several tiles per unit, unit-major as rp.tl.generate
            per_unit = len(xs) // len(ys)
            ys = np.repeat(ys, per_unit)
        else:
            raise ValueError(f"{len(xs)} synthetic tiles but {len(ys)} synthetic_labels.")
    clf, yr = _real_classifier(xr, real_labels, ys, C, _tiles_per_unit(real_tiles))
    classes = np.unique(yr)
    pred = clf.predict(xs)
    hit = pred == ys
    rng = np.random.default_rng(seed)
    # Resample units, not tiles: a unit's tiles share its condition, so they are not independent draws.
    unit_hit = hit.reshape(-1, per_unit).mean(1)
    boots = [unit_hit[rng.integers(0, len(unit_hit), len(unit_hit))].mean() for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2]) if n_boot else (np.nan, np.nan)
    # The best any label-blind constant answer scores on these units: no tie-breaking between near-equal
    # training classes decides what "chance" is.
    largest_share = np.unique(ys, return_counts=True)[1].max() / len(ys)
    return FidelityScore(
        accuracy=float(hit.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        balanced_accuracy=float(balanced_accuracy_score(ys, pred)),
        chance=float(largest_share),
        shuffled_accuracy=float(np.mean(pred == rng.permutation(ys))),
        n_train=len(xr),
        n_test=len(xs),
        n_classes=len(classes),
    )


@dataclass(frozen=True)
class FidelityDifference:
    """Condition fidelity of generator A minus generator B on the same units, with a paired interval."""

    difference: float
    ci_low: float
    ci_high: float
    accuracy_a: float
    accuracy_b: float
    p_not_greater: float
    n_units: int

    def __float__(self) -> float:
        return self.difference


def fidelity_difference(
    real_tiles: Any,
    real_labels: Any,
    tiles_a: Any,
    tiles_b: Any,
    unit_labels: Any,
    *,
    encoder: Any = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    C: float = 1.0,
) -> FidelityDifference:
    """Is generator A more faithful than generator B? A paired bootstrap over the units both painted.

    Separate intervals for two generators overlap even when one wins on almost every resample of the
    same units, because both share the units' difficulty. Here one classifier (trained on real
    tiles, as in :func:`condition_fidelity`) scores both generators' tiles of the *same* units, and
    the units are resampled together, so the interval is that of the difference itself.

    Parameters
    ----------
    real_tiles, real_labels
        Classifier training data: tiles (with ``encoder``) or features ``(n, d)``, and ``(n,)`` labels.
    tiles_a, tiles_b
        Each generator's tiles for the same ``m`` units, unit-major: ``(m, k, H, W, 3)`` or ``(m · k, …)``
        (``k`` may differ between A and B), or features ``(m · k, d)``.
    unit_labels
        ``(m,)`` label of each unit.
    encoder
        Has ``encode(tiles) -> (n, d)``.
    n_boot, ci, seed
        Bootstrap over units.
    C
        Inverse regularisation of the logistic regression.

    Returns
    -------
    :class:`FidelityDifference`: ``difference`` (A − B accuracy) with its interval, both accuracies,
    and ``p_not_greater`` — the share of resamples in which A does not beat B (a one-sided bootstrap
    p-value for "A is more faithful").
    """
    _check_interval(n_boot, ci)
    xr = _features(real_tiles, encoder, "real_tiles")
    yu = _labels(unit_labels, "unit_labels")
    if len(yu) == 0:
        raise ValueError("unit_labels is empty: no units to compare.")
    clf, _ = _real_classifier(xr, real_labels, yu, C, _tiles_per_unit(real_tiles))

    def unit_hits(tiles: Any, name: str) -> np.ndarray:
        x = _features(tiles, encoder, name)
        if len(x) % len(yu):
            raise ValueError(f"{name}: {len(x)} tiles are not a whole number of tiles for each of {len(yu)} units.")
        hit = clf.predict(x) == np.repeat(yu, len(x) // len(yu))
        return hit.reshape(len(yu), -1).mean(1)  # each unit's share of correctly classified tiles

    a, b = unit_hits(tiles_a, "tiles_a"), unit_hits(tiles_b, "tiles_b")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(yu), (n_boot, len(yu)))
    boots = a[idx].mean(1) - b[idx].mean(1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2]) if n_boot else (np.nan, np.nan)
    return FidelityDifference(
        difference=float(a.mean() - b.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        p_not_greater=float(np.mean(boots <= 0)) if n_boot else np.nan,
        n_units=len(yu),
    )


@dataclass(frozen=True)
class RetrievalScore:
    """Top-k accuracy of finding a tile's source expression among candidates."""

    top1: float
    top5: float
    chance_top1: float
    chance_top5: float
    n_queries: int
    n_candidates: int


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return [(a - mu) / sd for a in (train, *others)]


def retrieval(
    train_expression: Any,
    train_tiles: Any,
    query_expression: Any,
    query_tiles: Any,
    *,
    encoder: Any = None,
    dim: int = 64,
    epochs: int = 300,
    temperature: float = 0.1,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> RetrievalScore:
    """Contrastive expression ↔ image model trained on real pairs; rank each query tile's source profile.

    A CLIP-style pair of linear maps (expression → ``dim``, image features → ``dim``) is fitted with
    the symmetric InfoNCE loss on the training pairs. Each query tile is then compared with all
    query profiles (the candidates, its own among them): top-1 / top-5 say how often the source
    ranks first / in the first five. Real held-out tiles give the ceiling; a generator that ignores
    expression sits at chance (``1 / n_candidates``).

    Parameters
    ----------
    train_expression
        ``(n, g)`` expression (or its latent) of the training units.
    train_tiles
        ``(n, H, W, 3)`` tiles (with ``encoder``) or ``(n, d)`` image features, one per unit.
    query_expression
        ``(m, g)`` candidate profiles.
    query_tiles
        ``(m, H, W, 3)``, ``(m, k, H, W, 3)`` (k tiles per unit) or features ``(m·k, d)`` in unit-major
        order.
    encoder
        Has ``encode(tiles) -> (n, d)``.
    dim, epochs, temperature, lr, weight_decay, seed
        The contrastive model (full-batch Adam on the CPU; small data).

    Returns
    -------
    :class:`RetrievalScore`.
    """
    import torch

    ex_tr = _features(train_expression, None, "train_expression")
    ex_q = _features(query_expression, None, "query_expression")
    im_tr = _features(train_tiles, encoder, "train_tiles")
    im_q = _features(query_tiles, encoder, "query_tiles")
    if len(ex_tr) != len(im_tr):
        raise ValueError(f"{len(ex_tr)} training profiles but {len(im_tr)} training tiles.")
    if len(im_q) % len(ex_q):
        raise ValueError(f"{len(im_q)} query tiles is not a multiple of {len(ex_q)} query profiles.")
    if ex_tr.shape[1] != ex_q.shape[1] or im_tr.shape[1] != im_q.shape[1]:
        raise ValueError("train and query features differ in width.")
    if len(ex_q) < 5:
        raise ValueError(f"Need at least 5 candidate profiles, got {len(ex_q)}.")
    ex_tr, ex_q = _standardise(ex_tr, ex_q)
    im_tr, im_q = _standardise(im_tr, im_q)
    g = torch.Generator().manual_seed(seed)
    fe = torch.nn.Linear(ex_tr.shape[1], dim)
    fi = torch.nn.Linear(im_tr.shape[1], dim)
    for lin in (fe, fi):
        torch.nn.init.normal_(lin.weight, std=lin.in_features**-0.5, generator=g)
        torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.Adam([*fe.parameters(), *fi.parameters()], lr=lr, weight_decay=weight_decay)
    e, i = torch.from_numpy(ex_tr), torch.from_numpy(im_tr)
    target = torch.arange(len(e))
    for _ in range(epochs):
        a = torch.nn.functional.normalize(fe(e), dim=1)
        b = torch.nn.functional.normalize(fi(i), dim=1)
        logits = a @ b.T / temperature
        loss = (
            torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        a = torch.nn.functional.normalize(fe(torch.from_numpy(ex_q)), dim=1)
        b = torch.nn.functional.normalize(fi(torch.from_numpy(im_q)), dim=1)
        sim = (b @ a.T).numpy()  # (query tiles, candidate profiles)
    k = len(im_q) // len(ex_q)
    source = np.repeat(np.arange(len(ex_q)), k)
    rank = (sim > sim[np.arange(len(sim)), source][:, None]).sum(1)  # candidates scoring above the source
    m = len(ex_q)
    return RetrievalScore(
        top1=float(np.mean(rank < 1)),
        top5=float(np.mean(rank < 5)),
        chance_top1=1 / m,
        chance_top5=min(5, m) / m,
        n_queries=len(im_q),
        n_candidates=m,
    )
