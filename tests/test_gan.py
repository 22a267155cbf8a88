"""RNA-GAN and the GAN baseline on the procedural toy set, whose tiles follow known expression programs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

import rnapaint as rp
from model_edits import signed
from rnapaint.models import TileGAN

pytestmark = pytest.mark.slow
GAN = {"width": 16}
TRAIN = {
    "max_steps": 500,
    "batch_size": 64,
    "n_critic": 2,
    "lr_g": 1e-3,
    "lr_d": 2e-3,
    "num_workers": 0,
    "progress_bar": False,
    "seed": 0,
}


@pytest.fixture(scope="module")
def toy():
    a = rp.datasets.toy(n=480, tile_size=32, tiles_per_obs=2, seed=0)
    rp.pp.log1p(a)
    rp.pp.split(a, stratify="group", fractions=(0.8, 0.1, 0.1), seed=0)
    rp.pp.zscore(a)
    rp.tl.vae(a, hidden=(64, 32), latent_dim=8, max_epochs=80, lr=3e-3, batch_size=64, progress_bar=False)
    return a


@pytest.fixture(scope="module")
def models(toy):
    for method in ("rnagan", "gan"):
        rp.tl.train_generator(toy, toy.obsm["tiles"], method=method, model_kwargs=GAN, **TRAIN)
    return {m: rp.tl.get_model(toy, f"tile_{m}") for m in ("rnagan", "gan")}


def _rho(model, toy, prop="density", measured="nuclei_fraction"):
    test = toy[toy.obs["split"] != "train"]
    tiles = model.generate(test, n_per_obs=4, seed=1)
    m = rp.datasets.toy_tile_properties(tiles)[measured].to_numpy()
    return spearmanr(test.obs[prop].to_numpy(), m).statistic


def test_rnagan_follows_the_expression_and_gan_does_not(models, toy):
    rho = {k: (_rho(m, toy), _rho(m, toy, "hue", "hue")) for k, m in models.items()}
    print(f"\nSpearman ρ (density→nuclei fraction, hue→hue) on held-out units: {rho}")
    assert rho["rnagan"][0] >= 0.5 and rho["rnagan"][1] >= 0.5
    assert abs(rho["gan"][0]) < 0.3 and abs(rho["gan"][1]) < 0.3


def test_changing_only_the_condition_changes_the_tiles(models, toy):
    m = models["rnagan"]
    z = toy.obsm["X_vae"][:8]
    a, b = m.generate(z, n_per_obs=2, seed=3), m.generate(z, n_per_obs=2, seed=3)
    np.testing.assert_array_equal(a, b)  # same seed, same condition: identical tiles
    other = m.generate(z[::-1].copy(), n_per_obs=2, seed=3)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 1.0
    assert a.shape == (8, 2, 32, 32, 3) and a.dtype == np.uint8


def test_condition_survives_a_batch_of_one_profile(models, toy):
    """RNA-GAN's code standardised the input across each batch: a batch made of one profile then
    collapses to the same input whatever the profile. Here two one-profile batches must differ."""
    m = models["rnagan"]
    z = toy.obsm["X_vae"]
    dense, sparse = np.argmax(toy.obs["density"].to_numpy()), np.argmin(toy.obs["density"].to_numpy())
    a = m.generate(np.repeat(z[dense : dense + 1], 8, 0), n_per_obs=1, seed=3, batch_size=8)
    b = m.generate(np.repeat(z[sparse : sparse + 1], 8, 0), n_per_obs=1, seed=3, batch_size=8)
    fa = rp.datasets.toy_tile_properties(a[:, 0])["nuclei_fraction"].mean()
    fb = rp.datasets.toy_tile_properties(b[:, 0])["nuclei_fraction"].mean()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0 and fa > fb
    with pytest.raises(ValueError, match="NaN"):
        m.generate(np.full((2, z.shape[1]), np.nan, np.float32))


def test_noise_is_added_to_the_posterior_mean_as_published():
    """noise_units="latent": U(−a, a) on the raw mean, then each dimension scaled to unit variance by
    the spread of mean + noise; "standardised" (and configs saved before the option): noise after."""
    import torch

    from rnapaint.models.tile_gan import make_input

    mean, std, a = [0.5, -1.0], [0.1, 2.0], 0.3
    cond = torch.tensor([[0.5, -1.0]]).repeat(20_000, 1)  # the training mean: only the noise is left
    config = {"condition": "vae", "noise": a, "condition_mean": mean, "condition_std": std}
    spread = {}
    for units in ("latent", "standardised", None):
        c = config if units is None else {**config, "noise_units": units}
        z = make_input(cond, c, len(cond), torch.Generator().manual_seed(0))
        spread[units] = z.std(0).numpy()
    u_std = a / np.sqrt(3.0)  # std of U(−a, a)
    # published: a dimension whose means hardly spread (0.1) is mostly noise; a wide one (2.0) hardly
    np.testing.assert_allclose(spread["latent"], u_std / np.sqrt(np.square(std) + u_std**2), rtol=0.03)
    np.testing.assert_allclose(spread["standardised"], [u_std, u_std], rtol=0.03)
    np.testing.assert_array_equal(spread[None], spread["standardised"])
    with pytest.raises(ValueError, match="noise_units must be"):
        TileGAN(ad.AnnData(np.zeros((2, 2), np.float32)), np.zeros((2, 1, 32, 32, 3), np.uint8), noise_units="raw")


def test_auxiliary_condition_loss_carries_the_expression_without_projection(toy, tmp_path):
    """aux_weight: the critic's auxiliary head regresses the condition from real tiles and the
    generator is held to it. With the published critic, which does not see the condition, RNA-GAN's
    tiles do not follow the programs (ρ −0.05 / −0.07 measured with benchmarks/gan_options.py); with
    the auxiliary loss alone they do."""
    import torch

    units = toy.obs_names[toy.obs["split"] == "train"]
    m = TileGAN(toy, toy.obsm["tiles"], units=units, projection=False, aux_weight=10.0, **GAN)
    m.train(**TRAIN)
    assert m.critic.aux is not None and m.critic.projection is None
    aux_real = m.history["train_aux_real"]
    assert aux_real[-1] < aux_real[0] - 0.1  # the head learns what real tiles say about the condition
    rho = (_rho(m, toy), _rho(m, toy, "hue", "hue"))
    print(f"\nplain critic + auxiliary loss, Spearman ρ (density, hue): {rho}")
    assert rho[0] >= 0.3 and rho[1] >= 0.5
    m.save(tmp_path / "aux")
    back = TileGAN.load(tmp_path / "aux")
    torch.testing.assert_close(back.critic.aux.weight, m.critic.aux.weight, rtol=0, atol=0)
    z = toy.obsm["X_vae"][:4]
    np.testing.assert_array_equal(back.generate(z, seed=5), m.generate(z, seed=5))
    for bad, match in (
        ({"aux_weight": -1.0}, "aux_weight must be"),
        ({"condition": None, "aux_weight": 1.0}, "needs a condition"),
    ):
        with pytest.raises(ValueError, match=match):
            TileGAN(toy, toy.obsm["tiles"], **{**GAN, **bad})


def test_ema_batchnorm_statistics_are_its_own(models):
    """After training, the EMA generator's BatchNorm statistics are those of its own activations
    (standing statistics), not the raw generator's copied during training."""
    import copy

    import torch

    m = models["rnagan"]
    assert m.train_info["standing_stats"] == 32
    trained = copy.deepcopy(m.ema)
    m.update_ema_statistics(64, 64, seed=123)  # an independent estimate: other noise draws and units
    again, m.ema = m.ema, trained  # the shared fixture keeps its trained statistics

    def gaps(module):  # per BatchNorm layer: mean shift in the layer's std, and log variance ratio
        out = []
        for bn, ref in zip(bns(module), bns(again), strict=True):
            sd = ref.running_var.sqrt()
            out.append(
                (
                    float(((bn.running_mean - ref.running_mean).abs() / sd).mean()),
                    float((bn.running_var / ref.running_var).log().abs().mean()),
                )
            )
        return out

    def bns(module):
        return [x for x in module.modules() if isinstance(x, torch.nn.BatchNorm2d)]

    own, raw = gaps(m.ema), gaps(m.generator)
    assert all(mean < 0.05 and var < 0.05 for mean, var in own)
    # the raw generator's statistics, which the EMA carried before, are far from the EMA's own
    assert max(max(g) for g in raw) > 0.15
    with pytest.raises(ValueError, match="standing_stats"):
        m.train(standing_stats=-1)


def test_generate_into_obsm_store_and_from_expression_alone(models, toy, tmp_path):
    m = models["rnagan"]
    m.save(tmp_path / "rnagan")
    loaded = TileGAN.load(tmp_path / "rnagan")
    with pytest.raises(ValueError, match="loaded from disk and has no training data"):
        loaded.train(max_steps=1)
    test = toy[toy.obs["split"] == "test"].copy()
    test.uns["tiles"] = {"store": "keep me"}  # what spot_tiles / tile_slides record
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not the model's β-VAE latent")  # X_vae is .X's latent
        rp.tl.generate(test, m, n_per_obs=2, seed=5)
    # An edited copy keeps its old X_vae, which wins: that is warned about, and deleting it paints .X.
    enriched = test.copy()
    enriched.X = np.asarray(enriched.X) + 1.0
    with pytest.warns(UserWarning, match="not the model's β-VAE latent"):
        stale = m.generate(enriched, n_per_obs=1, seed=5)
    np.testing.assert_array_equal(stale, m.generate(test, n_per_obs=1, seed=5))
    del enriched.obsm["X_vae"]
    assert not np.array_equal(m.generate(enriched, n_per_obs=1, seed=5), stale)
    for bad, match in [
        ({"n_per_obs": 0}, "must be ≥ 1"),
        ({"batch_size": 0}, "must be ≥ 1"),
        ({"key_added": "tiles"}, "would overwrite"),
    ]:
        with pytest.raises(ValueError, match=match):
            rp.tl.generate(test, m, **bad)
    dup = test[[0, 0]].copy()
    with pytest.raises(ValueError, match="must be unique"):
        rp.tl.generate(dup, m, store=tmp_path / "dup.zarr")
    assert not (tmp_path / "dup.zarr").exists()
    assert test.uns["tiles"] == {"store": "keep me"} and test.uns["tiles_generation"]["n_per_obs"] == 2
    np.testing.assert_array_equal(loaded.generate(test, n_per_obs=2, seed=5), test.obsm["X_tiles"])
    # A profile with no latent yet is encoded by the β-VAE the generator carries.
    bare = test.copy()
    del bare.obsm["X_vae"]
    # Streamed into a store in batches of 3 (splitting units' draws): every row in its unit/draw place.
    rp.tl.generate(bare, str(tmp_path / "rnagan"), n_per_obs=2, seed=5, batch_size=3, store=tmp_path / "gen.zarr")
    s = rp.data.TileStore.open(tmp_path / "gen.zarr")
    assert len(s) == 2 * test.n_obs
    expected = m.generate(test, n_per_obs=2, seed=5)  # batch 256: each tile's noise depends on its position only
    rows = test.obs_names.get_indexer(s.table["unit"])
    np.testing.assert_allclose(s[np.arange(len(s))].astype(float), expected[rows, s.table["x"].to_numpy()], atol=2)
    # A unit's noise follows its name: painting a subset, or the units in another order, gives the same tiles.
    picked = test.obs_names[[6, 1, 4]]
    np.testing.assert_allclose(
        m.generate(test[picked].copy(), n_per_obs=2, seed=5).astype(float), expected[[6, 1, 4]].astype(float), atol=1
    )
    from rnapaint.models._seeding import unit_keys

    assert unit_keys(test.obsm["X_vae"][:3], 3).tolist() == [0, 2, 4]  # an array: its rows
    assert len(set(unit_keys(test, test.n_obs).tolist())) == test.n_obs  # names: one key each
    dup = ad.AnnData(np.zeros((2, 1)), obs=pd.DataFrame(index=["u", "u"]))
    assert unit_keys(dup, 2).tolist() == [0, 2]  # duplicated names: rows again, never one noise for both
    # Synthetic and shifted profiles can be painted too.
    synth = rp.tl.synthetic_expression(toy, "group", "dense", n=6)
    rp.tl.generate(synth, m, n_per_obs=1)
    assert synth.obsm["X_tiles"].shape == (6, 1, 32, 32, 3)


def test_failed_generation_leaves_no_store(models, toy, tmp_path, monkeypatch):
    from rnapaint.models import GeneratedTileWriter

    m, test = models["rnagan"], toy[toy.obs["split"] == "test"].copy()
    rp.tl.generate(test, m, n_per_obs=2, batch_size=4, store=tmp_path / "old.zarr")
    n_old = len(rp.data.TileStore.open(tmp_path / "old.zarr"))
    write = GeneratedTileWriter.__call__
    calls = []

    def fail_on_second_batch(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        write(self, *args)

    monkeypatch.setattr(GeneratedTileWriter, "__call__", fail_on_second_batch)
    with pytest.raises(OSError, match="disk full"):
        rp.tl.generate(test, m, n_per_obs=2, batch_size=4, store=tmp_path / "new.zarr")
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        rp.tl.generate(test, m, n_per_obs=2, batch_size=4, store=tmp_path / "old.zarr", overwrite=True)
    # No new store, no partial folder, and the old store is intact.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.zarr"]
    assert len(rp.data.TileStore.open(tmp_path / "old.zarr")) == n_old == 2 * test.n_obs
    with pytest.raises(FileExistsError):
        rp.tl.generate(test, m, n_per_obs=2, store=tmp_path / "old.zarr")


def test_corrupt_generator_file_raises(models, tmp_path):
    models["gan"].save(tmp_path / "gan")
    w = tmp_path / "gan" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        TileGAN.load(tmp_path / "gan")
    models["rnagan"].save(tmp_path / "rnagan")
    cfg_path = tmp_path / "rnagan" / "config.json"
    TileGAN.load(tmp_path / "rnagan")  # every option a conditioned model writes is known
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["self_attention"] = True
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match=r"TileGAN options .* does not know: \['self_attention'\]"):
        TileGAN.load(tmp_path / "rnagan")


_KILL = """
import sys, rnapaint as rp
a = rp.datasets.toy(n=64, tile_size=32, seed=0)
rp.pp.log1p(a); rp.pp.zscore(a)
m = rp.models.TileGAN(a, a.obsm["tiles"], condition=None, width=8, latent_dim=16)
m.train(max_steps=int(sys.argv[2]), batch_size=16, checkpoint_dir=sys.argv[1], checkpoint_every=5, num_workers=0,
        progress_bar=False)
print("STEPS", m.train_info["resumed_from"], m.train_info["steps"])
"""


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _KILL, str(ckpt), "100000"])
    deadline = time.time() + 180
    while time.time() < deadline and not (ckpt / "config.json").is_file():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    step = json.loads((ckpt / "config.json").read_text())["step"]
    assert step >= 5 and step % 5 == 0
    out = subprocess.run(
        [sys.executable, "-c", _KILL, str(ckpt), str(step + 10)], capture_output=True, text=True, check=True
    ).stdout
    resumed, final = (int(v) for v in out.split("STEPS")[1].split())
    assert resumed == step and final == step + 10
    assert json.loads((ckpt / "config.json").read_text())["step"] == step + 10
    # Running again to the same step count trains nothing and leaves a checkpoint that still resumes.
    again = subprocess.run(
        [sys.executable, "-c", _KILL, str(ckpt), str(step + 10)], capture_output=True, text=True, check=True
    ).stdout
    assert again.split("STEPS")[1].split() == [str(step + 10), str(step + 10)]
    assert "opt_g" in json.loads((ckpt / "config.json").read_text())


def test_checkpoint_of_another_model_is_refused(toy, tmp_path):
    small = toy[:64].copy()
    m = TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=16)
    m.train(
        max_steps=5, batch_size=16, checkpoint_dir=tmp_path / "c", checkpoint_every=5, num_workers=0, progress_bar=False
    )
    other = TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=24)
    with pytest.raises(ValueError, match="another model"):
        other.train(max_steps=10, batch_size=16, checkpoint_dir=tmp_path / "c", num_workers=0, progress_bar=False)
    # A checkpoint written before aux_weight existed (no such key: no auxiliary loss) still resumes.
    cfg_path = tmp_path / "c" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["model"]["aux_weight"]
    cfg_path.write_text(json.dumps(signed(cfg)))
    again = TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=16)
    again.train(max_steps=6, batch_size=16, checkpoint_dir=tmp_path / "c", num_workers=0, progress_bar=False)
    assert again.train_info["resumed_from"] == 5
    fig = rp.pl.history(m)
    assert {ax.get_title() for ax in fig.axes} >= {"critic loss", "gradient penalty"}


def test_resumed_run_uses_its_own_optimizer_settings(toy, tmp_path):
    small = toy[:64].copy()
    kw = {"batch_size": 16, "checkpoint_dir": tmp_path / "c", "num_workers": 0, "progress_bar": False}
    TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=16).train(max_steps=2, **kw)
    m = TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=16)
    m.train(max_steps=4, lr_g=1e-5, lr_d=2e-5, betas=(0.0, 0.9), **kw)
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    assert m.train_info["resumed_from"] == 2 and meta["step"] == 4
    # The checkpoint's settings (1e-3 / 4e-3, betas (0.5, 0.999)) no longer come back with its state.
    assert meta["opt_g"]["param_groups"][0]["lr"] == 1e-5 and meta["opt_d"]["param_groups"][0]["lr"] == 2e-5
    assert meta["opt_g"]["param_groups"][0]["betas"] == [0.0, 0.9]
    # ... while the state (Adam's moments and step counts) still does: 2 + 2 critic steps.
    from safetensors.numpy import load_file

    assert load_file(tmp_path / "c" / "model.safetensors")["opt_d.0.step"][0] == 4


def test_lazy_gradient_penalty_runs_every_k_steps(toy, monkeypatch):
    import rnapaint.models._gan_training as training

    calls = []
    real_gp = training.gradient_penalty

    def counting(*args, **kwargs):
        calls.append(1)
        return real_gp(*args, **kwargs)

    monkeypatch.setattr(training, "gradient_penalty", counting)
    small = toy[:64].copy()
    for every, expected in ((1, 6), (3, 2)):
        calls.clear()
        m = TileGAN(small, small.obsm["tiles"], condition=None, width=8, latent_dim=16)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m.train(max_steps=6, batch_size=16, num_workers=0, progress_bar=False, gp_every=every)
        assert len(calls) == expected and m.train_info["gp_every"] == every
        # Lightning's notes on its own internals (the EMA's eval mode, a torch deprecation) stay quiet
        said = [str(w.message) for w in seen]
        assert not [w for w in said if "eval mode" in w or "LeafSpec" in w], said
    with pytest.raises(ValueError, match="gp_every"):
        m.train(max_steps=1, gp_every=0)


def _tiny_toy(n=32):
    a = rp.datasets.toy(n=n, tile_size=32, tiles_per_obs=1, seed=0)
    a.obsm["X_vae"] = np.random.default_rng(0).normal(size=(a.n_obs, 4)).astype(np.float32)
    return a


def test_bf16_true_training_keeps_a_float32_ema():
    """bf16-true casts the whole plan to bf16: the EMA's (1 − decay) steps would fall below its resolution."""
    import torch

    a = _tiny_toy()
    m = TileGAN(a, a.obsm["tiles"], condition="vae", width=8)
    torch.use_deterministic_algorithms(False)
    m.train(
        max_steps=6,
        batch_size=8,
        n_critic=1,
        precision="bf16-true",
        accelerator="cpu",
        num_workers=0,
        progress_bar=False,
    )
    assert m.train_info["steps"] == 6 and "bf16-true" in m.train_info["precision"]
    assert not torch.are_deterministic_algorithms_enabled()  # Trainer(deterministic=True) set it; given back
    for net in (m.generator, m.critic, m.ema):
        assert all(p.dtype == torch.float32 for p in net.parameters())
    # A bf16 EMA cast up at the end would hold bf16 numbers only.
    ema = torch.cat([p.flatten() for p in m.ema.parameters()])
    assert (ema != ema.bfloat16().float()).any()
    for use_ema in (True, False):
        assert m.generate(a[:2], n_per_obs=1, device="cpu", ema=use_ema).shape == (2, 1, 32, 32, 3)


def test_overwriting_commit_killed_between_renames_keeps_the_old_store(tmp_path, monkeypatch):
    import os

    from rnapaint.models import GeneratedTileWriter

    store = tmp_path / "gen.zarr"

    def write(n, overwrite=False):
        w = GeneratedTileWriter(store, 8, ["u0"], overwrite=overwrite)
        w(np.zeros(n, int), np.arange(n), np.full((n, 8, 8, 3), n, np.uint8))
        return w

    write(1).commit()
    w = write(3, overwrite=True)
    replace = os.replace

    def killed_before_the_new_store_moves_in(src, dst):
        if str(src) == str(w.tmp):
            raise KeyboardInterrupt("killed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_the_new_store_moves_in)
    with pytest.raises(KeyboardInterrupt):
        w.commit()
    monkeypatch.setattr(os, "replace", replace)
    # Opening the path puts the old store back, as does the next writer (which then refuses to overwrite it) ...
    assert not store.exists() and len(rp.data.TileStore.open(store)) == 1
    with pytest.raises(FileExistsError):
        GeneratedTileWriter(store, 8, ["u0"])
    assert len(rp.data.TileStore.open(store)) == 1
    # ... and removes partial stores of processes that are gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".gen.zarr.partial-{int(dead.stdout)}").mkdir()
    assert len(write(2, overwrite=True).commit()) == 2
    # A store someone is writing to is not swapped away under them.
    from rnapaint.io.writer_lock import StoreBusyError

    holder = rp.data.TileStore.open(store, "a")
    with pytest.raises(StoreBusyError):
        GeneratedTileWriter(store, 8, ["u0"], overwrite=True)
    holder.close()
    assert len(write(4, overwrite=True).commit()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.zarr"]


def test_overwrite_replaces_a_tile_store_never_another_folder(tmp_path):
    from rnapaint.models import GeneratedTileWriter

    other = tmp_path / "results"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a rnapaint TileStore"):
        GeneratedTileWriter(other, 8, ["u0"], overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    # ... also when it appears while generating
    store = tmp_path / "gen.zarr"
    w = GeneratedTileWriter(store, 8, ["u0"], overwrite=True)
    w(np.zeros(1, int), np.arange(1), np.zeros((1, 8, 8, 3), np.uint8))
    store.mkdir()
    (store / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a rnapaint TileStore"):
        w.commit()
    assert (store / "notes.txt").read_text() == "keep me" and not w.tmp.exists()
    (store / "notes.txt").unlink()  # an empty folder may be replaced
    assert len(GeneratedTileWriter(store, 8, ["u0"], overwrite=True).commit()) == 0


def test_real_tiles_are_augmented_without_colour_jitter_by_default(toy):
    a = toy[:16]
    dihedral = TileGAN(a, a.obsm["tiles"], condition=None, width=8, latent_dim=16).dataset.augment
    assert dihedral.flips and dihedral.rot90 and not (dihedral.hue or dihedral.brightness)
    jitter = TileGAN(a, a.obsm["tiles"], condition=None, width=8, latent_dim=16, augment=True).dataset.augment
    assert jitter.hue > 0 and jitter.brightness > 0
    assert TileGAN(a, a.obsm["tiles"], condition=None, width=8, latent_dim=16, augment=False).dataset.augment is None
    with pytest.raises(ValueError, match="augment must be"):
        TileGAN(a, a.obsm["tiles"], condition=None, width=8, latent_dim=16, augment="colour")
