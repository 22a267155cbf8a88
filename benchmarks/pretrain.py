"""Synthetic pretraining: does SimCLR on generated tiles help a classifier of real tiles?

The experiment of RNA-GAN and RNA-CDM. A :class:`rnapaint.models.TileEncoder` is pretrained with
SimCLR on synthetic tiles (``--synthetic PATH.npz`` holding a uint8 array ``tiles`` ``(n, H, W, 3)``
or ``(n, k, H, W, 3)`` — e.g. a generator's output — or ``--synthetic toy`` for the procedural toy
tiles of ``rp.datasets.toy``, a smoke run), then evaluated on LC25000 lung (3 classes, 100 tiles
each, resized to the synthetic tile size) with stratified k-fold cross-validation. Arms:

- ``scratch / fine-tune``: the same network from random initialisation, trained on the labelled fold;
- ``synthetic / fine-tune``: initialised with the synthetic-pretrained encoder, same recipe;
- ``synthetic / linear``: logistic regression on the frozen synthetic-pretrained features;
- ``random init / linear``: logistic regression on the features of the untrained network (the floor
  that a linear probe of any pretraining must beat);
- with ``--real-pretrain``: ``real / fine-tune`` and ``real / linear``, SimCLR on the training fold's
  real tiles (labels unused; re-run for every fold so no test tile is seen).

Fine-tuning is identical for every arm: encoder + linear head, AdamW, warm-up + cosine, cross
entropy, flips / 90° rotations / mild colour jitter (``rp.data.TileAugment``), bf16 autocast on a GPU.
LC25000 is augmented from ~250 source images a class, so near-duplicates cross folds and all
accuracies are optimistic; compare arms, not absolute numbers.

Usage::

    .venv/bin/python benchmarks/pretrain.py --quick                         # CPU smoke run, < 3 min
    python benchmarks/pretrain.py --synthetic generated.npz --real-pretrain --json benchmarks/out/pretrain.json

Prints a markdown table (mean ± sd accuracy over folds) last; ``--json PATH`` writes every number.
"""

from __future__ import annotations

import argparse
import copy
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


def load_synthetic(arg: str, n: int, size: int, seed: int) -> np.ndarray:
    """Synthetic tiles ``(m, H, W, 3)`` uint8 from an ``.npz`` (array ``tiles``) or the toy data set."""
    if arg == "toy":
        return rp.datasets.toy(n=n, tile_size=size, seed=seed).obsm["tiles"][:, 0]
    with np.load(arg) as f:
        if "tiles" not in f:
            raise SystemExit(f"{arg} has no array 'tiles' (it holds {list(f.keys())}).")
        return check_tiles(f["tiles"], f"{arg}['tiles']")


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
    ap.add_argument("--synthetic", default="toy", help="PATH.npz with a uint8 array 'tiles', or 'toy'")
    ap.add_argument("--n-synthetic", type=int, default=4096, help="toy tiles to make (with --synthetic toy)")
    ap.add_argument("--size", type=int, default=64, help="toy tile size (with --synthetic toy)")
    ap.add_argument(
        "--data-root", default=None, help="folder holding lc25000_lung/ (default $RNAPAINT_DATA or ../shared/data)"
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
    ap.add_argument("--pretrain-batch", type=int, default=256)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--max-steps", type=int, default=None, help="cap on SimCLR steps")
    ap.add_argument("--ft-epochs", type=int, default=40)
    ap.add_argument("--ft-batch", type=int, default=32)
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--ft-weight-decay", type=float, default=1e-4)
    ap.add_argument("--folds", type=int, default=5)
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
    from sklearn.model_selection import StratifiedKFold

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

    synthetic = load_synthetic(args.synthetic, args.n_synthetic, args.size, args.seed)
    size = synthetic.shape[1]
    real = lc25000(root, size=size)
    x, y = real.tiles, real.codes
    stem = args.stem if args.stem != "auto" else ("large" if size >= 128 else "small")
    arch = {"width": args.width, "blocks": args.blocks, "stem": stem}
    fit_kw = {
        "epochs": args.pretrain_epochs,
        "batch_size": args.pretrain_batch,
        "lr": args.pretrain_lr,
        "max_steps": args.max_steps,
        "device": device,
        "progress_bar": False,
    }
    print(
        f"synthetic: {args.synthetic} {synthetic.shape}; real: {real!r} resized to {size} px; device {device}; "
        f"encoder {arch}",
        flush=True,
    )

    t0 = time.perf_counter()
    pretrained = TileEncoder(**arch).fit(synthetic, seed=args.seed, **fit_kw)
    t_pretrain = time.perf_counter() - t0
    print(
        f"SimCLR on synthetic tiles: {pretrained.train_info['steps']} steps in {t_pretrain:.1f} s, loss "
        f"{pretrained.history['loss'][0]:.3f} → {pretrained.history['loss'][-1]:.3f}",
        flush=True,
    )
    random_init = TileEncoder(**arch)
    torch.manual_seed(args.seed)
    random_init.module = random_init._build()  # seeded, as fine-tuning from scratch starts

    f_syn, f_rand = pretrained.encode(x, device=device), random_init.encode(x, device=device)
    arms: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}

    def record(name: str, pred: np.ndarray, test: np.ndarray, t: float) -> None:
        arms.setdefault(name, []).append(float(np.mean(pred == y[test])))
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t

    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(x, y)
    for k, (train, test) in enumerate(folds):
        s = args.seed + 1000 * (k + 1)
        t = time.perf_counter()
        record("scratch / fine-tune", fine_tune(random_init, x[train], y[train], x[test], 3, args, device, s), test, t)
        t = time.perf_counter()
        record("synthetic / fine-tune", fine_tune(pretrained, x[train], y[train], x[test], 3, args, device, s), test, t)
        t = time.perf_counter()
        record("synthetic / linear", linear_probe(f_syn[train], y[train], f_syn[test]), test, t)
        t = time.perf_counter()
        record("random init / linear", linear_probe(f_rand[train], y[train], f_rand[test]), test, t)
        if args.real_pretrain:
            t = time.perf_counter()
            on_real = TileEncoder(**arch).fit(x[train], seed=s, **fit_kw)
            f_real = on_real.encode(x, device=device)
            record("real / linear", linear_probe(f_real[train], y[train], f_real[test]), test, t)
            t = time.perf_counter()
            record("real / fine-tune", fine_tune(on_real, x[train], y[train], x[test], 3, args, device, s), test, t)
        print(f"fold {k + 1}/{args.folds}: " + ", ".join(f"{a} {v[-1]:.3f}" for a, v in arms.items()), flush=True)

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
    print(
        f"\nLC25000 lung, 3 classes, {len(y)} tiles at {size} px, {args.folds}-fold stratified CV (chance 0.333); "
        f"SimCLR {pretrained.train_info['steps']} steps on {len(synthetic)} synthetic tiles ({t_pretrain:.0f} s); "
        f"fine-tuning {args.ft_epochs} epochs; total {total:.0f} s on {device}\n"
    )
    print("| pretraining / evaluation | accuracy (mean ± sd) | per fold | seconds (all folds) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['mean']:.3f} ± {r['sd']:.3f} | {' '.join(f'{v:.2f}' for v in r['folds'])} "
            f"| {r['seconds']} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": str(device),
                    "args": vars(args),
                    "tile_size": size,
                    "n_synthetic": len(synthetic),
                    "pretrain": {"seconds": t_pretrain, **pretrained.train_info, "loss": pretrained.history["loss"]},
                    "rows": rows,
                    "total_seconds": total,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
