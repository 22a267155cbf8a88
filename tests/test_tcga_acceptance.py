"""Acceptance on real TCGA tumour/normal data: reconstruction, latent structure, synthesis, shifts.

One β-VAE (a CPU-size version of RNA-GAN's: hidden 512/256, latent 64, β 0.005) is trained once
on the training patients; every claim is checked on held-out patients or against real data.
"""

from __future__ import annotations

import numpy as np
import pytest

import rnapaint as rp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tcga(data_root):
    a = rp.datasets.tcga_tumor_normal(data_root)
    rp.pp.split(a, stratify=["cohort", "sample_type"], groups="patient", seed=0)
    rp.pp.zscore(a)
    rp.tl.vae(
        a,
        hidden=(512, 256),
        latent_dim=64,
        beta=0.005,
        lr=1e-3,
        max_epochs=100,
        batch_size=128,
        seed=0,
        progress_bar=False,
    )
    return a


def _rows(a, split):
    return (a.obs["split"] == split).to_numpy()


def test_split_keeps_patients_apart(tcga):
    per_patient = tcga.obs.groupby("patient", observed=True)["split"].nunique()
    assert (per_patient == 1).all()


def test_test_split_reconstruction_rmse(tcga):
    rp.tl.reconstruct(tcga, groupby="split")
    table = tcga.uns["reconstruction"]["per_group"]
    print(f"\nreconstruction RMSE (z-score units): {table['rmse'].round(3).to_dict()}")
    assert table.loc["test", "rmse"] < 0.7  # RNA-GAN reports 0.631 on GTEx
    assert table.loc["train", "rmse"] <= table.loc["test", "rmse"] + 0.05


@pytest.mark.parametrize("label", ["cohort", "sample_type"])
def test_latent_knn_predicts_held_out_labels(tcga, label):
    z, y = tcga.obsm["X_vae"], tcga.obs[label].astype(str).to_numpy()
    tr, te = _rows(tcga, "train"), _rows(tcga, "test")
    acc = rp.metrics.knn_accuracy(z[tr], y[tr], z[te], y[te], k=5)
    print(f"\n5-NN {label} accuracy on held-out patients: {acc:.3f}")
    assert acc >= 0.90


def test_synthetic_profiles_are_classified_as_their_group(tcga):
    """Draws around each cohort's tumour centroid are classified as that cohort, and draws around
    its normal centroid as that organ (adjacent-normal lung of LUAD and LUSC patients, or kidney of
    KIRC and KIRP patients, is the same tissue: no classifier can tell those apart)."""
    ref = tcga[_rows(tcga, "train")]
    cohort, tissue = ref.obs["cohort"].astype(str).to_numpy(), ref.obs["tissue"].astype(str).to_numpy()
    results = {}
    for c in tcga.obs["cohort"].cat.categories:
        organ = ref.obs.loc[ref.obs["cohort"] == c, "tissue"].iloc[0]
        s_t = rp.tl.synthetic_expression(ref, ["cohort", "sample_type"], (c, "tumor"), n=50, seed=1)
        s_n = rp.tl.synthetic_expression(ref, ["cohort", "sample_type"], (c, "normal"), n=50, seed=2)
        results[c] = (
            float(np.mean(rp.metrics.knn_predict(ref.X, cohort, s_t.X) == c)),
            float(np.mean(rp.metrics.knn_predict(ref.X, tissue, s_n.X) == organ)),
        )
    print(f"\nsynthetic tumour→cohort, normal→organ: {results}")
    for c, (tumour_acc, normal_acc) in results.items():
        assert tumour_acc >= 0.90, c
        assert normal_acc >= 0.90, c


def test_synthetic_ignoring_the_group_would_fail(tcga):
    """Control: the same classifier does not give a cohort's label to another cohort's draws."""
    ref = tcga[_rows(tcga, "train")]
    s = rp.tl.synthetic_expression(ref, ["cohort", "sample_type"], ("BRCA", "tumor"), n=50)
    pred = rp.metrics.knn_predict(ref.X, ref.obs["cohort"].astype(str).to_numpy(), s.X)
    assert np.mean(pred == "PRAD") < 0.1


def test_shift_normal_to_tumour(tcga):
    hits, total, per = 0, 0, {}
    for c in tcga.obs["cohort"].cat.categories:
        sub = tcga[tcga.obs["cohort"] == c]
        rows = ((sub.obs["sample_type"] == "normal") & (sub.obs["split"] == "test")).to_numpy()
        sh = rp.tl.shift(sub, "sample_type", "normal", "tumor", subset=rows)
        tr = (sub.obs["split"] == "train").to_numpy()
        pred = rp.metrics.knn_predict(sub.X[tr], sub.obs["sample_type"].astype(str).to_numpy()[tr], sh.X)
        # Unshifted, the same held-out normals are classified normal: the shift does the work.
        before = rp.metrics.knn_predict(sub.X[tr], sub.obs["sample_type"].astype(str).to_numpy()[tr], sub.X[rows])
        per[c] = (int((pred == "tumor").sum()), len(sh), int((before == "tumor").sum()))
        hits, total = hits + per[c][0], total + per[c][1]
    print(f"\nshift normal→tumour (tumour after, n, tumour before): {per}; pooled {hits / total:.3f}")
    assert hits / total >= 0.80
    assert sum(p[2] for p in per.values()) / total < 0.2


def test_external_cohort_on_training_scale(tcga, tmp_path):
    """Save → load → encode an 'external' cohort normalised with the training statistics."""
    model = rp.tl.get_model(tcga)
    model.save(tmp_path / "vae")
    held = tcga[_rows(tcga, "test")]
    raw = held.X * held.var["rp_std"].to_numpy() + held.var["rp_mean"].to_numpy()
    ext = held.copy()
    ext.X = raw.astype(np.float32)
    del ext.var["rp_mean"], ext.var["rp_std"]
    ext = rp.pp.align_genes(ext, list(reversed(model.var_names)))  # another gene order
    ext = rp.pp.align_genes(ext, model.var_names)
    rp.pp.zscore(ext, reference=model)
    loaded = rp.models.BetaVAE.load(tmp_path / "vae", adata=ext)
    rp.tl.vae(ext, model=loaded, key_added="X_vae")
    np.testing.assert_allclose(ext.obsm["X_vae"], held.obsm["X_vae"], atol=1e-3)
