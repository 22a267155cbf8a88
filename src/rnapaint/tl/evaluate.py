"""``rp.tl.evaluate``: one tidy report of realism, faithfulness and cell composition, with baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._logging import logger


def _real_rows(tiles: np.ndarray) -> np.ndarray:
    """Rows whose first tile is not an all-black placeholder (units without an image)."""
    return np.flatnonzero(tiles.reshape(len(tiles), -1).max(1) > 0)


def evaluate(
    adata: ad.AnnData,
    keys: Sequence[str],
    *,
    tiles_key: str = "tiles",
    label_key: str | None = None,
    rep: str = "X_vae",
    split_key: str = "split",
    train: str = "train",
    test: str = "test",
    features: Literal["encoder", "nuclei"] = "encoder",
    encoder: Any = None,
    encoder_kwargs: dict[str, Any] | None = None,
    baselines: bool = True,
    inception: bool = False,
    nuclei: bool = True,
    mpp: float | None = None,
    n_boot: int = 100,
    seed: int = 0,
    contrasts: Sequence[tuple[str, str]] = (),
    composition: Mapping[str, str | Sequence[str]] | None = None,
    proportions_key: str = "cell_type_proportions",
) -> pd.DataFrame:
    """Score generated tiles against real held-out tiles, with the real and nearest-neighbour baselines.

    Parameters
    ----------
    adata
        Units with real tiles ``obsm[tiles_key]`` ``(n, k, H, W, 3)`` (all-black rows: no image), the
        condition ``obsm[rep]``, ``obs[split_key]`` and, for condition fidelity, ``obs[label_key]``.
    keys
        obsm keys of generated tiles ``(n, k, H, W, 3)`` (e.g. from :func:`rnapaint.tl.generate`);
        only the test units' rows are read.
    tiles_key, rep, split_key, train, test
        Where the real tiles, the conditions and the split are.
    label_key
        Labels for condition fidelity (cluster, section, tissue); ``None`` skips it.
    features
        The image features that KID/FID, fidelity and retrieval compare. ``"encoder"``: a tile encoder's
        (``encoder``). ``"nuclei"``: each tile's nuclei features
        (:class:`rnapaint.metrics.NucleiFeatures` — density, size, shape, haematoxylin coverage, small
        round share), standardised with the real training tiles' mean and spread; nothing is trained,
        so the result does not move with an encoder's seed. Its metrics are named
        ``"KID (nuclei features)"``, ``"FID (nuclei features)"``, ``"condition fidelity (nuclei
        features)"``, ``"condition fidelity (nuclei features, shuffled labels)"``, ``"retrieval top-1
        (nuclei features)"`` (and top-5) and ``"condition fidelity, A − B (paired, nuclei features)"``;
        the ``nuclei`` rows keep their names.
    encoder
        With ``features="encoder"``: a trained :class:`rnapaint.models.TileEncoder` (or any object with
        ``encode(tiles) -> (n, d)``); ``None`` trains one (SimCLR) on the training units' real tiles with
        ``encoder_kwargs`` (default 30 epochs).
    baselines
        Add ``"real (held out)"`` (the ceiling: real test tiles; realism between two halves of
        them) and ``"nearest neighbour"`` (the real tile of the training unit closest in ``rep``;
        the fidelity classifier and retrieval were fitted on those training tiles, so its scores
        there are optimistic: a baseline that is hard to beat).
    inception
        Also KID/FID with the standard FID Inception (needs ``rnapaint[fid]``; slow on a CPU).
    nuclei
        Compare the distributions of nuclei features (count, area, haematoxylin...) with the real test
        tiles' (Wasserstein distance).
    mpp
        µm per pixel of the tiles, for nuclei sizes.
    n_boot, seed
        Bootstrap resamples for the intervals.
    contrasts
        Pairs ``(a, b)`` of ``keys``: adds the metric ``"condition fidelity, A − B (paired)"`` (with
        ``features="nuclei"``: ``"… (paired, nuclei features)"``) for
        method ``"a − b"``, the difference with a bootstrap interval over the test units both
        painted (:func:`rnapaint.metrics.fidelity_difference`), ``chance`` 0 (no difference) and a
        ``p_value`` column: the one-sided bootstrap p-value that A is not more faithful. Needs
        ``label_key`` (also without it, with ``composition``: the composition contrasts below).
    composition
        Nuclei feature → cell type(s), e.g. ``{"hematoxylin_fraction": "Epithelial",
        "small_round_fraction": ["T cells", "B cells"]}``: adds, for every method, the Spearman ρ over
        the test units between that nuclei feature of its tiles and the units' cell shares
        (:func:`rnapaint.metrics.composition_agreement`; metric ``"ρ(feature, types)"``, ``chance`` 0,
        ``n_units``), and for each of ``contrasts`` the paired difference (metric ``"ρ(feature,
        types), A − B (paired)"``, with ``p_value``). A rank correlation within one method does not
        move when all its tiles shift together, so it tells faithfulness apart from realism, which
        condition fidelity's classifier (trained on real tiles) also scores.
    proportions_key
        obsm key of the units' cell shares, a ``DataFrame`` with one column per cell type (from a
        deconvolution: stereoscope, cell2location, ...); units whose shares are NaN are left out of
        the correlations.

    Returns
    -------
    Tidy ``DataFrame`` with columns ``method, metric, value, ci_low, ci_high, chance`` (and
    ``p_value``, filled for the ``contrasts`` rows only; with ``composition``, ``n_units`` for its
    rows); plot it with :func:`rnapaint.pl.evaluation`.
    The test units are split into two random halves A and B. FID and the nuclei Wasserstein
    distances grow as samples shrink, so they compare every method at the ceiling's sizes: the real
    tiles of A against the method's first tile for each unit of B (the ceiling: the real tiles of B).
    KID, unbiased at any size, compares all real test tiles with all of a method's tiles (the
    ceiling: A against B); its interval resamples units with all their tiles.
    Every method also gets ``"checkerboard (dB)"`` (:func:`rnapaint.metrics.checkerboard`: spectral peaks
    of stride-2 upsampling; the real tiles' own value is the reference) when the tiles are at least
    8 px and divisible by 2.
    """
    from ..metrics import (
        NucleiFeatures,
        checkerboard,
        composition_agreement,
        condition_fidelity,
        fid,
        fidelity_difference,
        kid,
        retrieval,
    )
    from ..metrics import compare_nuclei as _compare_nuclei
    from ..metrics.composition import check_pairs
    from ..models import TileEncoder

    if features not in ("encoder", "nuclei"):
        raise ValueError(f"features must be 'encoder' or 'nuclei', got {features!r}.")
    if features == "nuclei" and encoder is not None:
        raise ValueError("features='nuclei' measures nuclei and trains nothing: leave encoder=None.")
    if tiles_key not in adata.obsm:
        raise ValueError(f"adata.obsm has no {tiles_key!r} (real tiles).")
    missing = [k for k in keys if k not in adata.obsm]
    if missing:
        raise ValueError(f"adata.obsm has no generated tiles under {missing}.")
    if split_key not in adata.obs:
        raise ValueError(f"adata.obs has no {split_key!r} column.")
    if rep not in adata.obsm:
        raise ValueError(f"adata.obsm has no {rep!r} (the condition: nearest-neighbour baseline, retrieval).")
    real = np.asarray(adata.obsm[tiles_key])
    if real.ndim != 5 or real.dtype != np.uint8:
        raise ValueError(f"obsm[{tiles_key!r}] must be uint8 (n, k, H, W, 3), got {real.dtype} {real.shape}.")
    split = adata.obs[split_key].astype(str).to_numpy()
    with_image = np.zeros(adata.n_obs, bool)
    with_image[_real_rows(real[:, 0])] = True
    tr = np.flatnonzero((split == train) & with_image)
    te = np.flatnonzero((split == test) & with_image)
    if len(tr) < 10 or len(te) < 10:
        raise ValueError(f"Need at least 10 training and 10 test units with real tiles, got {len(tr)} and {len(te)}.")
    z = np.asarray(adata.obsm[rep], np.float32)
    if z.ndim != 2 or len(z) != adata.n_obs:
        raise ValueError(f"obsm[{rep!r}] must be (n_obs, d) conditions, got shape {z.shape}.")
    bad_rows = ~np.isfinite(z[np.r_[tr, te]]).all(1)
    if bad_rows.any():  # checked before any tile is measured or an encoder trained
        raise ValueError(
            f"obsm[{rep!r}] holds NaN or infinite values for {int(bad_rows.sum())} of the training and test "
            "units: recompute it (rp.tl.vae) or leave those units out."
        )
    labels = None
    if label_key is not None:
        if label_key not in adata.obs:
            raise ValueError(f"adata.obs has no {label_key!r} column (label_key, for condition fidelity).")
        missing = adata.obs[label_key].isna().to_numpy()[np.r_[tr, te]]
        if missing.any():
            raise ValueError(
                f"obs[{label_key!r}] is missing for {int(missing.sum())} of the training and test units with "
                "tiles: label them, or leave them out of adata."
            )
        labels = adata.obs[label_key].astype(str).to_numpy()
    contrasts = [tuple(c) for c in contrasts]
    bad = [c for c in contrasts if len(c) != 2 or not set(c) <= set(keys) or c[0] == c[1]]
    if bad:
        raise ValueError(f"contrasts must be pairs of two different keys of {list(keys)}, got {bad}.")
    if contrasts and labels is None and composition is None:
        raise ValueError(
            "contrasts compare condition fidelity or composition agreement: pass label_key or composition."
        )
    shares = None
    if composition is not None:
        if proportions_key not in adata.obsm:
            raise ValueError(f"adata.obsm has no {proportions_key!r} (cell shares, for composition).")
        shares = adata.obsm[proportions_key]
        if not isinstance(shares, pd.DataFrame):
            raise ValueError(
                f"obsm[{proportions_key!r}] must be a DataFrame with one column per cell type, "
                f"got {type(shares).__name__}."
            )
        cells = check_pairs(composition, shares.columns)
        for feat, types in cells.items():
            known = np.isfinite(shares[types].to_numpy(float)[te]).all(1).sum()
            if known < 10:
                raise ValueError(
                    f"composition {feat!r}: only {known} test units with tiles have finite {types} shares "
                    f"in obsm[{proportions_key!r}]; need at least 10."
                )

    if features == "encoder" and encoder is None:
        kw = {"epochs": 30, "batch_size": 128, "progress_bar": False, "seed": seed, **(encoder_kwargs or {})}
        logger.info(f"Training a TileEncoder (SimCLR) on {len(tr)} real training tiles for the evaluation.")
        encoder = TileEncoder(stem="large" if real.shape[2] >= 128 else "small").fit(real[tr, 0], **kw)

    methods: dict[str, np.ndarray] = {}
    if baselines:
        methods["real (held out)"] = real[te, :1]
        d = ((z[te, None, :] - z[None, tr, :]) ** 2).sum(-1)
        methods["nearest neighbour"] = real[tr[d.argmin(1)]]
    for k in keys:
        gen = np.asarray(adata.obsm[k])[te]
        if gen.ndim != 5 or gen.dtype != np.uint8 or gen.shape[2:] != real.shape[2:]:
            raise ValueError(
                f"obsm[{k!r}] must be uint8 (n, k, {real.shape[2]}, {real.shape[3]}, 3), got {gen.dtype} {gen.shape}."
            )
        if (gen.reshape(len(gen), -1).max(1) == 0).any():
            raise ValueError(f"obsm[{k!r}] has test units without generated tiles (all-black rows).")
        methods[k] = gen

    nucleus_features = NucleiFeatures(mpp)
    frames: dict[tuple[str, str], pd.DataFrame] = {}  # nuclei, measured once for both uses

    def nuclei_frame(name: str, real_split: str | None = None) -> pd.DataFrame:
        """Nuclei of the real ``"train"``/``"test"`` tiles (``real_split``) or of method ``name``'s tiles."""
        if name == "real (held out)":  # the baseline holds the real test tiles
            real_split = "test"
        key = ("real", real_split) if real_split else ("method", name)
        if key not in frames:
            if real_split:
                t = real[tr if real_split == "train" else te, 0]
            else:
                t = methods[name].reshape(-1, *real.shape[2:])
            frames[key] = nucleus_features.frame(t)
        return frames[key]

    if features == "nuclei":
        train_feats = nucleus_features.from_frame(nuclei_frame("", "train"))
        # Standardised with the real training tiles only; a feature constant there is left unscaled,
        # not blown up by a tiny spread.
        mu, sd = train_feats.mean(0), train_feats.std(0)
        sd = np.where(sd > 1e-6, sd, 1.0)

        def encode(name: str, real_split: str | None = None) -> np.ndarray:
            return (nucleus_features.from_frame(nuclei_frame(name, real_split)) - mu) / sd

        train_feats = (train_feats - mu) / sd
        ref = encode("", "test")
        feats = {name: ref if name == "real (held out)" else encode(name) for name in methods}
    else:
        ref = encoder.encode(real[te, 0])
        feats = {
            name: ref if name == "real (held out)" else encoder.encode(t.reshape(-1, *t.shape[2:]))
            for name, t in methods.items()
        }
        train_feats = encoder.encode(real[tr, 0])
    space = "nuclei features" if features == "nuclei" else "encoder"
    tag = " (nuclei features)" if features == "nuclei" else ""  # the encoder's names stay as they were
    rows: list[dict[str, Any]] = []

    def add(method, metric, value, lo=np.nan, hi=np.nan, chance=np.nan):
        rows.append(
            {
                "method": method,
                "metric": metric,
                "value": float(value),
                "ci_low": float(lo),
                "ci_high": float(hi),
                "chance": float(chance),
            }
        )

    # The ceiling compares two disjoint halves A and B of the real test units. FID and the nuclei
    # Wasserstein distances grow as samples shrink, so every method is scored at the ceiling's sizes:
    # real A against its tiles for the units of B, one tile each. KID is unbiased at any size: it
    # takes all test units and all their tiles (the interval resamples units).
    halves = np.random.default_rng(seed).permutation(len(te))
    half_a, half_b = np.sort(halves[: len(te) // 2]), np.sort(halves[len(te) // 2 :])

    def first_tiles(f: np.ndarray | pd.DataFrame, units: np.ndarray) -> np.ndarray | pd.DataFrame:
        """Rows of ``f`` (one per tile, unit-major) for the first tile of each of ``units``."""
        rows = units * (len(f) // len(te))
        return f.iloc[rows] if isinstance(f, pd.DataFrame) else f[rows]

    def realism(name: str, f: np.ndarray, reference: np.ndarray, where: str) -> None:
        """KID and FID rows of method ``name`` (features ``f``, one row per tile) against the real test tiles."""
        if name == "real (held out)":
            s = kid(reference[half_a], reference[half_b], subset_size=min(len(half_a), 1000), n_boot=n_boot, seed=seed)
        else:
            units = np.repeat(np.arange(len(te)), len(f) // len(te))
            size = min(len(reference), len(f), 1000)
            s = kid(reference, f, subset_size=size, n_boot=n_boot, seed=seed, fake_units=units)
        add(name, f"KID ({where})", s.value, s.ci_low, s.ci_high)
        s = fid(reference[half_a], first_tiles(f, half_b), n_boot=n_boot, seed=seed)
        add(name, f"FID ({where})", s.value, s.ci_low, s.ci_high)

    h, w = real.shape[2:4]
    periods = [p for p in (2, 4, 8) if h % p == 0 and w % p == 0 and p <= min(h, w) // 4]
    for name in methods:
        f = feats[name]
        realism(name, f, ref, space)
        if periods:  # an artifact the feature-space scores average away
            c = checkerboard(methods[name], periods, n_boot=n_boot, seed=seed)
            add(name, "checkerboard (dB)", c.value, c.ci_low, c.ci_high)
        if labels is not None:
            # one label per unit: the interval resamples units with all their tiles
            s = condition_fidelity(train_feats, labels[tr], f, labels[te], n_boot=n_boot, seed=seed)
            add(name, f"condition fidelity{tag}", s.accuracy, s.ci_low, s.ci_high, s.chance)
            shuffled = f"condition fidelity ({space + ', ' if tag else ''}shuffled labels)"
            add(name, shuffled, s.shuffled_accuracy, chance=s.chance)
        r = retrieval(z[tr], train_feats, z[te], f, seed=seed)
        add(name, f"retrieval top-1{tag}", r.top1, chance=r.chance_top1)
        add(name, f"retrieval top-5{tag}", r.top5, chance=r.chance_top5)
        if nuclei:
            # at the ceiling's sizes, as for FID
            ref_nuc = nuclei_frame("", "test")
            cmp = _compare_nuclei(ref_nuc.iloc[half_a], first_tiles(nuclei_frame(name), half_b))
            for _, row in cmp.iterrows():
                add(name, f"nuclei {row['feature']} (Wasserstein)", row["wasserstein"])
    for a, b in contrasts if labels is not None else ():
        d = fidelity_difference(train_feats, labels[tr], feats[a], feats[b], labels[te], n_boot=n_boot, seed=seed)
        metric = f"condition fidelity, A − B (paired{', ' + space if tag else ''})"
        add(f"{a} − {b}", metric, d.difference, d.ci_low, d.ci_high, chance=0.0)
        rows[-1]["p_value"] = d.p_not_greater
    if shares is not None:
        # The nuclei measured above (when they were), each tile's row mapped back to its test unit.
        measured = {}
        for name, t in methods.items():
            key = ("real", "test") if name == "real (held out)" else ("method", name)
            if key in frames:
                f = frames[key].copy()
                f["unit"] = np.arange(len(f)) // t.shape[1]
                measured[name] = f
            else:
                measured[name] = t
        comp = composition_agreement(
            measured,
            shares.iloc[te].reset_index(drop=True),
            composition,
            mpp=mpp,
            contrasts=contrasts,
            n_boot=n_boot,
            seed=seed,
            progress_bar=False,
        )
        paired = comp["method"].isin([f"{a} − {b}" for a, b in contrasts])
        comp.loc[paired, "metric"] += ", A − B (paired)"
        rows.extend(comp.to_dict("records"))
    if inception:
        from ..metrics import tile_features

        ref_i = tile_features(real[te, 0], "inception")
        for name, t in methods.items():
            realism(name, ref_i if name == "real (held out)" else tile_features(t, "inception"), ref_i, "Inception")
    return pd.DataFrame(rows)
