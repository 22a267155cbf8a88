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
# # TCGA tumour and normal expression in a β-VAE latent space
#
# This tutorial walks through the first half of RNA-GAN (Carrillo-Perez et al., *Cell Reports
# Methods* 2023) with rnapaint: a β-variational autoencoder (β-VAE) learns a compact latent space
# of bulk RNA-seq profiles. Later on, that latent space is what conditions the image generators
# that paint H&E tiles. Before painting anything, check that the latent space is good. It should
# reconstruct unseen samples, keep tissues and tumour/normal status apart, and give sensible
# profiles when you sample or move around in it.
#
# Steps:
#
# 1. load matched tumour / adjacent-normal samples of nine TCGA cohorts;
# 2. split them into train / validation / test **by patient**;
# 3. z-score every gene with statistics of the training split only;
# 4. train a β-VAE and read its training curves;
# 5. measure the reconstruction error on held-out patients;
# 6. draw real, reconstructed and synthetic profiles in one UMAP;
# 7. move held-out normals toward the tumours of their cohort in latent space;
# 8. save the model, load it again and encode an "external" cohort with it.
#
# Every number quoted below comes from the printed output of this run. Nothing in the text is
# copied from a previous run, so read the printed values rather than trusting expectations.

# %% [markdown]
# ## Setup
#
# The data root is the folder that holds `tcga_tumor_normal/` (one `{COHORT}.tsv.gz` table per
# cohort). Set the environment variable `RNAPAINT_DATA` to point at it. If you don't, the
# tutorial looks in `../shared/data` next to the repository.
#
# With `RNAPAINT_TUTORIAL_FAST=1` the tutorial trains a small model for a few epochs. The test
# suite uses that setting; it runs in about a minute on a laptop CPU. The full
# setting trains a larger model (hidden layers 1024 and 512, a 128-dimensional latent space) for
# up to 150 epochs, which takes minutes on a CPU and much less on a GPU. The paper's model is
# larger still (6000/4096 → 2048): pass `hidden=(6000, 4096), latent_dim=2048` if you have the
# memory. The fast setting is meant for testing: its model is under-trained, so expect weaker
# numbers and figures from it than from the full setting.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import rnapaint as rp

DATA = Path(os.environ.get("RNAPAINT_DATA", "../../shared/data")).expanduser().resolve()
FAST = os.environ.get("RNAPAINT_TUTORIAL_FAST", "0") == "1"
SEED = 0

if FAST:
    SETTINGS = {"hidden": (128, 64), "latent_dim": 16, "max_epochs": 15, "progress_bar": False}
else:
    SETTINGS = {"hidden": (1024, 512), "latent_dim": 128, "max_epochs": 150, "progress_bar": True}

print(f"rnapaint {rp.__version__}; data root {DATA}; {'fast' if FAST else 'full'} setting: {SETTINGS}")

# %% [markdown]
# ## 1. Load TCGA tumour / normal expression
#
# {func}`rnapaint.datasets.tcga_tumor_normal` reads the nine cohorts and keeps the genes that all
# of them share. You get one AnnData with samples as rows and genes as columns. The values are
# already log2-transformed, so the data never goes through `rp.pp.log1p`. The `obs` table holds
# the cohort, the organ (`tissue`), the sample type (`tumor` or `normal`) and the patient
# barcode.

# %%
adata = rp.datasets.tcga_tumor_normal(DATA)
adata

# %%
pd.crosstab(adata.obs["cohort"], adata.obs["sample_type"], margins=True)

# %% [markdown]
# Each patient contributes a tumour and its matched adjacent normal, so the two columns are
# balanced within every cohort. Two pairs of cohorts share an organ: KIRC and KIRP (kidney), and
# LUAD and LUSC (lung). Their *normal* samples come from the same tissue, so expect them to
# overlap later.

# %% [markdown]
# ## 2. Split by patient
#
# A tumour and the matched normal of the same patient share that person's germline, age and
# sampling protocol. If one of them trains the model and the other tests it, the test looks
# better than it should. {func}`rnapaint.pp.split` with `groups="patient"` keeps each patient's
# samples in one split. `stratify` keeps the cohort × sample-type proportions equal across the
# splits. The model trains on `train`, stops early on `val`, and is judged on `test`.

# %%
rp.pp.split(adata, stratify=["cohort", "sample_type"], groups="patient", seed=SEED)
splits_per_patient = adata.obs.groupby("patient", observed=True)["split"].nunique()
print("patients whose samples straddle two splits:", int((splits_per_patient > 1).sum()))
pd.crosstab(adata.obs["cohort"], adata.obs["split"])

# %% [markdown]
# ## 3. z-score each gene on the training split
#
# The β-VAE takes per-gene z-scores as input: $(x - \mu_g) / \sigma_g$. {func}`rnapaint.pp.zscore`
# fits $\mu_g$ and $\sigma_g$ on the training rows only. Fitting them on every row would leak the
# test samples into the preprocessing. The statistics are stored with the genes
# (`var['rp_mean']`, `var['rp_std']`). Later, another cohort is put on the same scale with them
# (step 8).
#
# In z-score units, 0 is the training mean of a gene and 1 is one training standard deviation.
# That gives a reference for the reconstruction error: a model that predicts the training mean
# for every gene has an RMSE of about 1.

# %%
rp.pp.zscore(adata)
x = np.asarray(adata.X)
for name in ("train", "test"):
    rows = (adata.obs["split"] == name).to_numpy()
    print(f"{name:5s}: mean {x[rows].mean():+.3f}, std {x[rows].std():.3f}")
adata.var[["rp_mean", "rp_std"]].describe().T

# %% [markdown]
# The training rows have mean 0 and standard deviation 1 by construction. The test rows come
# close but do not match exactly, as you would expect for samples the statistics never saw.

# %% [markdown]
# ## 4. Train the β-VAE
#
# {func}`rnapaint.tl.vae` builds a {class}`rnapaint.models.BetaVAE` on `adata` and trains it
# through PyTorch Lightning. It uses Adam with warm-up and cosine decay, and stops early on the
# validation loss, keeping the best epoch. The encoder maps each profile to a Gaussian in latent
# space. The decoder maps a latent point back to the z-scores of every gene. The loss is the
# mean squared reconstruction error plus β times the KL divergence from the standard normal
# prior. With a small β (0.005, the paper's value), reconstruction dominates. The latent means
# of real samples then occupy only part of the prior. That is why the synthetic profiles below
# sample around group centroids instead of from the full prior.
#
# The function writes the latent means into `adata.obsm['X_vae']` and the settings and training
# history into `adata.uns['vae']`. {func}`rnapaint.tl.get_model` gives back the model object.

# %%
rp.tl.vae(adata, beta=0.005, lr=1e-3, batch_size=128, seed=SEED, **SETTINGS)
model = rp.tl.get_model(adata)
print(model)
print(model.train_info)

# %% [markdown]
# The training curves show, from left to right, the total loss, the reconstruction term (log
# scale) and the KL term, for training (solid) and validation (dashed). Look for these signs:
#
# - **Validation reconstruction goes down and flattens.** If it turns up while the training
#   curve keeps falling, the model is memorising the training patients. Early stopping then
#   restores the best epoch (`best_epoch` above).
# - **The gap between train and validation.** A small gap means the model generalises across
#   patients.
# - **The KL term settles rather than collapsing to 0.** If it falls to 0, the latent space
#   carries no information.
#
# In the fast setting the curves are short, and the model has not converged.

# %%
fig = rp.pl.history(adata)

# %% [markdown]
# ## 5. Reconstruction error on held-out patients
#
# {func}`rnapaint.tl.reconstruct` encodes every sample, decodes its latent mean and compares the
# result with the input. RMSE is in z-score units. MAPE is on the original log2 scale (the
# z-scores are turned back with the stored statistics). Per-sample values go into
# `obs['reconstruction_rmse']` and `obs['reconstruction_mape']`. The table below summarises them
# per split.
#
# Compare the `test` row with the `train` row: a much lower training error means overfitting.
# Compare both with 1.0, the error of predicting the training mean for every gene.

# %%
rp.tl.reconstruct(adata, groupby="split")
per_split = adata.uns["reconstruction"]["per_group"]
rmse_test = float(per_split.loc["test", "rmse"])
per_split

# %% [markdown]
# The same error per cohort, on the held-out patients only. Cohorts with few training samples
# or heterogeneous tumours tend to reconstruct worse.

# %%
held_out = adata[adata.obs["split"] == "test"].copy()
rp.tl.reconstruct(held_out, model=model, groupby="cohort")
held_out.uns["reconstruction"]["per_group"].sort_values("rmse")

# %% [markdown]
# A reconstruction can look fine on average and still lose the biology. Here is a direct check:
# does the latent space keep cohorts and tumour/normal status apart? A 5-nearest-neighbour
# classifier learns labels from the latent means of the training samples and predicts them for
# the test samples ({func}`rnapaint.metrics.knn_accuracy`). Remember that kidney and lung normals
# come from shared organs, so a few cohort confusions between them are expected.

# %%
z = adata.obsm["X_vae"]
train = (adata.obs["split"] == "train").to_numpy()
test = (adata.obs["split"] == "test").to_numpy()
knn_test = {}
for col in ("cohort", "sample_type"):
    labels = adata.obs[col].astype(str).to_numpy()
    knn_test[col] = rp.metrics.knn_accuracy(z[train], labels[train], z[test], labels[test])
    print(f"5-NN accuracy of {col} on the test split from X_vae: {knn_test[col]:.3f}")

# %% [markdown]
# ## 6. Real, reconstructed and synthetic profiles in one UMAP
#
# {func}`rnapaint.tl.synthetic_expression` makes new profiles for a group. It takes the latent
# centroid of the group, adds Gaussian draws (0.3 × the prior's spread by default), and decodes
# them. Here, 50 synthetic tumours are generated per cohort from the training samples. Each
# cohort and sample type is a separate group (`["cohort", "sample_type"]`), because the midpoint
# between a cohort's tumours and its normals is not a real profile.
#
# Synthetic profiles are only useful if they resemble real profiles of the intended group. To
# check, each synthetic profile is labelled by a 5-NN classifier trained on real *training
# expression*, not on the latent space, and the fraction that lands in the intended cohort is
# printed.

# %%
reference = adata[train]
ref_labels = reference.obs["cohort"].astype(str).to_numpy()
synthetic, synth_ok = [], {}
for cohort in adata.obs["cohort"].cat.categories:
    s = rp.tl.synthetic_expression(reference, ["cohort", "sample_type"], (cohort, "tumor"), n=50, seed=SEED)
    synth_ok[cohort] = float(np.mean(rp.metrics.knn_predict(reference.X, ref_labels, s.X) == cohort))
    synthetic.append(s)
pd.Series(synth_ok, name="synthetic tumours classified as their cohort").round(3)

# %% [markdown]
# {func}`rnapaint.pl.latent_umap` fits one UMAP, through scanpy's PCA → neighbours → UMAP, on
# all profiles together: real samples, their reconstructions and the synthetic tumours. It then
# draws each kind in its own panel on the shared coordinates, with the other points in grey
# behind. What to look at:
#
# - **real**: the cohorts form separate islands. Expect the tumours of a cohort and its normals
#   to be neighbouring clusters, and kidney (KIRC/KIRP) and lung (LUAD/LUSC) normals to mix.
# - **reconstructed**: every colour should sit where the same colour sits in the real panel.
#   Reconstructions are usually *tighter* than the real clusters, because the decoder averages
#   away sample-specific noise.
# - **synthetic**: each cohort's synthetic tumours should fall inside that cohort's tumour
#   island. A cloud between islands means the samples have left the data manifold.

# %%
fig = rp.pl.latent_umap(adata, "cohort", synthetic=synthetic, seed=SEED)

# %% [markdown]
# ## 7. Move normals toward tumour within a cohort
#
# RNA-GAN's latent transfer takes the difference between two latent centroids,
# $\Delta = \bar z_{\text{tumour}} - \bar z_{\text{normal}}$, adds it to the latent means of
# normal samples, and decodes the result. {func}`rnapaint.tl.shift` does this within whatever
# AnnData you pass. Pass one cohort, so that Δ is that tissue's tumour signature rather than a
# mix of tissues. Here the held-out (test) normals of KIRC, clear-cell renal carcinoma, are
# shifted.
#
# Two checks:
#
# - a 5-NN classifier trained on the cohort's real training expression says whether the shifted
#   profiles look like tumour;
# - the per-gene change the shift produces is compared with the real mean tumour − normal
#   difference in the training data. A faithful shift moves the same genes in the same
#   direction (correlation close to 1). Look at the printed top genes as well, and ask whether
#   they make sense for this tumour type.

# %%
COHORT = "KIRC"
sub = adata[adata.obs["cohort"] == COHORT]
normals_test = ((sub.obs["sample_type"] == "normal") & (sub.obs["split"] == "test")).to_numpy()
shifted = rp.tl.shift(sub, "sample_type", "normal", "tumor", subset=normals_test)

sub_train = (sub.obs["split"] == "train").to_numpy()
sub_types = sub.obs["sample_type"].astype(str).to_numpy()
pred = rp.metrics.knn_predict(sub.X[sub_train], sub_types[sub_train], shifted.X)
print(f"{COHORT}: {len(shifted)} held-out normals shifted; classified tumour: {np.mean(pred == 'tumor'):.3f}")
before = rp.metrics.knn_predict(sub.X[sub_train], sub_types[sub_train], sub.X[normals_test])
print(f"the same normals before shifting, classified tumour: {np.mean(before == 'tumor'):.3f}")

change = pd.Series(np.asarray(shifted.X - sub.X[normals_test]).mean(0), index=sub.var_names)
is_tumour = sub_types == "tumor"
real_diff = pd.Series(sub.X[sub_train & is_tumour].mean(0) - sub.X[sub_train & ~is_tumour].mean(0), index=sub.var_names)
print(
    f"correlation of the shift's per-gene change with the real tumour − normal difference: "
    f"{np.corrcoef(change, real_diff)[0, 1]:.3f}"
)
pd.DataFrame(
    {
        "up in shifted": change.nlargest(10).index,
        "down in shifted": change.nsmallest(10).index,
    }
)

# %% [markdown]
# In the UMAP of this cohort, grey points are all of its real samples, coloured points are real
# samples by sample type in the left panel, and shifted profiles are coloured by their target
# (`tumor`) in the right panel. If the shift works, the shifted normals leave the normal cluster
# and land among the real tumours.

# %%
fig = rp.pl.latent_umap(sub, "sample_type", synthetic=shifted, model=model, reconstructed=False, seed=SEED)

# %% [markdown]
# The same check for every cohort, pooled: the fraction of held-out normals that a 5-NN on
# their cohort's training expression labels tumour after the shift.

# %%
shift_hits = {}
for cohort in adata.obs["cohort"].cat.categories:
    c_sub = adata[adata.obs["cohort"] == cohort]
    rows = ((c_sub.obs["sample_type"] == "normal") & (c_sub.obs["split"] == "test")).to_numpy()
    if not rows.any():
        continue
    sh = rp.tl.shift(c_sub, "sample_type", "normal", "tumor", subset=rows)
    tr = (c_sub.obs["split"] == "train").to_numpy()
    types = c_sub.obs["sample_type"].astype(str).to_numpy()
    shift_hits[cohort] = float(np.mean(rp.metrics.knn_predict(c_sub.X[tr], types[tr], sh.X) == "tumor"))
shift_fraction = float(np.mean(list(shift_hits.values())))
print(f"mean over cohorts of shifted normals classified tumour: {shift_fraction:.3f}")
pd.Series(shift_hits, name="shifted normals classified tumour").round(3)

# %% [markdown]
# ## 8. Save the model, load it, and encode an external cohort
#
# {meth}`rnapaint.models.BetaVAE.save` writes a directory with `model.safetensors`, which holds
# the weights and the normalisation statistics, and `config.json`, which holds the settings,
# the gene list, the training history and a checksum. Nothing is pickled, so loading a model
# file from someone else cannot run code. Here the directory is temporary. In practice, put it
# next to your results.

# %%
model_dir = Path(tempfile.mkdtemp(prefix="rnapaint_tutorial_")) / "tcga_vae"
model.save(model_dir)
print(sorted(p.name for p in model_dir.iterdir()))
loaded = rp.models.BetaVAE.load(model_dir)
print(loaded)

# %% [markdown]
# An external cohort seldom arrives on the model's gene panel. Genes can be in another order, a
# few can be missing, and the values are on the source's scale. To imitate this, take the
# held-out test patients from the *raw* log2 tables, shuffle their gene order and drop 1 % of
# the genes at random. Then put the data on the model's footing:
#
# 1. {func}`rnapaint.pp.align_genes` reorders the data to the model's gene list and zero-fills the
#    missing genes. It marks them in `var['rp_missing']` and refuses data that lacks most of the
#    panel, which usually means gene symbols were matched against Ensembl ids.
# 2. {func}`rnapaint.pp.zscore` with `reference=loaded` applies the *training* statistics, which
#    travel in the model files (`loaded.var`), instead of fitting new ones. You don't need the
#    training data for this. The training AnnData would do as well (`reference=adata`).
#    A zero-filled log2 value would become a large negative z-score, a claim that the gene is not
#    expressed at all, so `zscore` sets the genes marked missing to 0, the training mean: the
#    neutral choice.
#
# Then `rp.tl.vae(ext, model=loaded)` only *encodes*: nothing is trained, and the model checks
# that the genes match.

# %%
raw = rp.datasets.tcga_tumor_normal(DATA)
rng = np.random.default_rng(SEED)
keep = rng.permutation(raw.n_vars)[: int(0.99 * raw.n_vars)]
external = raw[adata.obs_names[test], keep].copy()
print(f"external cohort as received: {external.n_obs} samples × {external.n_vars} genes, shuffled order")

ext = rp.pp.align_genes(external, loaded.var_names)
rp.pp.zscore(ext, reference=loaded)
missing = ext.var["rp_missing"].to_numpy()
assert (ext.X[:, missing] == 0).all()  # zscore put the missing genes at the training mean
rp.tl.vae(ext, model=loaded)
rp.tl.reconstruct(ext, model=loaded, groupby="cohort")
rmse_external = float(ext.uns["reconstruction"]["rmse"])
print(f"{int(missing.sum())} genes zero-filled")
print(f"reconstruction RMSE of the external cohort: {rmse_external:.3f}")
print(f"reconstruction RMSE of the same patients in-session, all genes: {rmse_test:.3f}")

# %% [markdown]
# The external cohort holds the same patients as the test split, so its embedding should closely
# match the one computed in the session. It differs only through the missing genes, and the
# reconstruction error should be close to the test error above. The last check asks whether
# the external samples land next to the right training samples in latent space. The 5-NN below
# uses the *training* latents as reference and labels the external samples.

# %%
z_ext = ext.obsm["X_vae"]
z_session = adata.obsm["X_vae"][test]
agreement = np.corrcoef(z_ext.ravel(), z_session.ravel())[0, 1]
print(f"correlation of external and in-session latent means: {agreement:.4f}")
knn_external = {}
for col in ("cohort", "sample_type"):
    labels = adata.obs[col].astype(str).to_numpy()
    ext_labels = ext.obs[col].astype(str).to_numpy()
    knn_external[col] = rp.metrics.knn_accuracy(z[train], labels[train], z_ext, ext_labels)
    print(f"5-NN accuracy of {col} for the external cohort: {knn_external[col]:.3f}")

# %% [markdown]
# ## Summary
#
# One line with the run's key numbers. The test suite parses it: the reconstruction RMSE on
# held-out patients has to stay below 1, the error of predicting the training mean.

# %%
print(
    f"TUTORIAL-RESULT rmse_test={rmse_test:.4f} rmse_external={rmse_external:.4f} "
    f"knn_cohort_test={knn_test['cohort']:.4f} knn_sample_type_test={knn_test['sample_type']:.4f} "
    f"shift_classified_tumour={shift_fraction:.4f} epochs={model.train_info['epochs']}"
)
