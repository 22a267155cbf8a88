"""Preprocessing: gene alignment, log1p, z-scores, splits — and refusal of bad input."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import rnapaint as rp


def _snapshot(a: ad.AnnData):
    x = a.X.toarray() if sp.issparse(a.X) else np.array(a.X, copy=True)
    return x, a.obs.copy(), a.var.copy(), set(a.uns), set(a.layers)


def _unchanged(a: ad.AnnData, snap) -> bool:
    x, obs, var, uns, layers = snap
    ax = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    return (
        np.array_equal(ax, x, equal_nan=True)
        and a.obs.equals(obs)
        and a.var.equals(var)
        and set(a.uns) == uns
        and set(a.layers) == layers
    )


# ---------------------------------------------------------------- align_genes
@pytest.mark.parametrize("sparse", [False, True])
def test_align_genes_reorders_and_zero_fills(counts_adata, sparse):
    a = counts_adata
    if sparse:
        a.X = sp.csr_matrix(a.X)
    a.layers["counts"] = a.X.copy()
    panel = ["g3", "g0", "NEW1", "g24", "NEW2"]
    out = rp.pp.align_genes(a, panel, min_overlap=0.5)
    x = out.X.toarray() if sp.issparse(out.X) else out.X
    src = a.X.toarray() if sp.issparse(a.X) else a.X
    assert list(out.var_names) == panel
    np.testing.assert_array_equal(x[:, 0], src[:, 3])
    np.testing.assert_array_equal(x[:, 3], src[:, 24])
    assert (x[:, [2, 4]] == 0).all()
    assert out.var["rp_missing"].tolist() == [False, False, True, False, True]
    info = out.uns["rnapaint"]["align_genes"]
    assert info["n_found"] == 3 and info["missing"] == ["NEW1", "NEW2"]
    lay = out.layers["counts"]
    np.testing.assert_array_equal((lay.toarray() if sp.issparse(lay) else lay)[:, 1], src[:, 0])
    assert a.n_vars == 25  # input untouched


def test_align_genes_low_overlap_raises(counts_adata):
    with pytest.raises(ValueError, match="below min_overlap"):
        rp.pp.align_genes(counts_adata, ["g0", "x1", "x2", "x3"], min_overlap=0.5)
    with pytest.raises(ValueError, match="duplicated genes in the panel"):
        rp.pp.align_genes(counts_adata, ["g0", "g0"])


# ---------------------------------------------------------------- log1p
def test_log1p_counts(counts_adata):
    a = counts_adata
    raw = a.X.copy()
    rp.pp.log1p(a)
    np.testing.assert_allclose(a.X, np.log1p(raw), rtol=1e-6)
    np.testing.assert_array_equal(a.layers["counts"], raw)
    with pytest.raises(ValueError, match="already log1p"):
        rp.pp.log1p(a)


def test_log1p_missing_layer(counts_adata):
    with pytest.raises(ValueError, match="no layer"):
        rp.pp.log1p(counts_adata, layer="raw")


def test_log1p_refuses_logged_values(counts_adata):
    a = counts_adata
    a.X = np.log2(a.X + 1.0).astype(np.float32)
    snap = _snapshot(a)
    with pytest.raises(ValueError, match="look log-transformed"):
        rp.pp.log1p(a)
    assert _unchanged(a, snap)
    out = rp.pp.log1p(a, force=True, copy=True)
    assert out is not None and _unchanged(a, snap)


@pytest.mark.parametrize(
    ("poison", "match"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-3.0, "negative")],
)
def test_log1p_bad_values_leave_input_unchanged(counts_adata, poison, match):
    a = counts_adata
    a.X[2, 3] = poison
    snap = _snapshot(a)
    with pytest.raises(ValueError, match=match):
        rp.pp.log1p(a)
    assert _unchanged(a, snap)


def test_empty_and_duplicated_genes_raise(counts_adata):
    empty = counts_adata[:0].copy()
    with pytest.raises(ValueError, match="empty"):
        rp.pp.zscore(empty)
    dup = counts_adata.copy()
    dup.var_names = ["g0"] * 2 + [f"g{i}" for i in range(2, 25)]
    snap = _snapshot(dup)
    with pytest.raises(ValueError, match="duplicated gene names"):
        rp.pp.log1p(dup)
    assert _unchanged(dup, snap)


# ---------------------------------------------------------------- zscore
def test_zscore_fits_on_train_only(small_adata):
    a = small_adata
    a.X[(a.obs["split"] == "test").to_numpy(), 0] += 100.0  # a test-only shift must not leak
    x0 = a.X.copy()
    rp.pp.zscore(a)
    train = (a.obs["split"] == "train").to_numpy()
    np.testing.assert_allclose(a.var["rp_mean"], x0[train].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.X[train].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(a.X[train].std(0), 1.0, atol=1e-4)
    assert a.X[~train & (a.obs["split"] == "test").to_numpy(), 0].mean() > 10
    assert a.uns["rnapaint"]["zscore"]["fit_on"] == "train"


def test_zscore_reference_applies_training_statistics(small_adata):
    a = small_adata
    other = a.copy()
    other.X = other.X * 2 + 1
    raw_other = other.X.copy()
    rp.pp.zscore(a)
    rp.pp.zscore(other, reference=a)
    np.testing.assert_array_equal(other.var["rp_mean"], a.var["rp_mean"])
    expected = (raw_other - a.var["rp_mean"].to_numpy()) / a.var["rp_std"].to_numpy()
    np.testing.assert_allclose(other.X, expected, rtol=1e-5, atol=1e-5)
    assert other.uns["rnapaint"]["zscore"]["fit_on"] == "reference"
    wrong = other[:, ::-1].copy()
    with pytest.raises(ValueError, match="align_genes"):
        rp.pp.zscore(wrong, reference=a)


def test_zscore_sets_zero_filled_genes_to_the_training_mean(small_adata):
    a = small_adata
    rp.pp.zscore(a)
    ext = small_adata.copy()
    ext.X = ext.X * a.var["rp_std"].to_numpy() + a.var["rp_mean"].to_numpy()  # back to the raw scale
    ext = rp.pp.align_genes(ext[:, 2:].copy(), a.var_names, min_overlap=0.5)  # g0, g1 missing: zero-filled
    rp.pp.zscore(ext, reference=a)
    assert (ext.X[:, :2] == 0).all() and ext.uns["rnapaint"]["zscore"]["n_missing_set_to_mean"] == 2
    np.testing.assert_allclose(ext.X[:, 2:], a.X[:, 2:], atol=1e-4)


def test_zscore_constant_gene_and_no_split_warns():
    a = ad.AnnData(X=np.c_[np.ones(10), np.arange(10.0)].astype(np.float32), var=pd.DataFrame(index=["const", "ramp"]))
    with pytest.warns(UserWarning, match="fitting z-scores on all"):
        rp.pp.zscore(a)
    assert np.isfinite(a.X).all() and (a.X[:, 0] == 0).all()
    assert a.uns["rnapaint"]["zscore"]["n_constant"] == 1


def test_zscore_nan_leaves_input_unchanged(small_adata):
    a = small_adata
    a.X[0, 0] = np.nan
    snap = _snapshot(a)
    with pytest.raises(ValueError, match="NaN"):
        rp.pp.zscore(a)
    assert _unchanged(a, snap)


# ---------------------------------------------------------------- split
def test_split_fractions_strata_and_groups():
    n_pat = 100
    obs = pd.DataFrame(
        {
            "patient": np.repeat([f"p{i}" for i in range(n_pat)], 2),
            "cohort": np.repeat(np.where(np.arange(n_pat) < 70, "A", "B"), 2),
            "sample_type": np.tile(["tumor", "normal"], n_pat),
        }
    )
    obs.index = [f"s{i}" for i in range(len(obs))]
    a = ad.AnnData(X=np.zeros((len(obs), 2), np.float32), obs=obs)
    rp.pp.split(a, stratify="cohort", groups="patient", seed=3)
    per_patient = a.obs.groupby("patient", observed=True)["split"].nunique()
    assert (per_patient == 1).all()  # a patient never straddles two splits
    counts = a.obs.drop_duplicates("patient").groupby(["cohort", "split"], observed=True).size()
    assert counts[("A", "train")] == 42 and counts[("A", "test")] == 14
    assert counts[("B", "train")] == 18 and counts[("B", "val")] == 6
    b = a.copy()
    rp.pp.split(b, stratify="cohort", groups="patient", seed=3)
    assert b.obs["split"].equals(a.obs["split"])
    c = rp.pp.split(a, stratify="cohort", groups="patient", seed=4, copy=True)
    assert not c.obs["split"].equals(a.obs["split"])


def test_split_bad_arguments(small_adata):
    with pytest.raises(ValueError, match="sum"):
        rp.pp.split(small_adata, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="no column"):
        rp.pp.split(small_adata, stratify="nope")


def test_split_refuses_duplicated_obs_names_and_overwriting_its_inputs(small_adata):
    a = small_adata.copy()
    a.obs_names = [f"s{i % 10}" for i in range(a.n_obs)]
    snap = _snapshot(a)
    with pytest.raises(ValueError, match=r"obs names must be unique.*\(50 rows repeat an earlier name, e.g. 's0'\)"):
        rp.pp.split(a)
    assert _unchanged(a, snap)
    b = small_adata
    for kw in ({"stratify": "group"}, {"stratify": ["split"]}, {"groups": "split"}):
        key = kw.get("groups") or kw["stratify"]
        key = key if isinstance(key, str) else key[0]
        with pytest.raises(ValueError, match=f"key_added='{key}' is also a stratify/groups column"):
            rp.pp.split(b, key_added=key, **kw)
    assert b.obs["group"].tolist() == ["a"] * 30 + ["b"] * 30


@pytest.mark.parametrize("max_value", [0, -1, -0.5, float("nan")])
def test_zscore_refuses_a_cap_that_is_not_positive(small_adata, max_value):
    snap = _snapshot(small_adata)
    with pytest.raises(ValueError, match="max_value must be a positive number"):
        rp.pp.zscore(small_adata, max_value=max_value)
    assert _unchanged(small_adata, snap)
