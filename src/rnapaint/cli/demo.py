"""The main job of ``make demo``: TCGA → β-VAE → latent figures and a text summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_demo(out: Path, root: Path | None = None, quick: bool = False, seed: int = 0) -> str:
    """TCGA → β-VAE, and toy expression → RNA-GAN / GAN / diffusion tiles; figures and a summary in ``out``.

    Writes ``history.png``, ``latent_umap.png`` (real / reconstructed / synthetic by cohort),
    ``shift_umap.png`` (held-out normals shifted toward tumour), ``toy_gan_tiles.png``,
    ``toy_gan_response.png``, ``toy_cdm_tiles.png``, ``toy_cdm_response.png``, ``summary.json`` and
    ``summary.txt``. Every number in the summary is measured in this run.

    Returns
    -------
    The summary text.
    """
    import rnapaint as rp
    from rnapaint.nn.diffusion_unet import require_diffusers

    require_diffusers()  # its last part trains a diffusion model: say so now, not after minutes
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata = rp.datasets.tcga_tumor_normal(root)
    rp.pp.split(adata, stratify=["cohort", "sample_type"], groups="patient", seed=seed)
    rp.pp.zscore(adata)
    settings = (
        {"hidden": (256, 128), "latent_dim": 32, "max_epochs": 30}
        if quick
        else {"hidden": (1024, 512), "latent_dim": 128, "max_epochs": 150}
    )
    rp.tl.vae(adata, beta=0.005, lr=1e-3, batch_size=128, seed=seed, **settings)
    model = rp.tl.get_model(adata)
    rp.tl.reconstruct(adata, groupby="split")
    per_split = adata.uns["reconstruction"]["per_group"]

    z = adata.obsm["X_vae"]
    train = (adata.obs["split"] == "train").to_numpy()
    test = (adata.obs["split"] == "test").to_numpy()
    knn = {
        col: rp.metrics.knn_accuracy(
            z[train], adata.obs[col].astype(str).to_numpy()[train], z[test], adata.obs[col].astype(str).to_numpy()[test]
        )
        for col in ("cohort", "sample_type")
    }

    # Synthetic tumours per cohort, judged by a 5-NN on real training expression.
    ref = adata[train]
    labels = ref.obs["cohort"].astype(str).to_numpy()
    synth, synth_acc = [], {}
    for c in adata.obs["cohort"].cat.categories:
        s = rp.tl.synthetic_expression(ref, ["cohort", "sample_type"], (c, "tumor"), n=50, seed=seed)
        synth_acc[c] = float(np.mean(rp.metrics.knn_predict(ref.X, labels, s.X) == c))
        synth.append(s)

    # Held-out normals shifted toward their cohort's tumours.
    shifted, shift_hits, shift_n = [], 0, 0
    for c in adata.obs["cohort"].cat.categories:
        sub = adata[adata.obs["cohort"] == c]
        rows = ((sub.obs["sample_type"] == "normal") & (sub.obs["split"] == "test")).to_numpy()
        if not rows.any():
            continue
        sh = rp.tl.shift(sub, "sample_type", "normal", "tumor", subset=rows)
        tr = (sub.obs["split"] == "train").to_numpy()
        pred = rp.metrics.knn_predict(sub.X[tr], sub.obs["sample_type"].astype(str).to_numpy()[tr], sh.X)
        shift_hits += int((pred == "tumor").sum())
        shift_n += len(sh)
        shifted.append(sh)

    rp.pl.history(adata, save=out / "history.png", show=False)
    rp.pl.latent_umap(adata, "cohort", synthetic=synth, seed=seed, save=out / "latent_umap.png", show=False)
    held_out = adata[test]
    rp.pl.latent_umap(
        held_out,
        "sample_type",
        synthetic=shifted,
        model=model,
        reconstructed=False,
        seed=seed,
        save=out / "shift_umap.png",
        show=False,
    )

    from .demo_toy_gan import run_toy_gan

    gan_numbers, gan_lines = run_toy_gan(out, quick=quick, seed=seed)
    from .demo_toy_cdm import run_toy_cdm

    cdm_numbers, cdm_lines = run_toy_cdm(out, quick=quick, seed=seed)
    summary = {
        "data": "TCGA tumour/normal, 9 cohorts",
        "n_samples": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "split_sizes": {k: int(v) for k, v in adata.obs["split"].value_counts().items()},
        "model": repr(model),
        "epochs": model.train_info["epochs"],
        "reconstruction_rmse": {k: round(float(v), 4) for k, v in per_split["rmse"].items()},
        "knn5_accuracy_test": {k: round(v, 4) for k, v in knn.items()},
        "synthetic_tumours_classified_as_their_cohort": {k: round(v, 3) for k, v in synth_acc.items()},
        "shift_normal_to_tumour_classified_tumour": round(shift_hits / max(1, shift_n), 4),
        "shift_n": shift_n,
        **gan_numbers,
        **cdm_numbers,
        "seconds": round(time.time() - t0, 1),
    }
    _write_text(out / "summary.json", json.dumps(summary, indent=1))
    lines = [
        f"rnapaint demo — {summary['data']}: {adata.n_obs} samples × {adata.n_vars} genes "
        f"(split {summary['split_sizes']})",
        f"model: {summary['model']}, {summary['epochs']} epochs",
        "reconstruction RMSE (z-score units): "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary["reconstruction_rmse"].items()),
        "5-NN on X_vae, test split: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["knn5_accuracy_test"].items()),
        "synthetic tumours classified as their cohort (5-NN on real expression): "
        + ", ".join(f"{k} {v:.2f}" for k, v in synth_acc.items()),
        f"held-out normals shifted toward tumour, classified tumour: "
        f"{summary['shift_normal_to_tumour_classified_tumour']:.3f} of {shift_n}",
        f"figures: {out}/history.png, latent_umap.png, shift_umap.png",
        *gan_lines,
        *cdm_lines,
        f"({summary['seconds']} s)",
    ]
    text = "\n".join(lines)
    _write_text(out / "summary.txt", text + "\n")
    return text
