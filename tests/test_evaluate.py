"""rp.tl.evaluate ranks a faithful generator above one that ignores its condition; rp.pl.evaluation draws it."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import rnapaint as rp


class ColourStats:
    """A stand-in encoder: per-channel mean, spread and darkness of each tile (fast, deterministic)."""

    def encode(self, tiles):
        t = tiles.reshape(len(tiles), -1, 3).astype(np.float32) / 255
        return np.concatenate([t.mean(1), t.std(1), (t.mean(2) < 0.5).mean(1, keepdims=True)], 1)


@pytest.fixture(scope="module")
def toy():
    a = rp.datasets.toy(n=240, tile_size=32, seed=0)
    a.obsm["X_vae"] = a.obs[["density", "nucleus_size", "hue"]].to_numpy(np.float32)
    a.obs["split"] = np.where(np.arange(a.n_obs) < 160, "train", "test")
    rng = np.random.default_rng(0)
    # "faithful": the unit's own tile re-rendered (a second toy draw of the same programs, noise added);
    # "blind": tiles of random other units
    noisy = a.obsm["tiles"].astype(np.int16) + rng.integers(-6, 7, a.obsm["tiles"].shape)
    a.obsm["faithful"] = np.clip(noisy, 0, 255).astype(np.uint8)
    a.obsm["blind"] = a.obsm["tiles"][rng.permutation(a.n_obs)]
    return a


def test_evaluate_separates_faithful_from_blind(toy, tmp_path):
    report = rp.tl.evaluate(toy, ["faithful", "blind"], label_key="group", encoder=ColourStats(), n_boot=20)
    assert set(report.columns) == {"method", "metric", "value", "ci_low", "ci_high", "chance"}
    v = report.set_index(["method", "metric"])["value"]
    assert set(report["method"]) == {"real (held out)", "nearest neighbour", "faithful", "blind"}
    assert v["faithful", "condition fidelity"] > v["blind", "condition fidelity"] + 0.2
    assert v["faithful", "retrieval top-5"] > 3 * v["blind", "retrieval top-5"]
    assert v["blind", "condition fidelity (shuffled labels)"] < 0.6
    # blind tiles are real tiles too: realism alone cannot tell the two apart, which is the point
    assert abs(v["blind", "KID (encoder)"]) < 0.05
    assert "nuclei density (Wasserstein)" in set(report["metric"])
    # re-rendered and real tiles have no upsampling grid: no checkerboard beyond the real tiles' own
    assert abs(v["faithful", "checkerboard (dB)"] - v["real (held out)", "checkerboard (dB)"]) < 1.0
    fig = rp.pl.evaluation(report, save=tmp_path / "eval.png", show=False)
    assert (tmp_path / "eval.png").stat().st_size > 10_000 and len(fig.axes) >= report["metric"].nunique()


def test_evaluate_contrast_is_paired_difference(toy, tmp_path):
    report = rp.tl.evaluate(
        toy,
        ["faithful", "blind"],
        label_key="group",
        encoder=ColourStats(),
        nuclei=False,
        n_boot=50,
        contrasts=[("faithful", "blind"), ("blind", "faithful")],
    )
    rows = report[report["metric"] == "condition fidelity, A − B (paired)"].set_index("method")
    v = report.set_index(["method", "metric"])["value"]
    gap = v["faithful", "condition fidelity"] - v["blind", "condition fidelity"]
    assert rows.loc["faithful − blind", "value"] == pytest.approx(gap)
    assert rows.loc["faithful − blind", "ci_low"] > 0 and rows.loc["faithful − blind", "p_value"] < 0.01
    assert rows.loc["blind − faithful", "ci_high"] < 0 and rows.loc["blind − faithful", "p_value"] > 0.99
    assert report.loc[report["metric"] != "condition fidelity, A − B (paired)", "p_value"].isna().all()
    fig = rp.pl.evaluation(report, save=tmp_path / "eval.png", show=False)
    # paired panels are drawn against "no difference" at 0, the others against chance
    lines = {
        ax.get_title(): [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")] for ax in fig.axes
    }
    assert lines["condition fidelity, A − B (paired)"] == ["no difference"]
    assert lines["condition fidelity"] == ["chance"]
    with pytest.raises(ValueError, match="label_key"):
        rp.tl.evaluate(toy, ["faithful", "blind"], encoder=ColourStats(), contrasts=[("faithful", "blind")])
    for bad in (("faithful", "x"), ("faithful", "faithful")):
        with pytest.raises(ValueError, match="two different keys"):
            rp.tl.evaluate(toy, ["faithful"], label_key="group", encoder=ColourStats(), contrasts=[bad])


def test_evaluate_ceiling_and_generators_are_scored_at_equal_sizes(toy):
    """FID grows as samples shrink: the ceiling (real test halves A against B) and a generator (real A
    against its first tile for each unit of B) are scored at the same sizes. KID takes every tile and
    its interval resamples units: for a generator that re-draws real tiles, four a unit, it covers 0."""
    rng = np.random.default_rng(1)
    a = toy.copy()
    train = np.flatnonzero(a.obs["split"] == "train")
    a.obsm["redraw"] = a.obsm["tiles"][rng.choice(train, (a.n_obs, 4))][:, :, 0]
    report = rp.tl.evaluate(a, ["redraw"], encoder=ColourStats(), nuclei=False, n_boot=50)
    v = report.set_index(["method", "metric"])
    te = np.flatnonzero(a.obs["split"] == "test")
    halves = np.random.default_rng(0).permutation(len(te))
    half_a, half_b = te[np.sort(halves[:40])], te[np.sort(halves[40:])]
    ref = ColourStats().encode(a.obsm["tiles"][half_a, 0])
    for method, tiles in (("real (held out)", a.obsm["tiles"]), ("redraw", a.obsm["redraw"])):
        expected = rp.metrics.fid(ref, ColourStats().encode(tiles[half_b, 0]), n_boot=0).value
        assert v.loc[(method, "FID (encoder)"), "value"] == pytest.approx(expected, rel=1e-5)
        assert v.loc[(method, "FID (encoder)"), "ci_low"] >= 0  # FID's interval stays where FID lies
    kid_row = v.loc[("redraw", "KID (encoder)")]
    assert kid_row["ci_low"] < 0 < kid_row["ci_high"]


def test_evaluate_bad_input(toy):
    with pytest.raises(ValueError, match="no generated tiles"):
        rp.tl.evaluate(toy, ["nope"], encoder=ColourStats())
    bad = toy.copy()
    bad.obsm["faithful"] = bad.obsm["faithful"].copy()
    bad.obsm["faithful"][-1] = 0
    with pytest.raises(ValueError, match="all-black"):
        rp.tl.evaluate(bad, ["faithful"], encoder=ColourStats())
    with pytest.raises(ValueError, match="no 'nope' column"):
        rp.tl.evaluate(toy, ["faithful"], label_key="nope", encoder=ColourStats())
    unlabelled = toy.copy()
    unlabelled.obs["group"] = unlabelled.obs["group"].astype(object)
    unlabelled.obs.iloc[[3, 200], unlabelled.obs.columns.get_loc("group")] = np.nan
    with pytest.raises(ValueError, match="missing for 2 of the training and test units"):
        rp.tl.evaluate(unlabelled, ["faithful"], label_key="group", encoder=ColourStats())
    nan_rep = toy.copy()
    nan_rep.obsm["X_vae"] = nan_rep.obsm["X_vae"].copy()
    nan_rep.obsm["X_vae"][np.flatnonzero(toy.obs["split"] == "train")[0], 0] = np.nan
    with pytest.raises(ValueError, match=r"obsm\['X_vae'\] holds NaN .* for 1 of"):
        rp.tl.evaluate(nan_rep, ["faithful"], encoder=ColourStats())
    with pytest.raises(ValueError, match="not in the report"):
        rp.pl.evaluation(
            rp.tl.evaluate(toy, ["faithful"], encoder=ColourStats(), nuclei=False, n_boot=0),
            metrics=["nope"],
            show=False,
        )


def _nuclei_unit_tiles(counts: np.ndarray, seed: int, size: int = 64) -> np.ndarray:
    """One pink tile per unit with ``counts[i]`` dark-purple discs (radius 4 px), ``(n, 1, size, size, 3)``."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    out = np.empty((len(counts), 1, size, size, 3), np.uint8)
    for i, n in enumerate(counts):
        img = np.empty((size, size, 3))
        img[:] = (158, 136, 179)
        # centres on a jittered 4 × 4 grid (no two discs touch), n of the 16 cells used
        for cell in rng.choice(16, n, replace=False):
            r, c = (cell // 4) * 16 + 8 + rng.uniform(-2, 2), (cell % 4) * 16 + 8 + rng.uniform(-2, 2)
            img[disk((r, c), 4, shape=(size, size))] = (57, 62, 117)
        out[i, 0] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255)
    return out


def _nuclei_units() -> tuple[ad.AnnData, np.ndarray]:
    """150 units whose tiles hold 2–13 nuclei by unit (real, a faithful redraw, a blind shuffle), and the counts."""
    rng = np.random.default_rng(0)
    counts = rng.choice([2, 3, 7, 8, 12, 13], 150)
    a = ad.AnnData(np.zeros((150, 1), np.float32))
    a.obs["group"] = np.select([counts < 5, counts < 10], ["sparse", "medium"], "dense")
    a.obs["split"] = np.where(np.arange(150) < 100, "train", "test")
    a.obsm["X_vae"] = (counts[:, None] + rng.normal(0, 0.5, (150, 2))).astype(np.float32)
    a.obsm["tiles"] = _nuclei_unit_tiles(counts, seed=1)
    a.obsm["faithful"] = _nuclei_unit_tiles(counts, seed=2)  # the same number of nuclei, drawn again
    a.obsm["blind"] = a.obsm["faithful"][rng.permutation(150)]
    return a, counts


def test_evaluate_in_nuclei_feature_space():
    a, _ = _nuclei_units()
    report = rp.tl.evaluate(
        a,
        ["faithful", "blind"],
        label_key="group",
        features="nuclei",
        mpp=1.0,
        n_boot=50,
        contrasts=[("faithful", "blind")],
    )
    v = report.set_index(["method", "metric"])["value"]
    # nothing trained: nuclei density tells the groups apart on real and faithful tiles, not on blind ones
    assert v["real (held out)", "condition fidelity (nuclei features)"] > 0.9
    assert v["faithful", "condition fidelity (nuclei features)"] > 0.9
    assert v["blind", "condition fidelity (nuclei features)"] < 0.6
    assert v["faithful", "retrieval top-5 (nuclei features)"] > 2 * v["blind", "retrieval top-5 (nuclei features)"]
    paired = report[report["metric"] == "condition fidelity, A − B (paired, nuclei features)"].iloc[0]
    assert paired["method"] == "faithful − blind" and paired["ci_low"] > 0.2
    assert {"KID (nuclei features)", "FID (nuclei features)"} <= set(report["metric"])
    assert "KID (encoder)" not in set(report["metric"])
    # standardised with the real *training* tiles' statistics only
    enc = rp.metrics.NucleiFeatures(mpp=1.0)
    tr, te = np.arange(100), np.arange(100, 150)
    x_tr = enc.encode(a.obsm["tiles"][tr, 0])
    mu, sd = x_tr.mean(0), x_tr.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    ref, gen = (enc.encode(a.obsm["tiles"][te, 0]) - mu) / sd, (enc.encode(a.obsm["faithful"][te, 0]) - mu) / sd
    assert v["faithful", "KID (nuclei features)"] == pytest.approx(
        rp.metrics.kid(ref, gen, subset_size=50, n_boot=50, seed=0).value, rel=1e-5
    )
    # The real ceiling compares two halves A and B of the real test tiles. FID and the nuclei distances
    # grow as samples shrink, so every method is scored at those sizes: real A against its tiles of B.
    halves = np.random.default_rng(0).permutation(50)
    half_a, half_b = halves[:25], halves[25:]
    frame = rp.metrics.nuclei(a.obsm["tiles"][te, 0], mpp=1.0)
    expected = rp.metrics.compare_nuclei(frame.iloc[half_a], frame.iloc[half_b]).set_index("feature")
    assert v["real (held out)", "nuclei count (Wasserstein)"] == pytest.approx(expected.loc["count", "wasserstein"])
    assert expected.loc["count", "wasserstein"] > 0
    faithful = rp.metrics.nuclei(a.obsm["faithful"][te, 0], mpp=1.0)
    expected = rp.metrics.compare_nuclei(frame.iloc[half_a], faithful.iloc[half_b]).set_index("feature")
    assert v["faithful", "nuclei count (Wasserstein)"] == pytest.approx(expected.loc["count", "wasserstein"])
    assert v["faithful", "FID (nuclei features)"] == pytest.approx(
        rp.metrics.fid(ref[half_a], gen[half_b], n_boot=0).value, rel=1e-5
    )
    assert v["real (held out)", "FID (nuclei features)"] == pytest.approx(
        rp.metrics.fid(ref[half_a], ref[half_b], n_boot=0).value, rel=1e-5
    )
    # without baselines and nuclei rows, the same fidelity
    lean = rp.tl.evaluate(
        a, ["faithful"], label_key="group", features="nuclei", mpp=1.0, n_boot=50, baselines=False, nuclei=False
    )
    w = lean.set_index(["method", "metric"])["value"]
    assert set(lean["method"]) == {"faithful"} and not lean["metric"].str.contains("Wasserstein").any()
    assert (
        w["faithful", "condition fidelity (nuclei features)"] == v["faithful", "condition fidelity (nuclei features)"]
    )
    with pytest.raises(ValueError, match="leave encoder=None"):
        rp.tl.evaluate(a, ["faithful"], features="nuclei", encoder=ColourStats())
    with pytest.raises(ValueError, match="'encoder' or 'nuclei'"):
        rp.tl.evaluate(a, ["faithful"], features="inception")


def test_evaluate_adds_composition_agreement_with_the_cell_shares():
    a, counts = _nuclei_units()
    rng = np.random.default_rng(3)
    epithelial = np.clip(counts / 13 + rng.normal(0, 0.05, 150), 0, 1)
    epithelial[[100, 101]] = np.nan  # two test units without a deconvolution
    shares = pd.DataFrame({"Epithelial": epithelial, "Stroma": 1 - epithelial}, index=a.obs_names)
    a.obsm["cell_type_proportions"] = shares
    pairs = {"count": "Epithelial", "hematoxylin_fraction": "Epithelial"}
    kw = {"composition": pairs, "contrasts": [("faithful", "blind")], "mpp": 1.0, "n_boot": 100}
    report = rp.tl.evaluate(a, ["faithful", "blind"], features="nuclei", **kw)
    rho = report.set_index(["method", "metric"])
    # nuclei follow the share in the real and faithful tiles, not in the blind ones
    for method in ("real (held out)", "faithful", "nearest neighbour"):
        assert rho.loc[(method, "ρ(count, Epithelial)"), "ci_low"] > 0.7
    assert abs(rho.loc[("blind", "ρ(count, Epithelial)"), "value"]) < 0.35
    assert rho.loc[("faithful", "ρ(count, Epithelial)"), "n_units"] == 48  # the NaN shares left out
    d = rho.loc[("faithful − blind", "ρ(count, Epithelial), A − B (paired)")]
    assert d["ci_low"] > 0.4 and d["p_value"] < 0.01 and d["chance"] == 0
    # the same rows as the metric on the test units' tiles (evaluate reuses the nuclei it measured)
    te = np.arange(100, 150)
    direct = rp.metrics.composition_agreement(
        {"faithful": a.obsm["faithful"][te], "real (held out)": a.obsm["tiles"][te, :1]},
        shares.iloc[te].reset_index(drop=True),
        pairs,
        mpp=1.0,
        n_boot=100,
    ).set_index(["method", "metric"])
    for key in direct.index:
        assert rho.loc[key, "value"] == pytest.approx(direct.loc[key, "value"])
        assert rho.loc[key, "ci_low"] == pytest.approx(direct.loc[key, "ci_low"])
    # measured afresh when nothing else measured nuclei: the same values
    lean = rp.tl.evaluate(a, ["faithful", "blind"], encoder=ColourStats(), nuclei=False, **kw)
    lean = lean[lean["metric"].str.startswith("ρ(")].set_index(["method", "metric"])
    assert len(lean) == 10
    assert np.allclose(lean["value"], rho.loc[lean.index, "value"])
    # without composition nothing is added, and contrasts need labels or composition
    plain = rp.tl.evaluate(a, ["faithful"], features="nuclei", mpp=1.0, n_boot=10)
    assert not plain["metric"].str.startswith("ρ(").any()
    with pytest.raises(ValueError, match="pass label_key or composition"):
        rp.tl.evaluate(a, ["faithful", "blind"], features="nuclei", contrasts=[("faithful", "blind")])
    with pytest.raises(ValueError, match="no 'cells'"):
        rp.tl.evaluate(a, ["faithful"], features="nuclei", composition=pairs, proportions_key="cells")
    a.obsm["as_array"] = shares.to_numpy()
    with pytest.raises(ValueError, match="must be a DataFrame"):
        rp.tl.evaluate(a, ["faithful"], features="nuclei", composition=pairs, proportions_key="as_array")
    with pytest.raises(ValueError, match=r"no column \['Immune'\]"):
        rp.tl.evaluate(a, ["faithful"], features="nuclei", composition={"count": "Immune"})
    a.obsm["cell_type_proportions"] = shares.assign(Epithelial=np.where(np.arange(150) < 145, np.nan, 0.5))
    with pytest.raises(ValueError, match="only 5 test units"):
        rp.tl.evaluate(a, ["faithful"], features="nuclei", composition=pairs)


def test_a_misspelt_split_key_warns_that_test_units_train(toy):
    """Training falls back to every unit when split_key names no column: a typo must not leak test units
    into training (and so into a later evaluate) without a word."""
    import warnings

    small = toy[:48].copy()
    train = {"max_steps": 1, "batch_size": 8, "num_workers": 0, "progress_bar": False, "model_kwargs": {"width": 8}}
    with pytest.warns(UserWarning, match="no 'Split' column: training on every unit, test units included"):
        rp.tl.train_generator(small, small.obsm["tiles"], method="gan", split_key="Split", **train)
    with pytest.warns(UserWarning, match="no 'Split' column: training on a random 90 %"):
        rp.tl.vae(small, hidden=(8,), latent_dim=2, max_epochs=1, split_key="Split", progress_bar=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*column: training on.*")
        rp.tl.train_generator(small, small.obsm["tiles"], method="gan", split_key=None, **train)
        rp.tl.train_generator(small, small.obsm["tiles"], method="gan", split_key="split", **train)
