"""The GPU benchmark scripts still run, at toy sizes on the CPU.

They run on a GPU only when a session has one, with minutes counted; a script broken by a library
change would waste them. These runs check that each script finishes and reports what its README table
needs. They do not check speed (that is what the scripts are for, on the GPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_gan_benchmark_runs(tmp_path):
    small = ["--device", "cpu", "--size", "64", "--width", "8", "--latent", "64", "--steps", "2", "--warmup", "1"]
    tiny = ["--store-tiles", "64", "--gen-tiles", "64", "--big-batch", "16", "--workers", "1", "--gp-every", "4"]
    rows = _run("gan", *small, *tiny, tmp_path=tmp_path)["rows"]
    kinds = {(r["what"], r.get("gp_every", 1)) for r in rows}
    # plain, lazy gradient penalty, the network's generation, TileGAN.generate end to end, its host noise
    assert {("train", 1), ("train", 4), ("generate", 1), ("generate_end_to_end", 1), ("host_noise", 1)} <= kinds
    assert all(r["tiles_per_s"] > 0 for r in rows)


def test_flop_budgets_add_up(tmp_path):
    # the figures quoted in benchmarks/README ("The FLOP budget of the 50 tiles/s target", the GAN's 72 GFLOP)
    d = _run("diffusion", "--part", "flops", tmp_path=tmp_path)["flop_budget"]
    default, light = d[0], d[-1]
    g = default["gflop_forward"]
    assert default["recipe"] == [25, 25, 2.0, 2.0]
    assert default["tflop_per_tile"] == pytest.approx(50 * (g["base"] + g["sr"]) / 1e3)
    assert default["h100_tiles_per_s_at_peak"] < 50  # the default recipe cannot reach the target
    assert light["recipe"] == [25, 10, 2.0, 1.0] and light["h100_tiles_per_s_at_peak"] > 50
    assert light["gflop_forward"]["sr"] < g["sr"] / 2
    b = _run("gan", "--flops", "--size", "64", "--width", "8", "--latent", "64", tmp_path=tmp_path)
    assert b["total_gflop"] == pytest.approx(sum(b["gflop_per_critic_tile"].values()))
    assert b["h100_peak_share"]["1250"] == pytest.approx(b["h100_peak_share"]["745"] * 1250 / 745)


def test_diffusion_benchmark_runs(tmp_path):
    d = _run("diffusion", "--quick", tmp_path=tmp_path)
    for key in ("train_reference_eager", "train_reference_tuned", "train_base_eager", "train_base_tuned"):
        assert d[key]["tiles_per_s"] > 0 and d[key]["gflop_per_tile"] > 0
    full, fast, light = d["cascade"]
    for r in (full, fast, light):
        assert r["tiles_per_s"] > 0 and r["image_size"] > r["base_size"] and r["tflop_per_tile"] > 0
    # a tile's FLOPs: each stage's forward × its steps × its passes (two with guidance, one at guidance 1)
    g = full["gflop_forward"]
    assert full["tflop_per_tile"] == pytest.approx((2 * 2 * g["base"] + 2 * 2 * g["sr"]) / 1e3)
    assert fast["tflop_per_tile"] == pytest.approx((2 * 2 * g["base"] + 1 * g["sr"]) / 1e3)
    assert light["gflop_forward"]["sr"] < g["sr"] and light["gflop_forward"]["base"] == g["base"]


def test_tiles_benchmark_runs(tmp_path, data_root):
    slide = data_root / "wsi" / "CMU-1-Small-Region.svs"
    args = ["--slide", str(slide), "--copies", "1", "--jobs", "1", "--workers", "1", "--store-tiles", "64"]
    rows = _run(
        "tiles",
        *args,
        "--batches",
        "2",
        "--batch-size",
        "16",
        "--augment-on",
        "device",
        "worker",
        "none",
        tmp_path=tmp_path,
    )["rows"]
    assert {r["what"] for r in rows} == {"tile_slides", "loader"}
    assert {r["augment_on"] for r in rows if r["what"] == "loader"} == {"device", "worker", "none"}
    assert all(r["tiles"] > 0 and r["tiles_per_s"] > 0 for r in rows)


def test_pretrain_benchmark_runs(tmp_path, data_root):
    d = _run("pretrain", "--quick", "--data-root", str(data_root), tmp_path=tmp_path)
    arms = {r["arm"] for r in d["rows"]}
    assert {"scratch / fine-tune", "random init / linear"} <= arms
    assert all(len(r["folds"]) == d["args"]["folds"] and 0 <= r["mean"] <= 1 for r in d["rows"])
    # Chance is each test fold's largest class share (as condition_fidelity defines it): LC25000's
    # stratified folds hold the three classes equally.
    assert len(d["fold_chance"]) == d["args"]["folds"] and abs(d["chance"] - 1 / 3) < 0.02


def test_roughness_measures_neighbouring_pixel_differences():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from roughness import roughness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    flat = np.full((2, 8, 8, 3), 120, np.uint8)
    assert roughness(flat) == 0
    checker = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    assert roughness(checker[None]) == 255
    stripes = flat.copy()
    stripes[:, :, ::2] = 0  # columns alternate 0 / 120: only the horizontal neighbours differ
    assert roughness(stripes) == 60


def test_autoencoder_benchmark_runs(tmp_path, data_root):
    env = {**__import__("os").environ, "RNAPAINT_DATA": str(data_root)}
    script = str(REPO / "benchmarks" / "autoencoder.py")
    model = tmp_path / "ae"
    for args in (
        ["train", "--steps", "2", "--sections", "C5", "--channels", "8", "16", "16", "--out", str(model)],
        ["evaluate", "--models", str(model), "--n", "6", "--n-boot", "5", "--out", str(tmp_path / "eval")],
    ):
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n_tiles"] == 6 and report["stored_values"] == 4 * 32 * 32
    for name in ("bicubic", "ae"):  # each scored by every measure the benchmarks/README table gives
        assert {"psnr", "ssim", "kid_inception", "kid_nuclei", "rho_density", "rho_hematoxylin_fraction"} <= set(
            report[name]
        )
    assert json.loads((tmp_path / "ae.train.json").read_text())["steps"] == 2
    assert (tmp_path / "eval" / "grid.png").stat().st_size > 10_000
