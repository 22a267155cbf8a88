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
# # Painting H&E from spatial expression with RNA-GAN
#
# RNA-GAN learns a compact latent space of expression with a β-VAE, then trains a GAN whose
# generator turns that latent (plus a little noise) into an H&E tile. This tutorial does it on
# HER2-positive breast cancer spatial transcriptomics (HER2ST, patient C): spots of sections C2–C4
# with their H&E patches train both models; section **C5 is held out** — its images are never seen
# in training — and section **C1**, which has counts but no image here, gets a *virtual H&E*.
#
# On a CPU this runs at a toy size (64 px tiles, a narrow network, a few hundred steps), so the tiles
# it paints are rough: read the figures as a walk-through of the API, not as a result. The full-size
# run (256 px, RNA-GAN's 112M-parameter generator, equal GPU time for RNA-GAN and the GAN baseline)
# belongs on a GPU. How faithful and how realistic the tiles are is measured by the evaluation
# module, not by eye.

# %%
import os
from pathlib import Path

import numpy as np
import scanpy as sc

import rnapaint as rp

DATA = Path(os.environ.get("RNAPAINT_DATA", "../../shared/data")).expanduser().resolve()
FAST = os.environ.get("RNAPAINT_TUTORIAL_FAST", "0") == "1"
STEPS = 100 if FAST else 2000
PX = 32 if FAST else 64  # tile edge the CPU-size generator paints
print(f"rnapaint {rp.__version__}; data root {DATA}; {'fast' if FAST else 'full'} setting: {STEPS} steps, {PX} px")

# %% [markdown]
# ## 1. Spots, their patches and a held-out section
#
# Sections C2–C5 come with their H&E (`images=True`); C1 has only counts. Each spot with an image
# gets a 224-pixel patch (about 150 µm here), shrunk to 64 px (32 px in the fast setting) for the
# CPU-size model.

# %%
adata = rp.datasets.her2st(DATA, sections=["C1", "C2", "C3", "C4", "C5"], images=True)
with_image = adata[adata.obs["section"] != "C1"].copy()
rp.pp.spot_tiles(with_image, size=224, out_size=PX, library_key="section", progress_bar=False)
adata.obsm["tiles"] = np.zeros((adata.n_obs, 1, PX, PX, 3), np.uint8)  # C1: no image, black rows are skipped
adata.obsm["tiles"][adata.obs_names.get_indexer(with_image.obs_names)] = with_image.obsm["tiles"]
adata.obs["split"] = np.where(adata.obs["section"].isin(["C1", "C5"]), "test", "train")
rng = np.random.default_rng(0)
train = np.flatnonzero(adata.obs["split"] == "train")
adata.obs.iloc[rng.choice(train, len(train) // 10, replace=False), adata.obs.columns.get_loc("split")] = "val"
adata.obs["split"] = adata.obs["split"].astype("category")
adata.obs.groupby(["section", "split"], observed=True).size().unstack(fill_value=0)

# %% [markdown]
# ## 2. Expression: normalise, pick genes on the training spots, z-score, β-VAE
#
# Counts are scaled to the same total per spot and log-transformed; the 2,000 most variable genes
# are chosen on training spots only, z-scored with training statistics, and embedded by the β-VAE.

# %%
sc.pp.normalize_total(adata, target_sum=1e4)
rp.pp.log1p(adata)
is_train = (adata.obs["split"] == "train").to_numpy()
hvg = sc.pp.highly_variable_genes(adata[is_train], n_top_genes=2000, inplace=False)
adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
rp.pp.zscore(adata)
rp.tl.vae(
    adata, hidden=(256, 128), latent_dim=32, max_epochs=40 if FAST else 200, lr=1e-3, batch_size=64, progress_bar=False
)
rp.pl.history(adata)
# %% [markdown]
# ## 3. RNA-GAN and the GAN baseline
#
# {func}`rnapaint.tl.train_generator` trains on the training spots' (latent, patch) pairs. RNA-GAN's
# input is the spot's latent plus uniform noise in [−0.3, 0.3]; the baseline gets noise only. Both
# get the same number of steps.

# %%
settings = dict(
    model_kwargs={"width": 16},
    max_steps=STEPS,
    batch_size=64,
    n_critic=2,
    lr_g=1e-3,
    lr_d=2e-3,
    num_workers=0,
    progress_bar=False,
)
rp.tl.train_generator(adata, adata.obsm["tiles"], method="rnagan", **settings)
rp.tl.train_generator(adata, adata.obsm["tiles"], method="gan", **settings)
rnagan, gan = rp.tl.get_model(adata, "tile_rnagan"), rp.tl.get_model(adata, "tile_gan")
print(rnagan, gan, sep="\n")

# %% [markdown]
# ## 4. Held-out section C5: real patches next to painted ones
#
# The same eight C5 spots: their real patch, RNA-GAN's tile from their expression, and the GAN's
# tile from noise. In the fast setting (100 critic steps) expect both to be far from real tissue:
# RNA-GAN's critic also judges whether a tile fits its expression (a projection critic), which
# makes its game harder, and after so few steps its tiles are often still near-uniform while the
# noise-only GAN has begun to produce texture. The conditional model needs the full setting (and a
# GPU for 256 px) before its tiles can be judged — by the evaluation module, not by eye.

# %%
c5 = adata[adata.obs["section"] == "C5"].copy()
rp.tl.generate(c5, rnagan, n_per_obs=2, key_added="X_rnagan", seed=0)
rp.tl.generate(c5, gan, n_per_obs=2, key_added="X_gan", seed=0)
pick = np.random.default_rng(1).choice(c5.n_obs, 8, replace=False)
grid = np.concatenate([c5.obsm["tiles"][pick, 0], c5.obsm["X_rnagan"][pick, 0], c5.obsm["X_gan"][pick, 0]])
labels = [f"{kind} {c5.obs['cluster'].iloc[i]}" for kind in ("real", "RNA-GAN", "GAN") for i in pick]
rp.pl.tiles(grid, labels=labels, ncols=8, n=len(grid), title="C5 (held out): real / RNA-GAN / GAN, by cluster")
# %% [markdown]
# ## 5. Virtual H&E for a section without an image
#
# C1 has expression only. Painting a tile for each spot and placing it at the spot's array position
# gives a virtual H&E of the section — the imputation use case.

# %%
c1 = adata[adata.obs["section"] == "C1"].copy()
rp.tl.generate(c1, rnagan, n_per_obs=1, key_added="X_rnagan", seed=0)
x = c1.obs["array_x"].to_numpy() - c1.obs["array_x"].min()
y = c1.obs["array_y"].to_numpy() - c1.obs["array_y"].min()
mosaic = np.full(((y.max() + 1) * PX, (x.max() + 1) * PX, 3), 255, np.uint8)
for t, i, j in zip(c1.obsm["X_rnagan"][:, 0], y, x, strict=True):
    mosaic[i * PX : (i + 1) * PX, j * PX : (j + 1) * PX] = t
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(mosaic)
ax.set_title(f"C1: virtual H&E from expression ({c1.n_obs} spots)")
ax.axis("off")
# %%
print(f"TUTORIAL-RESULT c5_spots={c5.n_obs} c1_spots={c1.n_obs} steps={rnagan.train_info['steps']}")
