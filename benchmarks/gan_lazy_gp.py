"""Does the lazy gradient penalty keep RNA-GAN faithful? Toy set, CPU.

Trains RNA-GAN on the procedural toy set (32 px, width 16, 500 critic steps, n_critic 2) with the
WGAN-GP penalty on every critic step and on every k-th (``TileGAN.train(gp_every=k)``), then reports
critic tiles/s and the Spearman ρ between the driving programs (density, hue) and what is measured
on the held-out units' generated tiles (nucleus fraction, hue).

Usage::

    .venv/bin/python benchmarks/gan_lazy_gp.py --every 1 4 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scipy.stats import spearmanr

try:
    import rnapaint as rp
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import rnapaint as rp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    a = rp.datasets.toy(n=480, tile_size=32, tiles_per_obs=2, seed=args.seed)
    rp.pp.log1p(a)
    rp.pp.split(a, stratify="group", fractions=(0.8, 0.1, 0.1), seed=args.seed)
    rp.pp.zscore(a)
    rp.tl.vae(
        a, hidden=(64, 32), latent_dim=8, max_epochs=80, lr=3e-3, batch_size=64, seed=args.seed, progress_bar=False
    )
    test = a[a.obs["split"] != "train"]
    print("| penalty | seconds | critic tiles/s | ρ(density, nucleus fraction) | ρ(hue, hue) |")
    print("|---|---|---|---|---|")
    for every in args.every:
        m = rp.models.TileGAN(
            a, a.obsm["tiles"], condition="vae", units=a.obs_names[a.obs["split"] == "train"], width=16
        )
        t0 = time.perf_counter()
        m.train(
            max_steps=args.steps,
            batch_size=64,
            n_critic=2,
            lr_g=1e-3,
            lr_d=2e-3,
            num_workers=0,
            progress_bar=False,
            seed=args.seed,
            gp_every=every,
        )
        dt = time.perf_counter() - t0
        p = rp.datasets.toy_tile_properties(m.generate(test, n_per_obs=4, seed=1))
        rd = spearmanr(test.obs["density"], p["nuclei_fraction"]).statistic
        rh = spearmanr(test.obs["hue"], p["hue"]).statistic
        print(f"| every {every} | {dt:.1f} | {args.steps * 64 / dt:.0f} | {rd:.3f} | {rh:.3f} |", flush=True)


if __name__ == "__main__":
    main()
