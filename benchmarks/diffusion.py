"""Diffusion speed: base-stage training (eager bf16 vs the tuned recipe) and full-cascade sampling.

Issue targets (one H100): base-stage training ≥ 2× the straightforward eager bf16 run of the same
network, with the fraction of the bf16 peak reported (the 137M-parameter reference
UNet2DConditionModel at 64 px trains at 307 tiles/s, 12.6 % of peak); the full cascade at 256 px
≥ 50 tiles/s. Weights are random: speed does not depend on them (sampler quality is measured on
the trained HER2ST model, ``benchmarks/her2st.py``).

Networks:

``reference``
    diffusers' ``UNet2DConditionModel`` in its default block layout (cross-attention at 64, 32 and
    16 px), ``block_out_channels`` (128, 256, 512, 512), 77 × 768 text-like tokens: the issue's
    reference network shape.
``base``
    rnapaint's default base stage (:data:`rnapaint.models.cascaded_diffusion.BASE_DEFAULTS`): the
    same diffusers UNet fed 8 expression tokens.

Recipes: ``eager`` = fp32 weights, bf16 autocast, AdamW (for-each), NCHW, batch 64; ``tuned`` =
the same plus channels-last, fused AdamW, ``torch.compile`` and a larger batch.

Usage::

    python benchmarks/diffusion.py --device cuda --part train --json OUT/diffusion.json
    python benchmarks/diffusion.py --device cuda --part cascade --json OUT/cascade.json
    python benchmarks/diffusion.py --quick            # CPU smoke run, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import rnapaint as rp  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rnapaint.models.cascaded_diffusion import BASE_DEFAULTS, SR_DEFAULTS
from rnapaint.nn.diffusion_unet import ConditionalUNet

BF16_PEAK = {"H100": 989.4e12, "H200": 989.4e12}  # dense bf16 tensor-core peak, FLOP/s (SXM)


class Reference(torch.nn.Module):
    """The reference shape: diffusers' default UNet2DConditionModel layout with 77 × 768 tokens."""

    def __init__(self, size: int, channels=(128, 256, 512, 512)):
        from diffusers import UNet2DConditionModel

        super().__init__()
        self.unet = UNet2DConditionModel(
            sample_size=size, in_channels=3, out_channels=3, block_out_channels=channels, cross_attention_dim=768
        )

    def forward(self, x, t, c, drop=None):
        tokens = c[:, None, :].expand(-1, 77, -1)
        return self.unet(x, t, encoder_hidden_states=tokens, return_dict=False)[0]


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def _step_flops(net, x, t, c) -> float:
    """FLOPs of one forward + backward, counted by torch's FlopCounterMode (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast(x.device.type, torch.bfloat16, enabled=x.device.type == "cuda"):
            out = net(x, t, c)
        F.mse_loss(out.float(), x).backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def train_speed(make_net, size: int, cond_dim: int, batch: int, steps: int, device: torch.device, tuned: bool) -> dict:
    net = make_net().to(device)
    mf = torch.channels_last if tuned else torch.contiguous_format
    net = net.to(memory_format=mf)
    fused = tuned and device.type == "cuda"
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=fused)
    fwd = torch.compile(net) if tuned and device.type == "cuda" else net
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=mf)
    c = torch.randn(batch, cond_dim, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    flops = _step_flops(net, x, t, c) / batch
    amp = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with amp:
            out = fwd(x, t, c)
        loss = F.mse_loss(out.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    warm = 3 if device.type == "cpu" else 15  # compile happens in the first calls
    t0 = time.perf_counter()
    for _ in range(warm):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = _peak(device)
    res = {
        "batch": batch,
        "s_per_step": dt,
        "tiles_per_s": batch / dt,
        "gflop_per_tile": flops / 1e9,
        "warmup_s": compile_s,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "fraction_of_bf16_peak": flops * batch / dt / peak if peak else None,
    }
    if device.type == "cuda":
        res["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return res


# A lighter super-resolution stage for 256 px: five levels that start at 32 channels, so the full-size
# level costs a third of the default's (see the README's FLOP budget).
SR_LIGHT = {"channels": [32, 64, 128, 256, 384], "attention": [False, False, False, False, True]}


def _forward_flops(net, size: int, low_res: bool, device: torch.device) -> float:
    """FLOPs of one denoiser forward pass for one tile (FlopCounterMode: matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=device)
    t = torch.full((1,), 500, device=device)
    c = torch.zeros(1, net.cond.mlp[0].in_features, device=device)
    kw = {"low_res": x, "aug_t": torch.zeros(1, dtype=torch.long, device=device)} if low_res else {}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x, t, c, **kw)
    return float(counter.get_total_flops())


def _recipe_gflop(recipe: tuple[int, int, float, float], base_gflop: float, sr_gflop: float) -> float:
    """GFLOP a tile costs with ``(steps, sr_steps, guidance_scale, sr_guidance_scale)``: each stage's forward
    GFLOP × its steps × its passes a step (two with guidance, one at guidance 1)."""
    steps, sr_steps, w, sr_w = recipe
    return steps * (1 if w == 1 else 2) * base_gflop + sr_steps * (1 if sr_w == 1 else 2) * sr_gflop


def flop_budget(runs, size: int = 256, base_size: int = 64) -> list[dict]:
    """The FLOP budget of each recipe of ``runs`` at full size, counted on the CPU (nothing timed)."""
    cpu = torch.device("cpu")
    base_gflop = _forward_flops(ConditionalUNet(base_size, 64, **BASE_DEFAULTS), base_size, False, cpu) / 1e9
    rows = []
    for sr, recipes in runs:
        net = ConditionalUNet(size, 64, low_res=True, **{**SR_DEFAULTS, **(sr or {})})
        sr_gflop = _forward_flops(net, size, True, cpu) / 1e9
        for recipe in recipes:
            tflop = _recipe_gflop(recipe, base_gflop, sr_gflop) / 1e3
            peak = BF16_PEAK["H100"]
            rows.append(
                {
                    "recipe": recipe,
                    "sr_network": sr or {},
                    "gflop_forward": {"base": base_gflop, "sr": sr_gflop},
                    "tflop_per_tile": tflop,
                    "h100_tiles_per_s_at_peak": peak / (tflop * 1e12),
                    "h100_peak_share_for_50_per_s": 50 * tflop * 1e12 / peak,
                }
            )
    return rows


def cascade_speed(
    size: int,
    base_size: int,
    n: int,
    batch: int,
    runs: list[tuple[dict | None, list[tuple[int, int, float, float]]]],
    device: torch.device,
    compile: bool,
    base: dict | None = None,
):
    """Tiles/s of the whole cascade (DPM-Solver++) from random weights.

    ``runs``: ``(sr, recipes)`` pairs: a super-resolution network (settings merged into
    :data:`SR_DEFAULTS`) and the sampling recipes ``(steps, sr_steps, guidance_scale,
    sr_guidance_scale)`` timed with it. The base stage is built (and compiled) once. Yields one result
    per recipe, with the FLOPs a tile costs: a stage's forward FLOPs × its steps × its passes a step
    (two with guidance, one at guidance 1).
    """
    import numpy as np

    from rnapaint.models.cascaded_diffusion import CascadedDiffusion

    m = CascadedDiffusion.__new__(CascadedDiffusion)
    m.config = {
        "condition": "vae",
        "rep": "X_vae",
        "genes": None,
        "image_size": size,
        "base_size": base_size,
        "prediction": "v_prediction",
        "cond_drop": 0.1,
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "aug_max": 250,
        "condition_dim": 64,
        "condition_mean": [0.0] * 64,
        "condition_std": [1.0] * 64,
        "base": {**BASE_DEFAULTS, **(base or {})},
        "sr": None,
    }
    m.vae, m.dataset = None, None
    m._build()  # the base stage only
    m.is_trained = True

    def prepare(net, stage_size: int, low_res: bool):
        """The network on the device for sampling (channels-last, compiled on a GPU) and its forward GFLOP."""
        net = net.to(device).eval().requires_grad_(False)
        gflop = _forward_flops(net, stage_size, low_res, device) / 1e9
        params = sum(p.numel() for p in net.parameters()) / 1e6
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
            if compile:
                net = torch.compile(net)
        return net, gflop, params

    m.ema["base"], base_gflop, base_params = prepare(m.ema["base"], base_size, False)
    cond = np.random.default_rng(0).standard_normal((n, 64)).astype(np.float32)
    peak = _peak(device)
    for sr, recipes in runs:
        m.config["sr"] = {**SR_DEFAULTS, **(sr or {})}
        net = ConditionalUNet(size, 64, low_res=True, **m.config["sr"])
        m.ema["sr"], sr_gflop, sr_params = prepare(net, size, True)
        for steps, sr_steps, w, sr_w in recipes:
            kw = {"n_per_obs": 1, "batch_size": batch, "device": str(device), "progress_bar": False}
            kw |= {"guidance_scale": w, "sr_guidance_scale": sr_w}
            m.generate(cond[:batch], steps=2, sr_steps=2, **kw)  # warm-up (and compilation for these shapes)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            m.generate(cond, steps=steps, sr_steps=sr_steps, **kw)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            gflop = _recipe_gflop((steps, sr_steps, w, sr_w), base_gflop, sr_gflop)
            yield {
                "tiles": n,
                "batch": batch,
                "steps": steps,
                "sr_steps": sr_steps,
                "guidance_scale": w,
                "sr_guidance_scale": sr_w,
                "image_size": size,
                "base_size": base_size,
                "tiles_per_s": n / dt,
                "gflop_forward": {"base": base_gflop, "sr": sr_gflop},
                "tflop_per_tile": gflop / 1e3,
                "fraction_of_bf16_peak": gflop * 1e9 * n / dt / peak if peak else None,
                "tiles_per_s_at_peak": peak / (gflop * 1e9) if peak else None,
                "params_m": {"base": base_params, "sr": sr_params},
                "sr_network": sr or {},
            }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per configuration")
    p.add_argument("--batch", type=int, default=64, help="eager batch")
    p.add_argument("--tuned-batch", type=int, default=256)
    p.add_argument("--cascade-tiles", type=int, default=512)
    p.add_argument("--cascade-batch", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (a smoke run)")
    p.add_argument(
        "--part",
        choices=["train", "cascade", "all", "flops"],
        default="all",
        help="base-stage training, cascade sampling, or both (on the GPU server, one per 10-minute command); "
        "flops: only the cascade recipes' FLOP budget at full size, counted on the CPU (seconds)",
    )
    p.add_argument("--json")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.quick:
        size, steps, batches = 16, 2, (4, 8)
        ref = lambda: Reference(size, channels=(32, 32, 64, 64))  # noqa: E731
        small = {"channels": [32, 64], "attention": [False, True], "layers_per_block": 1, "token_dim": 64, "hidden": 64}
        base = lambda: ConditionalUNet(size, 64, **{**BASE_DEFAULTS, **small})  # noqa: E731
    else:
        size, steps, batches = 64, args.steps, (args.batch, args.tuned_batch)
        ref = lambda: Reference(size)  # noqa: E731
        base = lambda: ConditionalUNet(size, 64, **BASE_DEFAULTS)  # noqa: E731
        small = None

    def save() -> None:  # after every measurement: a run cut off by a time limit keeps what it measured
        if args.json:
            tmp = Path(args.json).with_suffix(".tmp")
            tmp.write_text(json.dumps(results, indent=1))
            tmp.replace(args.json)

    # The default recipe (25 + 25 DPM-Solver++ steps, guidance 2 in both stages), then the super-resolution
    # stage with 10 steps, with guidance and without (the base image already carries much of the
    # expression), then those two with the lighter super-resolution network. Recipes that share the
    # super-resolution stage's batch shape (guided: twice the batch) follow each other: fewer recompilations.
    fast = (25, 10, 2.0, 1.0)
    full_runs = [(None, [(25, 25, 2.0, 2.0), (25, 10, 2.0, 2.0), fast]), (SR_LIGHT, [(25, 10, 2.0, 2.0), fast])]
    if args.part == "flops":
        results["flop_budget"] = rows = flop_budget(full_runs)
        g = rows[0]["gflop_forward"]
        light = rows[-1]["gflop_forward"]["sr"]
        print(f"one forward pass, one tile: base {g['base']:.1f} GFLOP, SR {g['sr']:.1f}, SR_LIGHT {light:.1f}")
        print(
            "| recipe (steps + SR steps, guidance / SR guidance) | SR network | TFLOP a tile "
            "| tiles/s at 100 % of the H100's bf16 peak | share of peak that 50 tiles/s needs |"
        )
        print("|---|---|---|---|---|")
        for r in rows:
            steps, sr_steps, w, sr_w = r["recipe"]
            print(
                f"| {steps} + {sr_steps}, {w:g} / {sr_w:g} | {'SR_LIGHT' if r['sr_network'] else 'default'} "
                f"| {r['tflop_per_tile']:.2f} | {r['h100_tiles_per_s_at_peak']:.0f} "
                f"| {100 * r['h100_peak_share_for_50_per_s']:.0f} % |"
            )
        save()
        return
    for name, make, cond_dim in (("reference", ref, 768), ("base", base, 64)) if args.part != "cascade" else ():
        for recipe, batch in (("eager", batches[0]), ("tuned", batches[1])):
            r = train_speed(make, size, cond_dim, batch, steps, device, tuned=recipe == "tuned")
            results[f"train_{name}_{recipe}"] = r
            save()
            frac = f", {100 * r['fraction_of_bf16_peak']:.1f} % of bf16 peak" if r["fraction_of_bf16_peak"] else ""
            print(
                f"train {name:9s} {recipe:5s} batch {batch:4d}: {r['tiles_per_s']:8.1f} tiles/s "
                f"({r['params_m']:.0f}M params, {r['gflop_per_tile']:.1f} GFLOP/tile{frac})",
                flush=True,
            )
        e, t = results[f"train_{name}_eager"], results[f"train_{name}_tuned"]
        results[f"speedup_{name}"] = t["tiles_per_s"] / e["tiles_per_s"]
        print(f"  speed-up {name}: {results[f'speedup_{name}']:.2f}×", flush=True)
    if args.quick:
        runs = [(small, [(2, 2, 2.0, 2.0), (2, 1, 2.0, 1.0)]), ({**small, "channels": [16, 32]}, [(2, 1, 2.0, 1.0)])]
        geometry = (32, 16, 8, 4)
    else:
        runs, geometry = full_runs, (256, 64, args.cascade_tiles, args.cascade_batch)
    results["cascade"] = []
    if args.part != "train":
        for r in cascade_speed(*geometry, runs, device, compile=not args.quick, base=small):
            results["cascade"].append(r)
            light = r["sr_network"] == SR_LIGHT or (args.quick and r["sr_network"]["channels"] == [16, 32])
            frac = f", {100 * r['fraction_of_bf16_peak']:.1f} % of bf16 peak" if r["fraction_of_bf16_peak"] else ""
            print(
                f"cascade {r['base_size']}→{r['image_size']} px{' (light SR)' if light else ''}, DPM-Solver++ "
                f"{r['steps']}+{r['sr_steps']} steps, guidance {r['guidance_scale']:g}/{r['sr_guidance_scale']:g}: "
                f"{r['tiles_per_s']:.1f} tiles/s ({r['tflop_per_tile']:.2f} TFLOP a tile{frac})",
                flush=True,
            )
            save()
    save()


if __name__ == "__main__":
    main()
