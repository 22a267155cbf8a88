"""β-VAE model, rp.tl.vae and the latent tools on small synthetic data."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import rnapaint as rp
from model_edits import signed
from rnapaint.models import BetaVAE

TINY = {"hidden": (32, 16), "latent_dim": 4, "max_epochs": 40, "batch_size": 12, "lr": 1e-2, "progress_bar": False}


@pytest.fixture
def trained(small_adata):
    a = small_adata
    rp.pp.zscore(a)
    rp.tl.vae(a, **TINY)
    return a


def test_tl_vae_writes_latent_history_and_model(trained, tmp_path):
    a = trained
    assert a.obsm["X_vae"].shape == (a.n_obs, 4) and np.isfinite(a.obsm["X_vae"]).all()
    hist = a.uns["vae"]["history"]
    assert len(hist["train_loss"]) == 40 and len(hist["val_loss"]) == 40
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    model = rp.tl.get_model(a)
    assert isinstance(model, BetaVAE) and model.is_trained
    np.testing.assert_allclose(model.get_latent(a), a.obsm["X_vae"], rtol=1e-5, atol=1e-6)
    assert model.train_info["n_train"] == 36 and model.train_info["n_val"] == 12
    a.write_h5ad(tmp_path / "a.h5ad")  # everything written into uns must be storable
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["vae"]["model_uid"] == a.uns["vae"]["model_uid"]


def test_same_seed_same_latent_other_seed_differs(small_adata):
    a = small_adata
    rp.pp.zscore(a)
    b, c = a.copy(), a.copy()
    rp.tl.vae(a, seed=7, **TINY)
    rp.tl.vae(b, seed=7, **TINY)
    rp.tl.vae(c, seed=8, **TINY)
    np.testing.assert_array_equal(a.obsm["X_vae"], b.obsm["X_vae"])
    assert not np.allclose(a.obsm["X_vae"], c.obsm["X_vae"])


def test_save_load_roundtrip_and_gene_check(trained, tmp_path):
    a = trained
    model = rp.tl.get_model(a)
    model.save(tmp_path / "vae")
    cfg = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert cfg["var_names"] == list(a.var_names) and cfg["class"] == "BetaVAE"
    loaded = BetaVAE.load(tmp_path / "vae", adata=a)
    np.testing.assert_array_equal(loaded.get_latent(a), model.get_latent(a))
    np.testing.assert_array_equal(loaded.var["rp_mean"].to_numpy(), a.var["rp_mean"].to_numpy())
    other = a[:, ::-1].copy()
    with pytest.raises(ValueError, match=r"genes differ.*same genes in another order"):
        BetaVAE.load(tmp_path / "vae", adata=other)
    fewer = a[:, :30].copy()
    with pytest.raises(ValueError, match=rf"{a.n_vars - 30} of the model's genes missing.*align_genes"):
        loaded.get_latent(fewer)
    with pytest.raises(ValueError, match=r"loaded from disk.*pass adata"):
        BetaVAE.load(tmp_path / "vae").get_latent()


def test_corrupt_model_files_raise(trained, tmp_path):
    model = rp.tl.get_model(trained)
    model.save(tmp_path / "vae")
    w = tmp_path / "vae" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        BetaVAE.load(tmp_path / "vae")
    model.save(tmp_path / "vae2")
    cfg_path = tmp_path / "vae2" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["latent_dim"] = 5  # weights no longer fit the config
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match="do not fit"):
        BetaVAE.load(tmp_path / "vae2")
    cfg["class"] = "TileGAN"
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match="not a BetaVAE"):
        BetaVAE.load(tmp_path / "vae2")
    cfg["class"] = "BetaVAE"
    del cfg["var_names"]
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match=r"does not describe a complete BetaVAE \(KeyError: 'var_names'\)"):
        BetaVAE.load(tmp_path / "vae2")
    # An option this version does not know is refused, not silently ignored.
    model.save(tmp_path / "vae3")
    cfg_path = tmp_path / "vae3" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["residual"] = True
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match=r"BetaVAE options this rnapaint version does not know: \['residual'\]"):
        BetaVAE.load(tmp_path / "vae3")


def test_encode_other_cohort_without_training(trained, tmp_path):
    a = trained
    model = rp.tl.get_model(a)
    model.save(tmp_path / "vae")
    other = a[a.obs["split"] == "test"].copy()
    rp.tl.vae(other, model=str(tmp_path / "vae"), key_added="X_ext")
    assert other.uns["ext"]["params"]["trained_on_this_adata"] is False
    np.testing.assert_allclose(other.obsm["X_ext"], a[a.obs["split"] == "test"].obsm["X_vae"], atol=1e-5)
    untrained = BetaVAE(a, hidden=(8,), latent_dim=2)
    with pytest.raises(ValueError, match="not trained"):
        rp.tl.vae(other, model=untrained)
    # The same cohort before z-scoring (log expression) is flagged instead of encoded silently.
    raw = ad.AnnData(X=(5.0 + np.random.default_rng(0).normal(0, 1, a.shape)).astype(np.float32), var=a.var[[]].copy())
    with pytest.warns(UserWarning, match="does not look z-scored"):
        model.get_latent(raw)
    with warnings.catch_warnings():  # z-scored expression, even shifted a little, is not flagged
        warnings.simplefilter("error")
        shifted = other.copy()
        shifted.X = np.asarray(shifted.X) + 0.5
        del shifted.var["rp_mean"]
        model.get_latent(shifted)


def test_saved_model_path_works_from_any_directory(trained, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    other = trained[:20].copy()
    rp.tl.vae(other, model=rp.tl.get_model(trained), save_path="rel_vae", key_added="X_rel")
    assert Path(other.uns["rel"]["model_path"]) == (tmp_path / "rel_vae").resolve()
    other.uns["rel"]["model_uid"] = "not-in-this-session"  # as after reading the .h5ad in a new session
    monkeypatch.chdir(tmp_path.parent)
    assert isinstance(rp.tl.get_model(other, "rel"), BetaVAE)
    shutil.rmtree(tmp_path / "rel_vae")
    with pytest.raises(ValueError, match="do not exist"):
        rp.tl.get_model(other, "rel")


def test_synthetic_and_shift_never_use_another_models_latents(trained):
    a = trained
    with pytest.raises(ValueError, match="another order"):  # obsm travels along; decoded genes would be mislabelled
        rp.tl.synthetic_expression(a[:, ::-1].copy(), "group", "b", n=2)
    other = BetaVAE(a, hidden=(8,), latent_dim=4).train(max_epochs=2, batch_size=12, progress_bar=False)
    b = (a.obs["group"] == "b").to_numpy()
    centroid, own_centroid = other.get_latent(a)[b].mean(0), a.obsm["X_vae"][b].mean(0)
    assert not np.allclose(centroid, own_centroid, atol=0.05)
    # Same seed, same draws around each model's own centroid of the group.
    got = rp.tl.synthetic_expression(a, "group", "b", n=3, model=other)
    own = rp.tl.synthetic_expression(a, "group", "b", n=3)
    np.testing.assert_allclose(got.obsm["X_vae"] - centroid, own.obsm["X_vae"] - own_centroid, atol=1e-5)


def test_bad_input_to_tl_vae_leaves_adata_unchanged(small_adata):
    a = small_adata
    a.X[3, 3] = np.nan
    keys = (set(a.obsm), set(a.uns))
    with pytest.raises(ValueError, match="NaN"):
        rp.tl.vae(a, **TINY)
    assert (set(a.obsm), set(a.uns)) == keys
    with pytest.raises(ValueError, match="no 'vae' model"):
        rp.tl.get_model(a)
    a.X[3, 3] = 0.0
    with pytest.raises(ValueError, match="batch_size must be ≥ 2"):
        rp.tl.vae(a, **{**TINY, "batch_size": 0})
    with pytest.raises(ValueError, match="model must be a BetaVAE"):
        rp.tl.vae(a, model=42)
    assert (set(a.obsm), set(a.uns)) == keys


def test_save_path_that_is_not_a_model_folder_is_refused_before_training(small_adata, tmp_path, monkeypatch):
    import rnapaint.models.beta_vae as beta_vae

    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.csv").write_text("keep me")
    monkeypatch.setattr(beta_vae.BetaVAE, "train", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(FileExistsError, match="not a rnapaint model directory"):
        rp.tl.vae(small_adata, **TINY, save_path=results)
    assert (results / "notes.csv").read_text() == "keep me"


def test_reconstruct_synthetic_and_shift(trained):
    a = trained
    rp.tl.reconstruct(a, groupby="split")
    table = a.uns["reconstruction"]["per_group"]
    assert set(table.index) == {"train", "val", "test"}
    assert (a.obs["reconstruction_rmse"] > 0).all()
    # Pooled RMSE equals the root of the mean squared per-sample RMSE.
    np.testing.assert_allclose(
        a.uns["reconstruction"]["rmse"], np.sqrt(np.mean(a.obs["reconstruction_rmse"].to_numpy() ** 2)), rtol=1e-4
    )
    s = rp.tl.synthetic_expression(a, "group", "b", n=12, seed=1)
    assert s.shape == (12, a.n_vars) and (s.obs["group"] == "b").all()
    assert s.var_names.equals(a.var_names) and (s.obs["rp_kind"] == "synthetic").all()
    s2 = rp.tl.synthetic_expression(a, "group", "b", n=12, seed=1)
    np.testing.assert_array_equal(s.X, s2.X)
    # Group b has +2 (≈ +1.4 z-units over group a) on its first 10 genes: synthetic profiles keep it.
    sa = rp.tl.synthetic_expression(a, "group", "a", n=12, seed=1)
    assert s.X[:, :10].mean() - sa.X[:, :10].mean() > 0.5
    assert abs(s.X[:, 10:].mean() - sa.X[:, 10:].mean()) < 0.3
    sh = rp.tl.shift(a, "group", "a", "b")
    assert sh.n_obs == (a.obs["group"] == "a").sum() and (sh.obs["rp_shifted_to"] == "b").all()
    z = a.obsm["X_vae"]
    zb = z[(a.obs["group"] == "b").to_numpy()].mean(0)
    za = z[(a.obs["group"] == "a").to_numpy()]
    assert np.linalg.norm(sh.obsm["X_vae"].mean(0) - zb) < np.linalg.norm(za.mean(0) - zb)
    with pytest.raises(ValueError, match="No observations"):
        rp.tl.synthetic_expression(a, "group", "zzz")
    with pytest.raises(ValueError, match="spread"):
        rp.tl.synthetic_expression(a, "group", "a", spread="wide")


def test_decode_checks_shape(trained):
    model = rp.tl.get_model(trained)
    with pytest.raises(ValueError, match="shape"):
        model.decode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        model.decode(np.full((2, 4), np.nan))


@pytest.mark.parametrize("flag", [False, True])
def test_training_gives_back_the_sessions_deterministic_flag(small_adata, flag):
    """Lightning's Trainer(deterministic=True) switches torch's deterministic mode on for the session."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    rp.pp.zscore(small_adata)
    try:
        torch.use_deterministic_algorithms(flag)
        BetaVAE(small_adata, hidden=(8,), latent_dim=2).train(max_epochs=1, progress_bar=False, accelerator="cpu")
        assert torch.are_deterministic_algorithms_enabled() is flag
    finally:
        torch.use_deterministic_algorithms(before)
