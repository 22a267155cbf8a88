"""Do RNA-CDM's cheaper sampling recipes keep it faithful and realistic? Toy set, CPU.

Trains the cascade of ``tests/test_diffusion.py`` (8 → 16 px, base 300 + super-resolution 250 steps)
on the procedural toy set, then paints the held-out units (4 tiles each, the same seed) with each
recipe ``steps:sr_steps:guidance_scale:sr_guidance_scale[:sampler]`` of ``--recipes``, e.g.
``25:10:2:1`` (DPM-Solver++) or ``25:25:2:2:dpm++sde``. Reported: the Spearman ρ between the
driving programs (density, hue) and what is measured on the generated tiles (nucleus fraction,
hue), over units; how far the distribution of three measured properties (nucleus fraction, nucleus
count, mean nucleus area) is from the real held-out tiles' (1-D Wasserstein distance in units of
the real property's standard deviation, mean of the three, per tile, as ``gan_options.py`` reports
it); and the tiles' pixel roughness, the mean absolute difference between neighbouring pixels
(0–255), against the real tiles'. Real tiles' own ρ is printed for reference (generated tiles can
exceed it: guidance exaggerates the programs).

Usage::

    .venv/bin/python benchmarks/cdm_options.py --seed 0
    .venv/bin/python benchmarks/cdm_options.py --recipes 25:25:2:2 25:10:2:2 --seed 1
    .venv/bin/python benchmarks/cdm_options.py --recipes 25:25:2:2 25:25:2:2:dpm++sde 25:25:2:2:ddim 250:250:2:2:ddpm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr, wasserstein_distance

try:
    import rnapaint as rp
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import rnapaint as rp

from roughness import roughness  # benchmarks/roughness.py, beside this script

# The cascade of `make demo` and tests/test_diffusion.py: small enough to train in minutes on two cores.
from rnapaint.cli.demo_toy_cdm import NET, SR
from rnapaint.models.cascaded_diffusion import SAMPLERS

MODEL = {"base_size": 8, "base": NET, "sr": SR}
PROPERTIES = ("nuclei_fraction", "nuclei_count", "mean_nucleus_area")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["25:25:2:2", "25:10:2:2", "25:25:2:1", "25:10:2:1"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    recipes = []
    for r in args.recipes:
        parts = r.split(":")
        if len(parts) not in (4, 5):
            raise SystemExit(f"a recipe is steps:sr_steps:guidance:sr_guidance[:sampler], got {r!r}")
        sampler = parts[4] if len(parts) == 5 else "dpm++"
        if sampler not in SAMPLERS:  # before minutes of training, not after
            raise SystemExit(f"unknown sampler {sampler!r} in recipe {r!r}; one of {SAMPLERS}")
        recipes.append((int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]), sampler))
    a = rp.datasets.toy(n=400, tile_size=16, tiles_per_obs=2, seed=args.seed)
    rp.pp.log1p(a)
    rp.pp.split(a, stratify="group", fractions=(0.8, 0.1, 0.1), seed=args.seed)
    rp.pp.zscore(a)
    rp.tl.vae(
        a, hidden=(64, 32), latent_dim=8, max_epochs=80, lr=3e-3, batch_size=64, seed=args.seed, progress_bar=False
    )
    t0 = time.perf_counter()
    m = rp.models.CascadedDiffusion(a, a.obsm["tiles"], condition="vae", **MODEL)
    m.train(
        max_steps={"base": 300, "sr": 250},
        batch_size=32,
        lr=2e-3,
        warmup_steps=20,
        ema_decay=0.999,
        num_workers=0,
        progress_bar=False,
        seed=args.seed,
    )
    print(f"trained in {time.perf_counter() - t0:.0f} s (seed {args.seed})")
    test = a[a.obs["split"] != "train"]
    real_units = rp.datasets.toy_tile_properties(test.obsm["tiles"])
    real = rp.datasets.toy_tile_properties(test.obsm["tiles"].reshape(-1, 16, 16, 3))
    rd = spearmanr(test.obs["density"], real_units["nuclei_fraction"]).statistic
    rh = spearmanr(test.obs["hue"], real_units["hue"]).statistic
    print(
        f"real tiles: ρ(density, nucleus fraction) {rd:.3f}, ρ(hue, hue) {rh:.3f}, "
        f"roughness {roughness(test.obsm['tiles']):.1f}\n"
    )
    print(
        "| sampler | steps + SR steps | guidance / SR guidance | seconds | ρ(density, nucleus fraction) "
        "| ρ(hue, hue) | distance to real (W / sd) | roughness |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for steps, sr_steps, w, sr_w, sampler in recipes:
        t = time.perf_counter()
        kw = {"steps": steps, "sr_steps": sr_steps, "guidance_scale": w, "sr_guidance_scale": sr_w, "sampler": sampler}
        tiles = m.generate(test, n_per_obs=4, seed=1, progress_bar=False, **kw)
        dt = time.perf_counter() - t
        p = rp.datasets.toy_tile_properties(tiles)
        rd = spearmanr(test.obs["density"], p["nuclei_fraction"]).statistic
        rh = spearmanr(test.obs["hue"], p["hue"]).statistic
        each = rp.datasets.toy_tile_properties(tiles.reshape(-1, 16, 16, 3))
        dist = np.mean([wasserstein_distance(real[c], each[c]) / real[c].std() for c in PROPERTIES])
        print(
            f"| {sampler} | {steps} + {sr_steps} | {w:g} / {sr_w:g} | {dt:.1f} | {rd:.3f} | {rh:.3f} | {dist:.3f} "
            f"| {roughness(tiles):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
