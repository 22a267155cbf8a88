"""RNA-CDM's cascaded diffusion on the procedural toy set, whose tiles follow known expression programs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import rnapaint as rp
from model_edits import signed
from rnapaint.models import CascadedDiffusion

pytestmark = pytest.mark.slow
BASE = {
    "channels": [32, 64],
    "attention": [False, True],
    "layers_per_block": 1,
    "n_tokens": 4,
    "token_dim": 64,
    "hidden": 64,
    "head_dim": 16,
}
SR = {**BASE, "channels": [16, 32], "attention": [False, False]}
MODEL = {"base_size": 8, "base": BASE, "sr": SR}
TRAIN = {
    "max_steps": {"base": 300, "sr": 250},
    "batch_size": 32,
    "lr": 2e-3,
    "warmup_steps": 20,
    "ema_decay": 0.999,
    "num_workers": 0,
    "progress_bar": False,
    "seed": 0,
}
# Two draws per unit: a single 16-px tile measures density coarsely (real tiles: ρ ≈ 0.67 with two).
GEN = {"n_per_obs": 2, "steps": 10, "progress_bar": False}


@pytest.fixture(scope="module")
def toy():
    a = rp.datasets.toy(n=400, tile_size=16, tiles_per_obs=2, seed=0)
    rp.pp.log1p(a)
    rp.pp.split(a, stratify="group", fractions=(0.8, 0.1, 0.1), seed=0)
    rp.pp.zscore(a)
    rp.tl.vae(a, hidden=(64, 32), latent_dim=8, max_epochs=80, lr=3e-3, batch_size=64, progress_bar=False)
    return a


@pytest.fixture(scope="module")
def model(toy):
    rp.tl.train_generator(toy, toy.obsm["tiles"], method="cdm", model_kwargs=MODEL, **TRAIN)
    return rp.tl.get_model(toy, "tile_cdm")


def test_train_generator_records_each_stage_history(model, toy):
    hist = toy.uns["tile_cdm"]["history"]
    assert set(hist) == {"base", "sr"}
    assert len(hist["base"]["train_loss"]) >= 1 and all(isinstance(v, float) for v in hist["base"]["train_loss"])
    fig = rp.pl.history(toy, key="tile_cdm", show=False)
    assert [ax.get_title() for ax in fig.axes] == ["base: loss", "sr: loss"]


def _held_out(toy):
    return toy[toy.obs["split"] != "train"]


def _rho(tiles, adata, prop="density", measured="nuclei_fraction"):
    m = rp.datasets.toy_tile_properties(tiles)[measured].to_numpy()
    return spearmanr(adata.obs[prop].to_numpy(), m).statistic


def test_cdm_follows_the_expression_and_guidance_moves_it(model, toy):
    test = _held_out(toy)
    tiles = {w: model.generate(test, guidance_scale=w, seed=1, **GEN) for w in (0.0, 2.0)}
    rho = {w: _rho(t, test) for w, t in tiles.items()}
    hue = {w: _rho(t, test, "hue", "hue") for w, t in tiles.items()}
    real = _rho(test.obsm["tiles"], test)
    print(
        f"\nSpearman ρ on held-out units by guidance scale: density → nuclei fraction {rho}, hue → hue {hue}; "
        f"real tiles {real:.2f}"
    )
    assert rho[2.0] >= 0.5
    assert abs(rho[0.0]) < 0.3  # w = 0 is the unconditional model: it must ignore the expression
    assert rho[2.0] > rho[0.0] + 0.3
    # The overall colour crosses the super-resolution stage (it did not while GroupNorm had one channel a
    # group in these narrow networks: instance norm removed each feature map's mean, hue ρ 0.00).
    assert hue[2.0] >= 0.7


def test_norm_groups_keep_four_channels_a_group_and_old_models_load_theirs(model, tmp_path):
    from rnapaint.nn.diffusion_unet import ConditionalUNet, default_norm_groups

    assert [default_norm_groups([c]) for c in (8, 16, 32, 64, 128, 256)] == [2, 4, 8, 16, 32, 32]
    assert default_norm_groups([30, 60]) == 6 and default_norm_groups([128, 256, 384, 512]) == 32
    assert model.config["base"]["norm_groups"] == 8 and model.config["sr"]["norm_groups"] == 4
    groups = {m.num_groups for m in model.nets["sr"].modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {4}
    with pytest.raises(ValueError, match="multiple of 3"):
        ConditionalUNet(8, 4, channels=[16, 32], attention=[False, False], head_dim=16, norm_groups=3)
    # A model saved before the option existed had min(32, channels[0]) groups: it loads with them.
    model.save(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for stage in ("base", "sr"):
        del cfg["model"][stage]["norm_groups"]
    cfg_path.write_text(json.dumps(signed(cfg)))
    old = rp.models.load_model(tmp_path / "old")
    assert old.config["base"]["norm_groups"] == 32 and old.config["sr"]["norm_groups"] == 16
    assert {m.num_groups for m in old.ema["sr"].modules() if isinstance(m, torch.nn.GroupNorm)} == {16}


def test_samplers_are_interchangeable(model, toy):
    test = _held_out(toy)
    real = test.obsm["tiles"][:, 0].reshape(-1, 3).mean(0)
    for sampler, steps in (("ddpm", 25), ("ddim", 10), ("dpm++", 10), ("dpm++sde", 10)):
        tiles = model.generate(test, sampler=sampler, guidance_scale=2.0, seed=2, **{**GEN, "steps": steps})
        assert tiles.shape == (test.n_obs, 2, 16, 16, 3) and tiles.dtype == np.uint8
        assert np.abs(tiles.reshape(-1, 3).mean(0) - real).max() < 20, sampler  # the stain, not noise
        assert _rho(tiles, test) >= 0.4, sampler
    painted = {}
    for sampler in ("ddpm", "dpm++sde"):  # the stochastic samplers: their step noise follows the seed
        painted[sampler] = a = model.generate(test[:6], sampler=sampler, seed=3, **GEN)
        np.testing.assert_array_equal(a, model.generate(test[:6], sampler=sampler, seed=3, **GEN))
        other = model.generate(test[:6], sampler=sampler, seed=4, **GEN)
        assert np.abs(a.astype(int) - other.astype(int)).mean() > 1, sampler
    sde = painted["dpm++sde"]
    # Per-tile step noise: a tile does not change with the batch it is painted in (up to float rounding).
    alone = model.generate(test[:1], sampler="dpm++sde", seed=3, **GEN)
    assert np.abs(alone.astype(int) - sde[:1].astype(int)).max() <= 2
    # The SDE variant's step noise makes it differ from the deterministic solver from the same start.
    ode = model.generate(test[:6], sampler="dpm++", seed=3, **GEN)
    assert np.abs(sde.astype(int) - ode.astype(int)).mean() > 1


def test_save_load_identical_and_generate_into_obsm(model, toy, tmp_path):
    test = _held_out(toy)[:6].copy()
    model.save(tmp_path / "cdm")
    loaded = rp.models.load_model(tmp_path / "cdm")
    assert isinstance(loaded, CascadedDiffusion) and loaded.stages == ("base", "sr")
    kw = {**GEN, "seed": 5, "sampler": "ddim"}
    np.testing.assert_array_equal(model.generate(test, **kw), loaded.generate(test, **kw))
    with pytest.raises(ValueError, match="loaded from disk and has no training data"):
        loaded.train(max_steps=1)
    # An option this version does not know (top level or in a stage) is refused, not ignored.
    shutil.copytree(tmp_path / "cdm", tmp_path / "edited")
    cfg_path = tmp_path / "edited" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["sampler_default"] = "ddim"
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match=r"CascadedDiffusion options .* does not know: \['sampler_default'\]"):
        rp.models.load_model(tmp_path / "edited")
    del cfg["model"]["sampler_default"]
    cfg["model"]["base"]["dropout_rate"] = 0.1
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match="does not describe a complete CascadedDiffusion"):
        rp.models.load_model(tmp_path / "edited")
    # A model saved while head_dim set the number of heads would load into another attention layout.
    del cfg["model"]["base"]["dropout_rate"], cfg["model"]["head_dim_is_head_size"]
    cfg_path.write_text(json.dumps(signed(cfg)))
    with pytest.raises(ValueError, match="took head_dim as the number of attention heads"):
        rp.models.load_model(tmp_path / "edited")
    # From expression alone (the β-VAE travels with the model) and through rp.tl.generate, by path.
    bare = test.copy()
    del bare.obsm["X_vae"]
    rp.tl.generate(
        bare, tmp_path / "cdm", n_per_obs=2, seed=5, batch_size=64, sampler="ddim", steps=10, progress_bar=False
    )
    # The latent encoded here and the stored one differ in float rounding: a pixel may move by 1.
    np.testing.assert_allclose(bare.obsm["X_tiles"], model.generate(test, **kw), atol=1)
    assert bare.uns["tiles_generation"]["sampler"] == "ddim"
    # Streamed into a TileStore batch by batch (batches of 5 split units' draws): the same tiles.
    rp.tl.generate(
        test,
        model,
        store=tmp_path / "cdm.zarr",
        n_per_obs=2,
        seed=5,
        batch_size=5,
        sampler="ddim",
        steps=10,
        progress_bar=False,
    )
    store = rp.data.TileStore.open(tmp_path / "cdm.zarr")
    table = store.table
    assert len(store) == 2 * test.n_obs and "X_tiles" not in test.obsm
    # Each tile's noise depends on (seed, position) only: another batch size paints the same tiles
    # (up to a rounding step: the network's float arithmetic depends on the batch shape).
    expected = model.generate(test, n_per_obs=2, seed=5, batch_size=64, sampler="ddim", steps=10, progress_bar=False)
    rows = test.obs_names.get_indexer(table["unit"])
    np.testing.assert_allclose(store[np.arange(len(store))], expected[rows, table["x"].to_numpy()], atol=1)
    ddpm = {"n_per_obs": 2, "seed": 3, "sampler": "ddpm", "steps": 4, "progress_bar": False}  # noise at every step
    np.testing.assert_allclose(
        model.generate(test[:3], batch_size=4, **ddpm), model.generate(test[:3], batch_size=64, **ddpm), atol=1
    )
    with pytest.raises(ValueError, match="NaN"):
        model.generate(np.full((2, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.generate(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="sampler"):
        model.generate(test, sampler="euler")
    with pytest.raises(ValueError, match="batch_size and n_per_obs must be ≥ 1"):
        model.generate(test, batch_size=0)
    w = tmp_path / "cdm" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        rp.models.load_model(tmp_path / "cdm")


def test_learned_expression_encoder_resumes_and_checks_genes(toy, tmp_path):
    """condition="expression": the profile's own encoder is trained with the denoiser (no β-VAE)."""
    kw = {"condition": "expression", "base_size": 8, "base": BASE}
    small = toy[:64].copy()
    m = CascadedDiffusion(small, small.obsm["tiles"][:, :, ::2, ::2].copy(), **kw)
    assert m.stages == ("base",) and m.config["condition_dim"] == toy.n_vars
    m.train(
        max_steps=4, batch_size=8, num_workers=0, progress_bar=False, checkpoint_dir=tmp_path / "ck", checkpoint_every=2
    )
    again = CascadedDiffusion(small, small.obsm["tiles"][:, :, ::2, ::2].copy(), **kw)
    again.train(max_steps=6, batch_size=8, num_workers=0, progress_bar=False, checkpoint_dir=tmp_path / "ck")
    assert again.train_info["base"]["resumed_from"] == 4 and again.train_info["base"]["steps"] == 6
    other = CascadedDiffusion(small, small.obsm["tiles"][:, :, ::2, ::2].copy(), **{**kw, "cond_drop": 0.2})
    with pytest.raises(ValueError, match="another model"):
        other.train(max_steps=8, batch_size=8, num_workers=0, progress_bar=False, checkpoint_dir=tmp_path / "ck")
    tiles = again.generate(small[:3], steps=2, progress_bar=False)
    assert tiles.shape == (3, 4, 8, 8, 3)
    with pytest.raises(ValueError, match="genes"):
        again.generate(small[:3, 5:], steps=2, progress_bar=False)


# ---------------------------------------------------------------- tiny models: training mechanics, fast
TINY = {"channels": [16, 32], "attention": [False, True], "layers_per_block": 1, "n_tokens": 2, "token_dim": 16}
TINY = {**TINY, "hidden": 16, "head_dim": 8}
TINY_TRAIN = {"batch_size": 8, "num_workers": 0, "progress_bar": False, "accelerator": "cpu", "warmup_steps": 1}


def _tiny(tile_size=8, n=24):
    """A one-stage (8 px) or two-stage (16 px) cascade on a few toy units with a random 4-d condition."""
    a = rp.datasets.toy(n=n, tile_size=16, tiles_per_obs=1, seed=0)
    a.obsm["X_vae"] = np.random.default_rng(0).normal(size=(a.n_obs, 4)).astype(np.float32)
    tiles = a.obsm["tiles"] if tile_size == 16 else a.obsm["tiles"][:, :, ::2, ::2].copy()
    return a, CascadedDiffusion(a, tiles, base_size=8, base=TINY, sr={**TINY, "attention": [False, False]})


def test_checkpoint_holds_the_ema_of_its_step_and_a_resume_draws_new_noise(tmp_path, monkeypatch):
    import hashlib
    import json

    import torch
    from safetensors.numpy import load_file

    from rnapaint.models._diffusion_training import DiffusionTrainingPlan

    step_fn, first_rng = DiffusionTrainingPlan.training_step, []

    def record(self, batch, batch_idx):  # the global stream at each run's first step
        if self.step == self.train_start:
            first_rng.append(hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest())
        return step_fn(self, batch, batch_idx)

    monkeypatch.setattr(DiffusionTrainingPlan, "training_step", record)
    monkeypatch.setattr(DiffusionTrainingPlan, "train_start", 0, raising=False)
    kw = {**TINY_TRAIN, "ema_decay": 0.5, "checkpoint_every": 3}
    m = _tiny()[1]
    m.train(max_steps=3, checkpoint_dir=tmp_path / "full", **kw)  # uninterrupted to step 3
    full = load_file(tmp_path / "full" / "base" / "model.safetensors")

    def killed(self, batch, batch_idx):  # a run killed during step 4, after the checkpoint of step 3
        if self.step == 3:
            raise RuntimeError("killed")
        return record(self, batch, batch_idx)

    monkeypatch.setattr(DiffusionTrainingPlan, "training_step", killed)
    with pytest.raises(RuntimeError, match="killed"):
        _tiny()[1].train(max_steps=10, checkpoint_dir=tmp_path / "ck", **kw)
    meta = json.loads((tmp_path / "ck" / "base" / "config.json").read_text())
    assert (meta["step"], meta["ema_step"]) == (3, 3)  # the EMA of step 3, not of step 2
    cut = load_file(tmp_path / "ck" / "base" / "model.safetensors")
    for k in (k for k in full if k.startswith("ema.")):
        np.testing.assert_array_equal(cut[k], full[k], err_msg=k)
    # Resumed to step 5: five EMA updates, none lost; and new draws, not a replay of step 1's.
    monkeypatch.setattr(DiffusionTrainingPlan, "training_step", record)
    monkeypatch.setattr(DiffusionTrainingPlan, "train_start", 3, raising=False)
    m = _tiny()[1]
    m.train(max_steps=5, checkpoint_dir=tmp_path / "ck", **kw)
    meta = json.loads((tmp_path / "ck" / "base" / "config.json").read_text())
    assert m.train_info["base"]["resumed_from"] == 3 and (meta["step"], meta["ema_step"]) == (5, 5)
    assert len(first_rng) == 3 and first_rng[0] == first_rng[1] != first_rng[2]


def test_every_sampler_starts_from_pure_noise_and_sr_noise_level_is_checked():
    import torch

    a, m = _tiny(tile_size=16, n=12)
    assert m.stages == ("base", "sr")
    for sampler in ("ddpm", "ddim", "dpm++", "dpm++sde"):
        for steps in (3, 25):
            sched = m.noise_scheduler(sampler)
            sched.set_timesteps(steps)
            assert int(sched.timesteps[0]) == m.config["num_train_timesteps"] - 1, (sampler, steps)
    m.is_trained = True  # untrained weights: only the timesteps the networks see matter here
    seen = {s: [] for s in m.stages}
    hooks = [
        m.ema[s].register_forward_pre_hook(lambda mod, args, s=s: seen[s].append(int(args[1][0]))) for s in m.stages
    ]
    try:
        for sampler in ("ddpm", "ddim", "dpm++", "dpm++sde"):
            for s in seen.values():
                s.clear()
            m.generate(a[:1], n_per_obs=1, sampler=sampler, steps=3, progress_bar=False, device="cpu")
            assert seen["base"][0] == seen["sr"][0] == 999, sampler
    finally:
        for h in hooks:
            h.remove()
    aug_max = m.config["aug_max"]
    for level in (-1, aug_max, 1000, 2.5):
        with pytest.raises(ValueError, match="sr_noise_level"):
            m.generate(a[:1], n_per_obs=1, steps=1, sr_noise_level=level, progress_bar=False, device="cpu")
    tiles = m.generate(a[:1], n_per_obs=1, steps=1, sr_noise_level=aug_max - 1, progress_bar=False, device="cpu")
    assert tiles.shape == (1, 1, 16, 16, 3)
    assert not torch.are_deterministic_algorithms_enabled()


def test_bf16_true_training_runs_and_returns_float32_weights(monkeypatch):
    import torch
    from diffusers import DDPMScheduler

    a, m = _tiny()
    torch.use_deterministic_algorithms(False)
    # The images are noised in float32 even in bf16-true: in bf16, ᾱ_t rounds to 1 for t ≤ 20.
    noised, add_noise = [], DDPMScheduler.add_noise
    monkeypatch.setattr(
        DDPMScheduler, "add_noise", lambda self, x, e, t: noised.append((x.dtype, e.dtype)) or add_noise(self, x, e, t)
    )
    m.train(max_steps=2, precision="bf16-true", **TINY_TRAIN)
    assert noised and set(noised) == {(torch.float32, torch.float32)}
    assert m.train_info["base"]["steps"] == 2 and "bf16-true" in m.train_info["base"]["precision"]
    assert not torch.are_deterministic_algorithms_enabled()  # Trainer(deterministic=True) set it; given back
    for nets in (m.nets, m.ema):
        assert all(p.dtype == torch.float32 for p in nets["base"].parameters())
    # The EMA accumulated in float32 (bf16 weights cast up at the end would all be bf16 numbers).
    ema = torch.cat([p.flatten() for p in m.ema["base"].parameters()])
    assert (ema != ema.bfloat16().float()).any()
    assert m.generate(a[:2], n_per_obs=1, steps=2, progress_bar=False, device="cpu").shape == (2, 1, 8, 8, 3)


def test_attention_heads_are_head_dim_wide_and_settings_are_checked(toy):
    from rnapaint.nn import ConditionalUNet

    net = ConditionalUNet(16, 4, channels=(32, 64), attention=(False, True), layers_per_block=1, head_dim=16)
    attn = [m for m in net.modules() if type(m).__name__ == "Attention"]
    # diffusers reads attention_head_dim as the number of heads: 64 channels / 16 = 4 heads of 16.
    assert attn and all((m.heads, m.inner_dim // m.heads) == (4, 16) for m in attn)
    with pytest.raises(ValueError, match="head_dim 24 must divide"):
        ConditionalUNet(16, 4, channels=(32, 64), attention=(False, True), head_dim=24)
    a = toy[:12]
    for aug_max in (0, 1001):
        with pytest.raises(ValueError, match="aug_max must be in"):
            CascadedDiffusion(a, a.obsm["tiles"], base_size=8, base=TINY, sr=TINY, aug_max=aug_max)
    with pytest.raises(ValueError, match="augment must be"):
        CascadedDiffusion(a, a.obsm["tiles"], base_size=8, base=TINY, sr=TINY, augment="colour")
    m = CascadedDiffusion(a, a.obsm["tiles"], base_size=8, base=TINY, sr=TINY)
    assert m.dataset.augment.flips and not m.dataset.augment.hue  # dihedral only by default
    m = CascadedDiffusion(a, a.obsm["tiles"], base_size=8, base=TINY, sr=TINY, cond_drop=0.0)
    m.is_trained = True
    # Without condition dropout the unconditional branch never trained: guidance is refused.
    with pytest.raises(ValueError, match=r"guidance_scale=2\.0, but this model was trained with cond_drop=0"):
        m.generate(a[:1], n_per_obs=1, steps=1, progress_bar=False, device="cpu")
    tiles = m.generate(a[:1], n_per_obs=1, steps=1, guidance_scale=1, progress_bar=False, device="cpu")
    assert tiles.shape == (1, 1, 16, 16, 3)


def test_missing_diffusers_says_which_extra_to_install(monkeypatch, tmp_path):
    import importlib.util

    from rnapaint.cli.demo import run_demo
    from rnapaint.nn import ConditionalUNet

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'rnapaint\[diffusion\]'"):
        ConditionalUNet(16, 4, channels=(32, 64), attention=(False, True), layers_per_block=1, head_dim=16)
    # the demo ends with a diffusion model: it refuses at once, before minutes of other work
    with pytest.raises(ImportError, match="diffusers"):
        run_demo(tmp_path / "demo", root=tmp_path / "no data")
    assert not (tmp_path / "demo").exists()
