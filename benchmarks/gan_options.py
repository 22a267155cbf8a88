"""Do RNA-GAN's training options keep it faithful and realistic? Toy set, CPU.

Trains RNA-GAN on the procedural toy set (32 px, width 16, n_critic 2) once per combination of

- ``--every``: the WGAN-GP penalty on every critic step or on every k-th (``TileGAN.train(gp_every=k)``);
- ``--noise-units``: RNA-GAN's U(−0.3, 0.3) on the posterior mean as published (``"latent"``) or after
  standardising (``"standardised"``, ``TileGAN(noise_units=)``);
- ``--aux-weight``: the auxiliary condition loss (AC-GAN; ``TileGAN(aux_weight=)``, 0 = none);
- ``--no-projection``: the published critic, which does not see the condition;

and scores each trained model twice: with the EMA generator's BatchNorm statistics copied from the
raw generator during training (``standing_stats=0``) and re-estimated from the EMA's own
activations (``TileGAN.train(standing_stats=32)``, the default). Reported: critic tiles/s, the
Spearman ρ between the driving programs (density, hue) and what is measured on the held-out units'
generated tiles (nucleus fraction, hue), and how far the distribution of three measured properties
(nucleus fraction, nucleus count, mean nucleus area) is from the real held-out tiles' (1-D
Wasserstein distance in units of the real property's standard deviation, mean of the three; 0 =
the same distribution).

Usage::

    .venv/bin/python benchmarks/gan_options.py --every 1 4 --noise-units latent --seed 0
    .venv/bin/python benchmarks/gan_options.py --every 1 --noise-units latent standardised --seed 0
    .venv/bin/python benchmarks/gan_options.py --aux-weight 0 1 --no-projection --seed 0
"""

from __future__ import annotations

import argparse
import itertools
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

PROPERTIES = ("nuclei_fraction", "nuclei_count", "mean_nucleus_area")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, nargs="+", default=[1])
    ap.add_argument("--noise-units", nargs="+", default=["latent"], choices=["latent", "standardised"])
    ap.add_argument("--aux-weight", type=float, nargs="+", default=[0.0])
    ap.add_argument("--no-projection", action="store_true")
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
    real = rp.datasets.toy_tile_properties(test.obsm["tiles"].reshape(-1, 32, 32, 3))
    print(
        "| penalty | noise | critic | EMA BatchNorm statistics | seconds | critic tiles/s "
        "| ρ(density, nucleus fraction) | ρ(hue, hue) | distance to real (W / sd) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    projection = not args.no_projection
    for every, units, aux in itertools.product(args.every, args.noise_units, args.aux_weight):
        critic = ("projection" if projection else "plain") + (f" + aux {aux:g}" if aux else "")
        m = rp.models.TileGAN(
            a,
            a.obsm["tiles"],
            condition="vae",
            units=a.obs_names[a.obs["split"] == "train"],
            width=16,
            noise_units=units,
            projection=projection,
            aux_weight=aux,
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
            standing_stats=0,
        )
        dt = time.perf_counter() - t0
        for stats in ("copied", "standing"):
            if stats == "standing":  # what train(standing_stats=32) does after training
                m.update_ema_statistics(32, 64, args.seed)
            tiles = m.generate(test, n_per_obs=4, seed=1)
            p = rp.datasets.toy_tile_properties(tiles)
            rd = spearmanr(test.obs["density"], p["nuclei_fraction"]).statistic
            rh = spearmanr(test.obs["hue"], p["hue"]).statistic
            each = rp.datasets.toy_tile_properties(tiles.reshape(-1, 32, 32, 3))
            w = np.mean([wasserstein_distance(real[c], each[c]) / real[c].std() for c in PROPERTIES])
            print(
                f"| every {every} | {units} | {critic} | {stats} | {dt:.1f} | {args.steps * 64 / dt:.0f} | {rd:.3f} "
                f"| {rh:.3f} | {w:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
