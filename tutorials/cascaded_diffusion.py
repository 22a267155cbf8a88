# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Cascaded diffusion from expression (RNA-CDM)
#
# RNA-CDM paints tiles with one diffusion model conditioned on expression: a base stage draws a
# small image from noise, guided by the profile through cross-attention tokens and the timestep
# embedding, and a super-resolution stage sharpens it, conditioned on the upsampled small image
# (with noise augmentation) and on the profile again. Because the condition is the expression
# alone, one model serves every tissue and patient — and any profile, including ones that were
# never measured: shifted, synthetic or *enriched* with a cell type's signature.
#
# This tutorial runs on the built-in toy set, whose expression programs drive the tiles in known
# ways (the `density` program sets how much of a tile is nuclei), so every claim below is checked
# against ground truth. On a CPU the cascade is tiny (8 → 16 px, stages of ~1M and ~0.2M parameters);
# the HER2ST run at 64 → 128/256 px belongs on a GPU (`benchmarks/gpu.sh cdm`).

# %%
import os

import numpy as np
from scipy.stats import spearmanr

import rnapaint as rp

FAST = os.environ.get("RNAPAINT_TUTORIAL_FAST", "0") == "1"
STEPS = {"base": 300, "sr": 250} if FAST else {"base": 600, "sr": 400}
DRAWS = 2 if FAST else 4  # tiles painted per held-out unit
SAMPLE_STEPS, DDIM_STEPS = (10, 25) if FAST else (20, 200)  # denoising steps per stage at generation
print(f"rnapaint {rp.__version__}; {'fast' if FAST else 'full'} setting: {STEPS} training steps")

# %% [markdown]
# ## 1. Toy expression, a split and the β-VAE condition
#
# 400 units with two 16-px tiles each; 20 % of them (validation + test) are held out. The expression is
# log-transformed, z-scored with training statistics and embedded by a β-VAE, whose latent is the
# diffusion model's condition (`condition="expression"` would learn an encoder of the profile
# instead).

# %%
adata = rp.datasets.toy(n=400, tile_size=16, tiles_per_obs=2, seed=0)
rp.pp.log1p(adata)
rp.pp.split(adata, stratify="group", fractions=(0.8, 0.1, 0.1), seed=0)
rp.pp.zscore(adata)
rp.tl.vae(adata, hidden=(64, 32), latent_dim=8, max_epochs=80, lr=3e-3, batch_size=64, progress_bar=False)
adata

# %% [markdown]
# ## 2. Train the cascade
#
# {func}`rnapaint.tl.train_generator` with `method="cdm"` builds a
# {class}`rnapaint.models.CascadedDiffusion` on the training units and trains the base stage, then
# the super-resolution stage. The defaults are the GPU sizes (64 px base, UNets of tens of millions
# of parameters); here both stages are shrunk. 10 % of conditions are dropped in training, which
# is what makes classifier-free guidance possible at sampling. With `checkpoint_dir=` training writes
# safetensors checkpoints and resumes from them; `save_path=` saves the trained model.

# %%
net = {
    "channels": [32, 64],
    "attention": [False, True],
    "layers_per_block": 1,
    "n_tokens": 4,
    "token_dim": 64,
    "hidden": 64,
    "head_dim": 16,
}
sr = {**net, "channels": [16, 32], "attention": [False, False]}
rp.tl.train_generator(
    adata,
    adata.obsm["tiles"],
    method="cdm",
    model_kwargs={"base_size": 8, "base": net, "sr": sr},
    max_steps=STEPS,
    batch_size=32,
    lr=2e-3,
    warmup_steps=20,
    ema_decay=0.999,
    num_workers=0,
    progress_bar=False,
)
model = rp.tl.get_model(adata, "tile_cdm")
print(model, {stage: f"{info['steps']} steps in {info['seconds']:.0f} s" for stage, info in model.train_info.items()})
rp.pl.history(adata, key="tile_cdm")
# %% [markdown]
# ## 3. Guidance: how strongly the tiles follow the expression
#
# At sampling, the guidance scale `w` mixes the unconditional and conditional predictions,
# `uncond + w · (cond − uncond)`: `w = 0` ignores the expression, `w = 1` is the conditional model,
# `w > 1` follows the expression more strongly. Held-out units, sorted from sparse to dense: their
# real tile, then the model's at `w = 0` and `w = 2` (DPM-Solver++, 20 steps per stage; 10 in the
# fast setting).

# %%
held = adata[adata.obs["split"] != "train"].copy()
for w in (0.0, 1.0, 2.0):
    rp.tl.generate(
        held,
        model,
        n_per_obs=DRAWS,
        key_added=f"X_cdm_w{w:g}",
        guidance_scale=w,
        steps=SAMPLE_STEPS,
        seed=0,
        progress_bar=False,
    )
order = np.argsort(held.obs["density"].to_numpy())
picks = order[np.linspace(0, len(order) - 1, 8).round().astype(int)]
rows = {"real": "tiles", "w=0": "X_cdm_w0", "w=2": "X_cdm_w2"}
grid = np.concatenate([held.obsm[key][picks, 0] for key in rows.values()])
labels = [f"{name} d={held.obs['density'].iloc[i]:.2f}" for name in rows for i in picks]
rp.pl.tiles(grid, labels=labels, ncols=8, n=len(grid), title="held-out units, sparse → dense: real / w=0 / w=2")

# %% [markdown]
# How faithful is each? The toy renderer's ground truth lets us measure the nucleus fraction of
# every tile and correlate it with the density program that should drive it.


# %%
def nuclei_fraction(tiles: np.ndarray) -> np.ndarray:
    return rp.datasets.toy_tile_properties(tiles)["nuclei_fraction"].to_numpy()


measured = {"real": nuclei_fraction(held.obsm["tiles"])}
measured |= {f"CDM w={w:g}": nuclei_fraction(held.obsm[f"X_cdm_w{w:g}"]) for w in (0.0, 1.0, 2.0)}
rho = {k: spearmanr(held.obs["density"], v).statistic for k, v in measured.items()}
print({k: round(float(v), 2) for k, v in rho.items()})
rp.pl.response(
    held.obs["density"].to_numpy(),
    measured,
    xlabel="density program (ground truth)",
    ylabel="nucleus fraction of the tiles",
)
# %% [markdown]
# ## 4. Samplers
#
# DDPM, DDIM and DPM-Solver++ are interchangeable at generation. DPM-Solver++ in 20 steps (10 in
# the fast setting) should paint what DDIM paints in many more (200; 25 in the fast setting):
# compare their faithfulness and mean colour on the same units.

# %%
ddim = model.generate(
    held, sampler="ddim", steps=DDIM_STEPS, guidance_scale=2.0, n_per_obs=DRAWS, seed=0, progress_bar=False
)
dpm = held.obsm["X_cdm_w2"]
for name, t in ((f"DDIM, {DDIM_STEPS} steps", ddim), (f"DPM-Solver++, {SAMPLE_STEPS} steps", dpm)):
    r = spearmanr(held.obs["density"], nuclei_fraction(t)).statistic
    print(f"{name:24s} ρ = {r:.2f}; mean RGB {np.round(t.reshape(-1, 3).mean(0), 1)}")

# %% [markdown]
# ## 5. In-silico enrichment
#
# RNA-CDM's experiment: add a cell type's signature to a profile and see the cell mix change. Here
# the "cell type" is the densest training group: each held-out profile plus that group's mean
# (z-scored) expression is re-encoded by the model's β-VAE and painted with the same noise as the
# original. The nucleus fraction should rise.

# %%
train = adata[adata.obs["split"] == "train"]
signature = np.asarray(train[train.obs["group"] == "dense"].X).mean(0, keepdims=True)
enriched = held.copy()
enriched.X = np.asarray(held.X) + signature
del enriched.obsm["X_vae"]  # re-encoded from the new expression
rp.tl.generate(
    enriched,
    model,
    n_per_obs=DRAWS,
    key_added="X_cdm",
    guidance_scale=2.0,
    steps=SAMPLE_STEPS,
    seed=0,
    progress_bar=False,
)
gain = nuclei_fraction(enriched.obsm["X_cdm"]) - measured["CDM w=2"]
print(
    f"nucleus fraction {measured['CDM w=2'].mean():.3f} → {(measured['CDM w=2'] + gain).mean():.3f}; "
    f"denser for {100 * np.mean(gain > 0):.0f} % of units"
)
pair = np.concatenate([held.obsm["X_cdm_w2"][picks, 0], enriched.obsm["X_cdm"][picks, 0]])
rp.pl.tiles(
    pair,
    labels=[f"{k} d={held.obs['density'].iloc[i]:.2f}" for k in ("as is", "enriched") for i in picks],
    ncols=8,
    n=len(pair),
    title="same noise: profile as measured (top), dense-enriched (bottom)",
)
# %% [markdown]
# ## 6. Save, load, paint again
#
# Models are saved as safetensors weights and a JSON config (the β-VAE inside); a loaded model paints
# the same tiles from the same seed.

# %%
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    model.save(Path(tmp) / "toy_cdm")
    loaded = rp.models.load_model(Path(tmp) / "toy_cdm")
    # Each tile's noise comes from (seed, its unit's obs name, its draw); with rp.tl.generate's batch size
    # (256) too, the arithmetic is the same and so are the pixels (another batch size may move one by a
    # rounding step).
    again = loaded.generate(
        held, guidance_scale=2.0, steps=SAMPLE_STEPS, n_per_obs=DRAWS, seed=0, batch_size=256, progress_bar=False
    )
identical = bool(np.array_equal(again, held.obsm["X_cdm_w2"]))
print("identical after save → load:", identical)

# %%
print(
    f"TUTORIAL-RESULT rho_w0={rho['CDM w=0']:.3f} rho_w2={rho['CDM w=2']:.3f} rho_real={rho['real']:.3f} "
    f"enrich_gain={gain.mean():.4f} identical={int(identical)}"
)
