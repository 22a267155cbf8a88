"""Synthetic pretraining: does SimCLR on generated tiles help a classifier of real tiles?

The experiment of RNA-GAN and RNA-CDM. A :class:`rnapaint.models.TileEncoder` is pretrained with
SimCLR on each synthetic tile set (``--synthetic NAME=PATH ...``: ``.npz`` files holding a uint8 array
``tiles`` ``(n, H, W, 3)`` or ``(n, k, H, W, 3)`` — a generator's output — where PATH may be a glob
or comma-separated list, all pooled under NAME; or ``toy`` for the procedural tiles of
``rp.datasets.toy``, a smoke run), then evaluated on real labelled tiles with cross-validation:

- ``--target lc25000``: LC25000 lung, 3 classes, 100 tiles each; stratified k-fold;
- ``--target her2st``: HER2ST C2–C5 spot patches (224 px ≈ 154 µm), labelled by the spot's
  stereoscope epithelial share in terciles (tumour nests vs stroma; shared by every section), with
  leave-one-section-out folds so that no neighbouring spot of a test section is trained on.

Every tile is resized to ``--resize`` px (default: the synthetic tiles' size). Arms:

- ``scratch / fine-tune``: the same network from random initialisation, trained on the labelled fold;
- ``NAME / fine-tune``: initialised with the encoder pretrained on synthetic set NAME, same recipe;
- ``NAME / linear``: logistic regression on the frozen NAME-pretrained features;
- ``random init / linear``: logistic regression on the features of the untrained network (the floor
  that a linear probe of any pretraining must beat);
- with ``--real-pretrain``: ``real / fine-tune`` and ``real / linear``, SimCLR on the training fold's
  real tiles (labels unused; re-run for every fold so no test tile is seen).

``--pretrain-steps N`` gives every pretraining the same number of SimCLR steps whatever its tile
count, so arms differ by what they saw, not by how long they trained. Fine-tuning is identical for
every arm: encoder + linear head, AdamW, warm-up + cosine, cross entropy, flips / 90° rotations / mild
colour jitter (``rp.data.TileAugment``), bf16 autocast on a GPU. LC25000 is augmented from ~250 source
images a class, so near-duplicates cross folds and its accuracies are optimistic; compare arms, not
absolute numbers.

Usage::

    .venv/bin/python benchmarks/pretrain.py --quick                         # CPU smoke run, < 3 min
    python benchmarks/pretrain.py --target her2st --resize 64 --pretrain-steps 1500 --real-pretrain \
        --synthetic "rnagan=benchmarks/out/her2st_gpu/rnagan_c*.npz" "gan=benchmarks/out/her2st_gpu/gan_c*.npz" \
        --json benchmarks/out/pretrain_her2st.json

Prints a markdown table (mean ± sd accuracy over folds) last; ``--json PATH`` writes every number.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import rnapaint as rp
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import rnapaint as rp

from rnapaint.data.augment import TileAugment
from rnapaint.datasets._lc25000 import lc25000
from rnapaint.models.tile_encoder import TileEncoder, check_tiles

QUICK = {
    "n_synthetic": 512,
    "size": 32,
    "width": 8,
    "blocks": [1, 1, 1],
    "pretrain_epochs": 6,
    "pretrain_batch": 64,
    "ft_epochs": 10,
    "ft_batch": 32,
    "ft_lr": 3e-3,
    # One thread: on a shared 2-core machine two threads wait on each other (measured 4× slower).
    "threads": 1,
}


def load_synthetic(arg: str, n: int, size: int, seed: int) -> tuple[str, np.ndarray]:
    """``(name, tiles)`` for one ``--synthetic`` value; tiles ``(m, H, W, 3)`` uint8.

    ``toy`` makes the toy data set's tiles; ``NAME=PATHS`` (or bare PATHS, named after the first
    file) pools the array ``tiles`` of every ``.npz`` matched by the comma-separated globs PATHS.
    """
    if arg == "toy":
        return "toy", rp.datasets.toy(n=n, tile_size=size, seed=seed).obsm["tiles"][:, 0]
    name, _, paths = arg.rpartition("=")
    files = sorted({f for pat in paths.split(",") for f in glob.glob(pat)} or set())
    if not files:
        raise SystemExit(f"--synthetic {arg!r}: no file matches {paths!r}.")
    parts = []
    for path in files:
        with np.load(path) as f:
            if "tiles" not in f:
                raise SystemExit(f"{path} has no array 'tiles' (it holds {list(f.keys())}).")
            t = check_tiles(f["tiles"], f"{path}['tiles']")
        parts.append(t.reshape(-1, *t.shape[-3:]))
    if len({p.shape[1:] for p in parts}) > 1:
        raise SystemExit(f"--synthetic {arg!r}: the files hold tiles of different sizes.")
    return name or Path(files[0]).stem, np.concatenate(parts)


def resized(tiles: np.ndarray, size: int) -> np.ndarray:
    """Tiles ``(n, H, W, 3)`` → ``(n, size, size, 3)`` uint8 (PIL box filter down, bicubic up)."""
    if tiles.shape[1] == size and tiles.shape[2] == size:
        return tiles
    from PIL import Image

    f = Image.Resampling.BOX if tiles.shape[1] > size else Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(t).resize((size, size), f)) for t in tiles])


def her2st_target(root: str | None, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """HER2ST C2–C5 patches: ``(tiles (n, size, size, 3), codes (n,), sections (n,), class names)``.

    Labels are terciles of the stereoscope epithelial share over the labelled spots (low / mid /
    high); spots without a proportion or whose patch leaves the image are dropped.
    """
    adata = rp.datasets.her2st(root, sections=["C2", "C3", "C4", "C5"], images=True)
    rp.pp.spot_tiles(adata, size=224, out_size=size, library_key="section", progress_bar=False)
    epi = adata.obsm["cell_type_proportions"]["Epithelial"].to_numpy()
    keep = np.isfinite(epi) & ~adata.obs["tiles_outside"].to_numpy(bool)
    codes = np.searchsorted(np.nanquantile(epi[keep], [1 / 3, 2 / 3]), epi[keep]).astype(np.int64)
    sections = adata.obs["section"].astype(str).to_numpy()[keep]
    return adata.obsm["tiles"][keep, 0], codes, sections, ("low", "mid", "high")


def fine_tune(
    encoder: TileEncoder,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    args,
    device: torch.device,
    seed: int,
) -> np.ndarray:
    """Train a copy of the encoder's features + a linear head on ``(x, y)``; predicted labels of ``x_test``."""
    from rnapaint.models._training import warmup_cosine

    torch.manual_seed(seed)
    features = copy.deepcopy(encoder.module.features)
    model = torch.nn.Sequential(features, torch.nn.Linear(features.num_features, n_classes)).to(device)
    augment = TileAugment()  # flips, 90° rotations, ±10 % colour jitter
    bs = min(args.ft_batch, len(x))
    steps = args.ft_epochs * (len(x) // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=args.ft_lr, weight_decay=args.ft_weight_decay)
    sched = warmup_cosine(opt, min(steps // 10, 50), steps)
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(y)
    cuda = device.type == "cuda"
    model.train()
    for _ in range(args.ft_epochs):
        order = rng.permutation(len(x))
        for i in range(len(x) // bs):
            idx = order[i * bs : (i + 1) * bs]
            batch = torch.stack([augment.from_uint8(x[j]) for j in idx]).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(batch)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model(torch.from_numpy(x_test[i : i + 256]).to(device).permute(0, 3, 1, 2)).argmax(1).cpu()
                for i in range(0, len(x_test), 256)
            ]
        )
    return pred.numpy()


def linear_probe(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray) -> np.ndarray:
    """Standardised logistic regression on frozen features; predicted test labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return clf.fit(f_train, y_train).predict(f_test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--synthetic",
        nargs="*",
        default=["toy"],
        help="NAME=PATHS (comma-separated globs of .npz with a uint8 array 'tiles') or 'toy', any number; "
        "none (with --resize) runs only the scratch / random / --real-pretrain arms",
    )
    ap.add_argument("--n-synthetic", type=int, default=4096, help="toy tiles to make (with --synthetic toy)")
    ap.add_argument("--size", type=int, default=64, help="toy tile size (with --synthetic toy)")
    ap.add_argument("--resize", type=int, default=None, help="tile size for every arm (default: the synthetic size)")
    ap.add_argument("--target", choices=["lc25000", "her2st"], default="lc25000", help="the real labelled tiles")
    ap.add_argument(
        "--data-root",
        default=None,
        help="folder holding lc25000_lung/ and her2st/ (default $RNAPAINT_DATA or ../shared/data)",
    )
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 1, 1, 1])
    ap.add_argument(
        "--stem",
        choices=["auto", "small", "large"],
        default="auto",
        help="auto: 'large' (7×7 stride 2 + pool) for tiles of 128 px or more",
    )
    ap.add_argument("--pretrain-epochs", type=int, default=100)
    ap.add_argument(
        "--pretrain-steps", type=int, default=None, help="SimCLR steps for every pretraining (overrides epochs)"
    )
    ap.add_argument("--pretrain-batch", type=int, default=256)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--max-steps", type=int, default=None, help="cap on SimCLR steps")
    ap.add_argument("--ft-epochs", type=int, default=40)
    ap.add_argument("--ft-batch", type=int, default=32)
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--ft-weight-decay", type=float, default=1e-4)
    ap.add_argument("--folds", type=int, default=5, help="CV folds for lc25000 (her2st: one per section)")
    ap.add_argument("--real-pretrain", action="store_true", help="also pretrain on each training fold's real tiles")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help=f"CPU smoke run (other options still apply): {QUICK}")
    ap.add_argument("--json", default=None)
    if ap.parse_known_args()[0].quick:  # presets are defaults: options given explicitly still win
        ap.set_defaults(**QUICK)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    t_start = time.perf_counter()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    root = args.data_root
    if root is None and not __import__("os").environ.get("RNAPAINT_DATA"):
        root = str(Path(__file__).resolve().parents[2] / "shared" / "data")

    synthetic = dict(load_synthetic(a, args.n_synthetic, args.size, args.seed) for a in args.synthetic)
    if not synthetic and not args.resize:
        raise SystemExit("Without --synthetic sets, give the tile size with --resize.")
    size = args.resize or next(iter(synthetic.values())).shape[1]
    synthetic = {name: resized(t, size) for name, t in synthetic.items()}
    if args.target == "lc25000":
        real = lc25000(root, size=size)
        x, y, classes = real.tiles, real.codes, real.classes
        folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(x, y))
        target = f"LC25000 lung, {len(y)} tiles, {args.folds}-fold stratified CV"
    else:
        x, y, groups, classes = her2st_target(root, size)
        folds = list(LeaveOneGroupOut().split(x, y, groups))
        target = f"HER2ST C2–C5 epithelial terciles, {len(y)} spots, leave-one-section-out CV"
    # Chance as rp.metrics.condition_fidelity defines it: the largest class share of each test fold,
    # the best any label-blind constant answer scores there (not the training majority's accuracy,
    # which a shift in class mix between sections pushes below that).
    fold_chance = [float(np.bincount(y[te]).max() / len(te)) for _, te in folds]
    chance = float(np.mean(fold_chance))
    stem = args.stem if args.stem != "auto" else ("large" if size >= 128 else "small")
    arch = {"width": args.width, "blocks": args.blocks, "stem": stem}

    def pretrain_kw(n_tiles: int) -> dict:
        kw = {"epochs": args.pretrain_epochs, "max_steps": args.max_steps}
        if args.pretrain_steps:  # same number of steps for every set, however many tiles it has
            per_epoch = max(n_tiles // min(args.pretrain_batch, n_tiles), 1)
            kw = {"epochs": -(-args.pretrain_steps // per_epoch), "max_steps": args.pretrain_steps}
        return {
            **kw,
            "batch_size": args.pretrain_batch,
            "lr": args.pretrain_lr,
            "device": device,
            "progress_bar": False,
        }

    print(
        f"synthetic: {', '.join(f'{k} {v.shape}' for k, v in synthetic.items())}; real: {target} at {size} px; "
        f"classes {classes}; device {device}; encoder {arch}",
        flush=True,
    )

    pretrained: dict[str, TileEncoder] = {}
    pretrain_info: dict[str, dict] = {}
    for name, tiles in synthetic.items():
        t0 = time.perf_counter()
        enc = TileEncoder(**arch).fit(tiles, seed=args.seed, **pretrain_kw(len(tiles)))
        pretrained[name] = enc
        loss = enc.history["loss"]
        pretrain_info[name] = {
            "seconds": time.perf_counter() - t0,
            "n_tiles": len(tiles),
            **enc.train_info,
            "loss": loss,
        }
        print(
            f"SimCLR on {name} ({len(tiles)} tiles): {enc.train_info['steps']} steps in "
            f"{pretrain_info[name]['seconds']:.1f} s, loss {loss[0]:.3f} → {loss[-1]:.3f}",
            flush=True,
        )
    random_init = TileEncoder(**arch)
    torch.manual_seed(args.seed)
    random_init.module = random_init._build()  # seeded, as fine-tuning from scratch starts

    features = {name: enc.encode(x, device=device) for name, enc in pretrained.items()}
    f_rand = random_init.encode(x, device=device)
    n_classes = len(classes)
    arms: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}

    def record(name: str, pred: np.ndarray, test: np.ndarray, t: float) -> None:
        arms.setdefault(name, []).append(float(np.mean(pred == y[test])))
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t

    for k, (train, test) in enumerate(folds):
        s = args.seed + 1000 * (k + 1)
        t = time.perf_counter()
        pred = fine_tune(random_init, x[train], y[train], x[test], n_classes, args, device, s)
        record("scratch / fine-tune", pred, test, t)
        for name, enc in pretrained.items():
            t = time.perf_counter()
            record(
                f"{name} / fine-tune", fine_tune(enc, x[train], y[train], x[test], n_classes, args, device, s), test, t
            )
            t = time.perf_counter()
            record(f"{name} / linear", linear_probe(features[name][train], y[train], features[name][test]), test, t)
        t = time.perf_counter()
        record("random init / linear", linear_probe(f_rand[train], y[train], f_rand[test]), test, t)
        if args.real_pretrain:
            t = time.perf_counter()
            on_real = TileEncoder(**arch).fit(x[train], seed=s, **pretrain_kw(len(train)))
            f_real = on_real.encode(x, device=device)
            record("real / linear", linear_probe(f_real[train], y[train], f_real[test]), test, t)
            t = time.perf_counter()
            pred = fine_tune(on_real, x[train], y[train], x[test], n_classes, args, device, s)
            record("real / fine-tune", pred, test, t)
        print(f"fold {k + 1}/{len(folds)}: " + ", ".join(f"{a} {v[-1]:.3f}" for a, v in arms.items()), flush=True)

    rows = [
        {
            "arm": a,
            "mean": float(np.mean(v)),
            "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "folds": v,
            "seconds": round(seconds[a], 1),
        }
        for a, v in arms.items()
    ]
    total = time.perf_counter() - t_start
    steps = ", ".join(
        f"{k} {v['steps']} steps on {v['n_tiles']} tiles ({v['seconds']:.0f} s)" for k, v in pretrain_info.items()
    )
    print(
        f"\n{target} at {size} px (chance {chance:.3f}, per fold {' '.join(f'{c:.2f}' for c in fold_chance)}: "
        "each test fold's largest class share); "
        f"SimCLR: {steps}; fine-tuning {args.ft_epochs} epochs; total {total:.0f} s on {device}\n"
    )
    print("| pretraining / evaluation | accuracy (mean ± sd) | per fold | seconds (all folds) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['mean']:.3f} ± {r['sd']:.3f} | {' '.join(f'{v:.2f}' for v in r['folds'])} "
            f"| {r['seconds']} |"
        )
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        record_json = {
            "device": str(device),
            "args": vars(args),
            "target": target,
            "classes": list(classes),
            "tile_size": size,
            "chance": chance,
            "fold_chance": fold_chance,
            "pretrain": pretrain_info,
            "rows": rows,
            "total_seconds": total,
        }
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(record_json, indent=1))
        tmp.replace(out)  # never a half-written record


if __name__ == "__main__":
    main()
