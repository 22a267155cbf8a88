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
# # From slides and spots to tiles a GPU can eat
#
# Generators learn from pairs: an expression profile and the tissue it came from. This tutorial
# builds the image half of those pairs with rnapaint, in the two situations its users meet:
#
# 1. **Spatial transcriptomics** (GenVinci): one H&E patch centred on every spot of a HER2ST
#    section, read from the section's image kept the way scanpy and squidpy keep it.
# 2. **Bulk RNA-seq with a whole-slide image** (RNA-GAN, RNA-CDM): many tissue tiles per sample,
#    cut from a real Aperio slide at 20× (0.5 µm/px) after a tissue mask drops the glass.
#
# Both end in a {class}`~rnapaint.data.TileStore` (zarr) or in `adata.obsm`, and both feed the same
# torch dataset, {class}`~rnapaint.data.PairedTiles`, which hands each tile to the model together
# with its unit's expression.

# %%
import os
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import rnapaint as rp

DATA = Path(os.environ.get("RNAPAINT_DATA", "../../shared/data")).expanduser().resolve()
WORK = Path(tempfile.mkdtemp(prefix="rnapaint-tiles-"))
print(f"rnapaint {rp.__version__}; data root {DATA}; outputs in {WORK}")

# %% [markdown]
# ## 1. A HER2ST section and its spots
#
# `images=True` attaches each section's H&E in scanpy's convention: `uns['spatial'][section]`
# holds a downscaled `hires` copy, its scale factor and, under `metadata`, the path of the
# full-resolution JPEG and its µm/px (estimated from the 200 µm pitch of the ST array). Spot
# centres are in `obsm['spatial']`, in full-resolution pixels — so `sc.pl.spatial` can draw the
# section as it draws Visium data.

# %%
section = rp.datasets.her2st(DATA, sections=["C2"], images=True)
entry = section.uns["spatial"]["C2"]
print(section)
print("hires image:", entry["images"]["hires"].shape, "scale factors:", entry["scalefactors"])
print(f"µm per pixel at full resolution: {entry['metadata']['mpp']:.3f}")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 5))
s = entry["scalefactors"]["tissue_hires_scalef"]
ax.imshow(entry["images"]["hires"])
ax.scatter(*(section.obsm["spatial"] * s).T, s=6, c=np.log1p(section.X.sum(1).A1), cmap="viridis")
ax.set_title("HER2ST C2: spots coloured by log total counts")
ax.axis("off")
# %% [markdown]
# ## 2. One patch per spot
#
# {func}`rnapaint.pp.spot_tiles` cuts a `size × size` patch centred on each spot, from the
# full-resolution image when the metadata names it. A spot whose patch would leave the image is
# flagged in `obs['tiles_outside']` rather than padded.

# %%
rp.pp.spot_tiles(section, size=224)
print(section.obsm["tiles"].shape, "flagged outside:", int(section.obs["tiles_outside"].sum()))
rp.pl.tiles(section, groupby="cluster", n=16, title="C2 spot patches, labelled by expression cluster")
# %% [markdown]
# ## 3. A whole-slide image, tiled at 20×
#
# {func}`rnapaint.pp.tile_slides` takes one expression unit per row and the path of its slide in
# an obs column. It computes an Otsu tissue mask on a thumbnail, lays a non-overlapping grid at the
# requested µm/px (reading the coarsest pyramid level that is still fine enough), drops tiles with
# too much glass or too little contrast, and writes the rest to a TileStore. Slides run in
# parallel processes (`n_jobs`) or on a Dask cluster (`client=`); a killed run resumes where it
# stopped, and unreadable slides land in a failure table instead of stopping the batch.

# %%
bulk = ad.AnnData(obs=pd.DataFrame({"slide": [str(DATA / "wsi" / "CMU-1-Small-Region.svs")]}, index=["sample_1"]))
rp.pp.tile_slides(bulk, store=WORK / "cmu.zarr", tile_size=256, mpp=0.5, max_tiles=200, progress_bar=False)
store = rp.data.TileStore.open(WORK / "cmu.zarr")
print(store)
store.table.head()

# %%
rp.pl.tiles(store, n=16, title="CMU-1-Small-Region: tissue tiles at 0.5 µm/px")
# %% [markdown]
# Which grid positions were kept? {func}`rnapaint.pp.plan_tiles` shows the grid with the mask's
# verdict; kept tiles are the candidates that also passed the per-tile glass and contrast checks.

# %%
from rnapaint.io import Slide
from rnapaint.pp.tiling import TilingParams

with Slide(DATA / "wsi" / "CMU-1-Small-Region.svs") as slide:
    grid, info = rp.pp.plan_tiles(slide, TilingParams(tile_size=256, mpp=0.5))
    thumb, down = slide.thumbnail(800)
kept = set(zip(store.table["x"], store.table["y"], strict=True))
fig, ax = plt.subplots(figsize=(5, 6))
ax.imshow(thumb)
for x, y in zip(grid["x"], grid["y"], strict=True):
    colour = "lime" if (x, y) in kept else "red"
    ax.add_patch(
        plt.Rectangle(
            (x / down, y / down), info["footprint"] / down, info["footprint"] / down, fill=False, ec=colour, lw=0.8
        )
    )
ax.set_title(f"{len(kept)} of {len(grid)} grid tiles kept (green)")
ax.axis("off")
# %% [markdown]
# ## 4. Pairs for training
#
# {class}`~rnapaint.data.PairedTiles` pairs every tile with its unit's expression (here the spot's
# counts; in practice the β-VAE latent, `rep="X_vae"`), applies the papers' augmentations (flips,
# 90° rotations, colour jitter) and returns images in [-1, 1]. {func}`rnapaint.data.tile_loader`
# wraps it in a seeded DataLoader with worker processes.

# %%
rp.pp.log1p(section)
pairs = rp.data.PairedTiles(section.obsm["tiles"], section, augment=True)
loader = rp.data.tile_loader(pairs, batch_size=8, num_workers=0)
batch = next(iter(loader))
print({k: tuple(v.shape) for k, v in batch.items()})
shown = ((batch["image"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
rp.pl.tiles(
    shown, labels=[section.obs_names[i] for i in batch["unit"].tolist()], ncols=8, title="an augmented training batch"
)
# %%
print(
    f"TUTORIAL-RESULT spots={section.n_obs} patches={int((~section.obs['tiles_outside']).sum())} wsi_tiles={len(store)}"
)
