"""The image prior on the CPU: train TileAutoencoders on H&E crops, and judge their reconstructions of C5.

``train``
    One autoencoder for ``--minutes`` (step count from a timing probe, the adversarial term from half
    way), on random crops of whole HER2ST images (``--sections``), plus the CMU slide (``--cmu``) and
    LC25000 (``--lc25000``), or on the sections' spot patches alone (``--spots-only``: the data a
    paired generator sees). ``--no-adv`` leaves the discriminator out. Writes the model and
    ``OUT.train.json`` (steps, seconds, s/step) beside it.
``evaluate``
    C5's spot patches (224 px ≈ 154 µm cut, resized to 128 px: 1.2 µm/px, the models' native size)
    against each model's reconstruction and the bicubic baseline at the same number of stored
    values (4 × 32 × 32 latent values = 3 × 37 × 37 pixels): PSNR, SSIM, Inception KID,
    nuclei-feature KID (standardised with C2–C4's real patches; KID of those real patches against
    C5's is the floor), and per-tile Spearman ρ between original and reconstruction for nuclei
    density and haematoxylin fraction, with 95 % bootstrap intervals over tiles. Writes
    ``report.json`` and ``grid.png``.
``default``
    The shipped default (``rp.models.pretrained("he-autoencoder-small")``): all four HER2ST images,
    the CMU slide and LC25000, seed 0, written into the package.

Usage::

    python benchmarks/autoencoder.py train --minutes 8 --out benchmarks/out/ae/crops
    python benchmarks/autoencoder.py train --minutes 8 --no-adv --out benchmarks/out/ae/crops_noadv
    python benchmarks/autoencoder.py train --minutes 8 --spots-only --out benchmarks/out/ae/spots
    python benchmarks/autoencoder.py evaluate --models benchmarks/out/ae/crops benchmarks/out/ae/crops_noadv \\
        benchmarks/out/ae/spots --out benchmarks/out/ae/eval
    python benchmarks/autoencoder.py default --minutes 12
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import rnapaint as rp

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / "src" / "rnapaint" / "models" / "weights" / "he-autoencoder-small"
MPP, CROP, TILE = 1.2, 64, 128  # µm/px of crops and tiles; crop and tile sides
CUT = 224  # spot patch side at HER2ST's ~0.686 µm/px (≈ 154 µm), resized to TILE
LC25000_MPP = 1.0  # not recorded by LC25000; estimated from nuclei sizes against HER2ST's


def _data(args) -> str:
    return args.data or os.environ.get("RNAPAINT_DATA") or str(REPO.parent / "shared" / "data")


def _spot_patches(data: str, sections: list[str], size: int = TILE) -> tuple[np.ndarray, float]:
    spots = rp.datasets.her2st(data, sections=sections, images=True)
    rp.pp.spot_tiles(spots, size=CUT, out_size=size, library_key="section", progress_bar=False)
    keep = ~spots.obs["tiles_outside"].to_numpy(bool)
    mpp = float(np.mean([e["metadata"]["mpp"] for e in spots.uns["spatial"].values()]))
    return spots.obsm["tiles"][keep, 0], CUT * mpp / size


def _crops(args) -> rp.data.TileCrops:
    data = _data(args)
    if args.spots_only:
        tiles, mpp = _spot_patches(data, args.sections)
        return rp.data.TileCrops(tiles, size=CROP, mpp=MPP, source_mpp=mpp, seed=args.seed)
    sources: list = [rp.datasets.her2st(data, sections=args.sections, images=True)]
    if args.cmu:
        sources.append(f"{data}/wsi/CMU-1-Small-Region.svs")
    if args.lc25000:
        lc = rp.datasets.lc25000(data).tiles
        sources.append(rp.data.image_sources(lc, mpp=LC25000_MPP))
    return rp.data.TileCrops(sources, size=CROP, mpp=MPP, seed=args.seed)


def _seconds_per_step(ae, batch: int, adv: bool) -> tuple[float, float]:
    """Seconds a step without and with the discriminator (3 timed steps each, after one warm-up)."""
    import torch

    from rnapaint.models._autoencoder_training import AutoencoderTrainingPlan, to_unit_range

    opts = {"lr": 1e-4, "warmup_steps": 1, "ssim_weight": 0.5, "kl_weight": 1e-6, "disc_width": 32}
    out = []
    for disc in (0.0, 0.5 if adv else 0.0):
        plan = AutoencoderTrainingPlan(ae.vae, {**opts, "disc_weight": disc, "disc_start": 0, "disc_layers": 3})
        opt = torch.optim.Adam(plan.parameters())
        x = to_unit_range(torch.randint(0, 256, (batch, 3, CROP, CROP), dtype=torch.uint8))
        t0 = time.perf_counter()
        for i in range(4):
            if i == 1:  # the first step pays for allocations
                t0 = time.perf_counter()
            loss, recon, _ = plan._losses(x)
            opt.zero_grad()
            loss.backward()
            if plan.disc is not None:
                (plan.disc(x).mean() - plan.disc(recon.detach()).mean()).backward()
            opt.step()
        out.append((time.perf_counter() - t0) / 3)
    return out[0], out[1]


def train(args) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    t0 = time.perf_counter()
    crops = _crops(args)
    prep = time.perf_counter() - t0
    print(crops, f"({prep:.0f} s to open)", flush=True)
    ae = rp.models.TileAutoencoder(tile_size=TILE, mpp=MPP, block_out_channels=tuple(args.channels))
    adv = not args.no_adv
    t_plain, t_adv = _seconds_per_step(ae, args.batch_size, adv)
    budget = args.minutes * 60
    steps = args.steps or max(2, int(budget / ((t_plain + t_adv) / 2)))
    print(f"{t_plain:.3f} / {t_adv:.3f} s a step → {steps} steps in {args.minutes} min", flush=True)
    ae.train(
        crops,
        max_steps=steps,
        max_time=budget * 1.1 if not args.steps else None,
        batch_size=args.batch_size,
        lr=args.lr,
        disc_weight=0.5 if adv else 0.0,
        seed=args.seed,
        progress_bar=False,
    )
    out = Path(args.out)
    ae.save(out, overwrite=True)
    info = {
        "sources": [s.name for s in crops.sources][:12],
        "n_sources": len(crops.sources),
        "spots_only": args.spots_only,
        "adversarial": adv,
        "seconds_per_step": [t_plain, t_adv],
        "parameters": sum(p.numel() for p in ae.vae.parameters()),
        "weights_mib": (out / "model.safetensors").stat().st_size / 2**20,
        **ae.train_info,
        "scaling_factor": ae.scaling_factor,
        "final_losses": {k: v[-1] for k, v in ae.history.items() if v},
    }
    # Beside the model, not inside it: a model folder holds only its own files (and the default ships).
    record = out.with_name(f"{out.name}.train.json")
    if out == DEFAULT_DIR:
        record = REPO / "benchmarks" / "out" / "ae" / "default.train.json"
        record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))


def _bicubic(tiles: np.ndarray, values: int) -> np.ndarray:
    from PIL import Image

    side = round((values / 3) ** 0.5)
    small = [Image.fromarray(t).resize((side, side), Image.Resampling.BICUBIC) for t in tiles]
    return np.stack([np.asarray(s.resize(tiles.shape[1:3][::-1], Image.Resampling.BICUBIC)) for s in small])


def _ci(values: np.ndarray, stat, n_boot: int = 200, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    n = len(values[0]) if isinstance(values, tuple) else len(values)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        boots.append(stat(*(v[i] for v in values)) if isinstance(values, tuple) else stat(values[i]))
    return [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def _pixel_scores(real: np.ndarray, recon: np.ndarray) -> dict:
    import torch

    from rnapaint.nn.ssim import ssim

    mse = ((real.astype(np.float64) - recon) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))
    to = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    s = ssim(to(real), to(recon), data_range=1.0).numpy()
    return {
        "psnr": [float(psnr.mean()), *_ci(psnr, np.mean)],
        "ssim": [float(s.mean()), *_ci(s, np.mean)],
    }


def _nuclei_scores(real_frame, recon_frame) -> dict:
    from scipy.stats import spearmanr

    out = {}
    for col in ("density", "hematoxylin_fraction"):
        a, b = real_frame[col].to_numpy(float), recon_frame[col].to_numpy(float)
        a, b = np.nan_to_num(a), np.nan_to_num(b)
        rho = lambda x, y: spearmanr(x, y).statistic  # noqa: E731
        out[f"rho_{col}"] = [float(rho(a, b)), *_ci((a, b), rho)]
    return out


def evaluate(args) -> None:
    from rnapaint.metrics import NucleiFeatures, kid, tile_features

    data = _data(args)
    real, mpp = _spot_patches(data, ["C5"])
    train_real, _ = _spot_patches(data, ["C2", "C3", "C4"])
    if args.n:
        keep = np.random.default_rng(0).choice(len(real), size=min(args.n, len(real)), replace=False)
        real, train_real = real[np.sort(keep)], train_real[: args.n]
    print(f"C5: {len(real)} patches of {real.shape[1]} px at {mpp:.3g} µm/px", flush=True)
    models = [(Path(m).name, rp.models.TileAutoencoder.load(m)) for m in args.models]
    values = int(np.prod(models[0][1].latent_shape(real.shape[1]))) if models else 4096
    sets = {"bicubic": _bicubic(real, values)}
    for name, ae in models:
        sets[name] = ae.reconstruct(real, mpp=mpp)
    nf = NucleiFeatures(mpp=mpp)
    frames = {"real": nf.frame(real), "real C2–C4": nf.frame(train_real)}
    ref = nf.from_frame(frames["real C2–C4"])
    mu, sd = ref.mean(0), ref.std(0) + 1e-6
    z = lambda f: (nf.from_frame(f) - mu) / sd  # noqa: E731
    inc = {"real": tile_features(real), "real C2–C4": tile_features(train_real)}  # computed once each
    inception = {"real C2–C4": kid(inc["real"], inc["real C2–C4"], n_boot=args.n_boot)}
    nuclei = {"real C2–C4": kid(z(frames["real"]), z(frames["real C2–C4"]), n_boot=args.n_boot)}
    report = {
        "n_tiles": len(real),
        "mpp": mpp,
        "stored_values": values,
        "real C2–C4": {"kid_inception": _score(inception["real C2–C4"]), "kid_nuclei": _score(nuclei["real C2–C4"])},
    }
    for name, tiles in sets.items():
        frames[name] = nf.frame(tiles)
        row = _pixel_scores(real, tiles)
        row["kid_inception"] = _score(kid(inc["real"], tile_features(tiles), n_boot=args.n_boot))
        row["kid_nuclei"] = _score(kid(z(frames["real"]), z(frames[name]), n_boot=args.n_boot))
        row.update(_nuclei_scores(frames["real"], frames[name]))
        report[name] = row
        print(name, json.dumps(row), flush=True)
    for name, ae in models:
        report[name]["train"] = {k: ae.train_info.get(k) for k in ("steps", "seconds", "images", "disc_weight")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    _grid({"real": real, **sets}, out / "grid.png")
    print(f"wrote {out}/report.json and grid.png")


def _score(s) -> list[float]:
    return [float(s.value), float(s.ci_low), float(s.ci_high)]


def _grid(sets: dict[str, np.ndarray], path: Path, n: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pick = np.linspace(0, len(next(iter(sets.values()))) - 1, n).round().astype(int)
    fig, axes = plt.subplots(len(sets), n, figsize=(1.6 * n, 1.7 * len(sets)), squeeze=False)
    for r, (name, tiles) in enumerate(sets.items()):
        for c, i in enumerate(pick):
            axes[r, c].imshow(tiles[i])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("HER2ST C5 spot patches (never seen in training) and their reconstructions", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("train", "default"):
        t = sub.add_parser(name)
        t.add_argument("--data", default=None)
        t.add_argument(
            "--sections", nargs="+", default=["C2", "C3", "C4"] if name == "train" else ["C2", "C3", "C4", "C5"]
        )
        t.add_argument("--cmu", action="store_true", default=name == "default")
        t.add_argument("--lc25000", action="store_true", default=name == "default")
        t.add_argument("--spots-only", action="store_true")
        t.add_argument("--no-adv", action="store_true")
        t.add_argument("--minutes", type=float, default=8.0)
        t.add_argument("--steps", type=int, default=0, help="a step count instead of --minutes (tests)")
        t.add_argument("--batch-size", type=int, default=8)
        t.add_argument("--lr", type=float, default=2e-4)
        t.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--out", default=str(DEFAULT_DIR) if name == "default" else None, required=name == "train")
    e = sub.add_parser("evaluate")
    e.add_argument("--data", default=None)
    e.add_argument("--models", nargs="+", required=True)
    e.add_argument("--n", type=int, default=0, help="C5 patches to score (0: all)")
    e.add_argument("--n-boot", type=int, default=100)
    e.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd in ("train", "default"):
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
