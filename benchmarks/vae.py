"""Time per epoch and peak memory of the paper-size β-VAE on a GTEx-size input.

The model is RNA-GAN's β-VAE (hidden 6000/4096, latent 2048, β 0.005, about 305M parameters) and
the input 17,000 samples × 19,198 genes of synthetic z-scores (standard normal float32, seeded).
The training step of the real module (``rnapaint.nn.VAE`` + ``rnapaint.nn.vae_loss``, Adam) is
timed with a plain loop, warm-up steps excluded, so the number is the model's cost and not
Lightning's. A full CPU epoch would take many minutes, so ``--steps`` steps are timed and the time
per epoch is extrapolated as ``s/step × ceil(n_samples / batch)``. ``--lightning`` additionally runs
one real epoch of ``BetaVAE.train`` on a smaller AnnData to show Lightning's overhead.

Examples
--------
CPU, defaults (about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/vae.py

GPU, with the Lightning comparison and a JSON record::

    python benchmarks/vae.py --device cuda --lightning --json vae_gpu.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

GIB = 1024**3


def _import_rnapaint():
    """``import rnapaint``; on a machine where it is not installed, use ``<repo>/src``."""
    try:
        import rnapaint
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        import rnapaint
    return rnapaint


# ---------------------------------------------------------------------------- helpers
def _loadavg() -> str:
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _peak_rss_gib() -> float:
    """Peak resident set size of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / GIB if sys.platform == "darwin" else rss * 1024 / GIB


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process (Linux only): True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vmhwm_gib() -> float | None:
    """Peak RSS since the last reset (VmHWM from /proc/self/status), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False).")
    return torch.device(name)


def _batches(x: torch.Tensor, batch: int, gen: torch.Generator):
    """Endless shuffled mini-batches of ``x`` (the last incomplete batch of each pass is dropped)."""
    n = x.shape[0]
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            yield x[perm[i : i + batch].to(x.device)]


# ---------------------------------------------------------------------------- plain loop
def bench_plain(args, device: torch.device, amp: bool) -> dict:
    rnapaint = _import_rnapaint()
    from rnapaint.nn import VAE, vae_loss

    print(f"rnapaint {rnapaint.__version__} from {Path(rnapaint.__file__).parent}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    x_np = rng.standard_normal((args.n_samples, args.n_genes), dtype=np.float32)
    x = torch.from_numpy(x_np).to(device)
    print(
        f"synthetic data {tuple(x.shape)} float32 ({x.numel() * 4 / GIB:.2f} GiB) on {device} "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    torch.manual_seed(args.seed)
    model = VAE(args.n_genes, args.hidden, args.latent_dim).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"VAE {args.n_genes} → {args.hidden} → {args.latent_dim}: {n_params / 1e6:.1f}M parameters")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            recon, mu, logvar = model(xb)
            loss, _, _ = vae_loss(xb, recon, mu, logvar, args.beta)
        loss.backward()
        opt.step()
        return loss.detach()

    gen = torch.Generator().manual_seed(args.seed)
    batches = _batches(x, args.batch_size, gen)
    model.train()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step(model, opt, next(batches))
    _sync(device)
    t_warm = time.perf_counter() - t0
    print(f"{args.warmup} warm-up steps in {t_warm:.2f} s (excluded)   [load {_loadavg()}]")

    # One synchronisation around the whole timed block; per-step times only where they cost nothing.
    per_step: list[float] = []
    losses: list[torch.Tensor] = []
    _sync(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        ts = time.perf_counter()
        losses.append(step(model, opt, next(batches)))
        if device.type == "cpu":
            per_step.append(time.perf_counter() - ts)
            if args.verbose:
                print(f"  step {i + 1}/{args.steps}: {per_step[-1]:.3f} s")
    _sync(device)
    t_train = time.perf_counter() - t0
    last_loss = float(losses[-1])
    if not math.isfinite(last_loss):
        raise RuntimeError(f"training diverged: loss {last_loss}")
    s_step = t_train / args.steps
    steps_per_epoch = math.ceil(args.n_samples / args.batch_size)
    if device.type == "cuda":
        peak_train = torch.cuda.max_memory_allocated(device) / GIB
        peak_kind = "torch.cuda.max_memory_allocated"
    else:
        peak_train = _peak_rss_gib()
        peak_kind = "peak RSS (ru_maxrss)"
    print(
        f"{args.steps} timed steps in {t_train:.2f} s: {s_step:.4f} s/step"
        + (
            f" (min {min(per_step):.3f}, median {statistics.median(per_step):.3f}, max {max(per_step):.3f})"
            if per_step
            else ""
        )
        + f", last loss {last_loss:.4f}   [load {_loadavg()}]"
    )
    print(
        f"time per epoch EXTRAPOLATED from {args.steps} steps: {s_step:.4f} s/step × "
        f"ceil({args.n_samples}/{args.batch_size}) = {steps_per_epoch} steps "
        f"= {s_step * steps_per_epoch:.1f} s"
    )

    # Encode throughput: posterior means, no grad, eval mode (BatchNorm running statistics).
    model.eval()
    del opt
    gc.collect()
    n_enc = min(args.encode_n or args.n_samples, args.n_samples)
    eb = args.encode_batch
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model.encoder(x[:eb])  # warm-up batch, excluded
        _sync(device)
        t0 = time.perf_counter()
        out = [model.encoder(x[i : min(i + eb, n_enc)])[0] for i in range(0, n_enc, eb)]
        _sync(device)
        t_enc = time.perf_counter() - t0
    assert sum(len(o) for o in out) == n_enc
    enc_sps = n_enc / t_enc
    load = _loadavg()
    print(f"encode {n_enc} samples (batch {eb}) in {t_enc:.2f} s: {enc_sps:.0f} samples/s   [load {load}]")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / GIB
    else:
        peak = _peak_rss_gib()
    print(f"peak memory ({peak_kind}): {peak:.2f} GiB (training alone: {peak_train:.2f} GiB)")

    del model, out, x, x_np, losses, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "run": "plain loop",
        "n_params": n_params,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "s_per_step": s_step,
        "s_per_step_min": min(per_step) if per_step else None,
        "s_per_step_median": statistics.median(per_step) if per_step else None,
        "s_per_step_max": max(per_step) if per_step else None,
        "steps_per_epoch": steps_per_epoch,
        "s_per_epoch": s_step * steps_per_epoch,
        "s_per_epoch_kind": f"extrapolated from {args.steps} steps",
        "train_samples_per_s": args.batch_size / s_step,
        "encode_n": n_enc,
        "encode_batch": eb,
        "encode_s": t_enc,
        "encode_samples_per_s": enc_sps,
        "peak_memory_gib": peak,
        "peak_memory_train_gib": peak_train,
        "peak_memory_kind": peak_kind,
        "last_loss": last_loss,
        "loadavg_after": _loadavg(),
    }


# ---------------------------------------------------------------------------- Lightning
def bench_lightning(args, device: torch.device, precision: str) -> dict:
    """One real epoch of ``BetaVAE.train`` (all rows 'train', so no validation pass)."""
    from unittest import mock

    import anndata as ad
    import pandas as pd

    _import_rnapaint()
    from rnapaint.models import BetaVAE, _training

    n, g = args.lightning_n, args.n_genes
    rng = np.random.default_rng(args.seed + 1)
    adata = ad.AnnData(
        X=rng.standard_normal((n, g), dtype=np.float32),
        obs=pd.DataFrame({"split": ["train"] * n}, index=[f"s{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(g)]),
    )

    marks: list[tuple[float, float]] = []

    class TimedHistory(_training.History):
        """History that also records when each training batch starts and ends."""

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            _sync(device)
            marks.append((time.perf_counter(), math.nan))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(device)
            marks[-1] = (marks[-1][0], time.perf_counter())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    reset = device.type == "cpu" and _reset_peak_rss()
    t0 = time.perf_counter()
    # BetaVAE.train builds its callbacks itself; swapping History for a timed subclass is the only
    # way to see inside the epoch without changing the package.
    with mock.patch.object(_training, "History", TimedHistory):
        model = BetaVAE(adata, hidden=args.hidden, latent_dim=args.latent_dim, beta=args.beta)
        t_init = time.perf_counter() - t0
        model.train(
            max_epochs=1,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_epochs=0,
            accelerator="gpu" if device.type == "cuda" else "cpu",
            precision=precision,
            seed=args.seed,
            progress_bar=False,
        )
    t_total = time.perf_counter() - t0
    steps = len(marks)
    n_train = model.train_info["n_train"]
    if device.type == "cuda":
        peak, peak_kind = torch.cuda.max_memory_allocated(device) / GIB, "torch.cuda.max_memory_allocated"
    elif reset and _vmhwm_gib() is not None:
        peak, peak_kind = _vmhwm_gib(), "peak RSS of this run (VmHWM after clear_refs)"
    else:
        peak, peak_kind = _peak_rss_gib(), "peak RSS of the whole process (ru_maxrss)"
    # Steady state: from the end of the first batch to the end of the last, so that data loading and
    # Lightning's hooks between batches count, but the first (warm-up) step does not.
    if steps >= 2:
        s_step = (marks[-1][1] - marks[0][1]) / (steps - 1)
    else:
        s_step = marks[0][1] - marks[0][0]
    fit_s = marks[-1][1] - marks[0][0]
    print(
        f"Lightning: BetaVAE({n}×{g}) + train(max_epochs=1, precision={model.train_info['precision']}) "
        f"in {t_total:.1f} s (of which BetaVAE() {t_init:.1f} s); {steps} steps of "
        f"{model.train_info['batch_size']} "
        f"({n_train} rows, no validation); first batch start → last batch end {fit_s:.1f} s; "
        f"steady state {s_step:.4f} s/step   [load {_loadavg()}]"
    )
    print(f"Lightning peak memory ({peak_kind}): {peak:.2f} GiB")
    return {
        "run": "Lightning train()",
        "n": n,
        "n_train": n_train,
        "steps": steps,
        "precision": str(model.train_info["precision"]),
        "betavae_init_s": t_init,
        "total_s": t_total,
        "first_batch_to_last_batch_s": fit_s,
        "first_step_s": marks[0][1] - marks[0][0],
        "s_per_step": s_step,
        "s_per_step_kind": "steady state, first step excluded" if steps >= 2 else "single step",
        "steps_per_epoch_paper": math.ceil(args.n_samples / args.batch_size),
        "s_per_epoch": t_total,
        "s_per_epoch_kind": f"measured: whole train() call, {n_train} samples",
        "train_samples_per_s": model.train_info["batch_size"] / s_step,
        "train_samples_per_s_end_to_end": steps * model.train_info["batch_size"] / t_total,
        "peak_memory_gib": peak,
        "peak_memory_kind": peak_kind,
        "loadavg_after": _loadavg(),
    }


# ---------------------------------------------------------------------------- main
def _table(rows: list[dict], device: torch.device, precision: str, batch: int, n_params: int) -> str:
    head = [
        "run",
        "device",
        "precision",
        "batch",
        "params (M)",
        "s/step",
        "s/epoch",
        "samples/s train",
        "samples/s encode",
        "peak memory (GiB)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        enc = r.get("encode_samples_per_s")
        cells = [
            r["run"],
            device.type,
            r.get("precision", precision),
            str(batch),
            f"{n_params / 1e6:.1f}",
            f"{r['s_per_step']:.4g}",
            f"{r['s_per_epoch']:.4g} ({r['s_per_epoch_kind']})",
            f"{r['train_samples_per_s']:.4g}",
            f"{enc:.4g}" if enc is not None else "–",
            f"{r['peak_memory_gib']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.add_argument("--n-samples", type=int, default=17_000, help="synthetic samples (GTEx: 17,000)")
    p.add_argument("--n-genes", type=int, default=19_198, help="genes (GTEx protein-coding: 19,198)")
    p.add_argument("--hidden", type=int, nargs="+", default=[6000, 4096], help="encoder widths")
    p.add_argument("--latent-dim", type=int, default=2048)
    p.add_argument("--beta", type=float, default=0.005)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CPU, 200 on GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 CPU, 20 GPU)")
    p.add_argument("--encode-n", type=int, default=None, help="samples to encode (default 2048 CPU, all GPU)")
    p.add_argument("--encode-batch", type=int, default=1024, help="as BetaVAE.get_latent")
    p.add_argument(
        "--precision",
        choices=["auto", "32-true", "bf16-mixed"],
        default="auto",
        help="auto: bf16-mixed on CUDA, 32-true on CPU (as BetaVAE.train)",
    )
    p.add_argument("--lightning", action="store_true", help="also run one epoch of BetaVAE.train")
    p.add_argument("--lightning-n", type=int, default=2000, help="samples of the Lightning run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")
    p.add_argument("--verbose", action="store_true", help="print every CPU step time")
    args = p.parse_args(argv)

    device = _pick_device(args.device)
    on_gpu = device.type == "cuda"
    args.steps = args.steps if args.steps is not None else (200 if on_gpu else 20)
    args.warmup = args.warmup if args.warmup is not None else (20 if on_gpu else 2)
    args.encode_n = args.encode_n if args.encode_n is not None else (args.n_samples if on_gpu else 2048)
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if on_gpu else "32-true")
    amp = precision == "bf16-mixed"
    if args.steps < 1 or args.batch_size < 2 or args.batch_size > args.n_samples:
        p.error("need --steps ≥ 1 and 2 ≤ --batch-size ≤ --n-samples")

    env = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu",
        "loadavg_start": _loadavg(),
    }
    print(
        f"{env['date']}  python {env['python']}  torch {env['torch']}  {env['device_name']}  "
        f"{env['cpu_count']} CPUs, {env['torch_threads']} torch threads   [load {env['loadavg_start']}]"
    )
    print(
        f"β-VAE hidden {args.hidden}, latent {args.latent_dim}, β {args.beta}; data {args.n_samples} × "
        f"{args.n_genes}; batch {args.batch_size}; Adam lr {args.lr}; {precision}; {args.warmup} warm-up + "
        f"{args.steps} timed steps"
    )

    rows = [bench_plain(args, device, amp)]
    n_params = rows[0]["n_params"]
    if args.lightning:
        rows.append(bench_lightning(args, device, precision))
        ratio = rows[0]["train_samples_per_s"] / rows[1]["train_samples_per_s"]
        e2e = rows[1]["train_samples_per_s_end_to_end"]
        print(
            f"Lightning overhead: plain loop {rows[0]['train_samples_per_s']:.1f} samples/s vs Lightning "
            f"{rows[1]['train_samples_per_s']:.1f} samples/s steady state "
            f"({(ratio - 1) * 100:+.1f} % time per step), "
            f"{e2e:.1f} samples/s end to end (whole train() call, set-up and first step included)"
        )

    env["loadavg_end"] = _loadavg()
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "precision": precision,
        "env": env,
        "results": rows,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    spe = math.ceil(args.n_samples / args.batch_size)
    print(
        f"\nload average at the end: {env['loadavg_end']}; s/epoch = {spe} steps of {args.batch_size} "
        f"for {args.n_samples} samples unless marked measured.\n"
    )
    print(_table(rows, device, precision, args.batch_size, n_params))
    return result


if __name__ == "__main__":
    main()
