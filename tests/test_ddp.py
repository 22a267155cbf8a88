"""Data-parallel training (``strategy="ddp"``) of the generators, on two CPU processes (gloo).

Launched through ``torch.distributed.run`` as a user would on a multi-GPU server; the CPU path is
the same Lightning/DDP code with the gloo backend instead of NCCL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from rnapaint.models import TileGAN

pytestmark = pytest.mark.slow

_WORKER = r"""
import hashlib, json, os, sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import rnapaint as rp
from rnapaint.models import CascadedDiffusion, TileGAN
from rnapaint.models._diffusion_training import DiffusionCheckpoint, DiffusionTrainingPlan
from rnapaint.models._gan_training import GANTrainingPlan, SafetensorsCheckpoint

out, method = Path(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
seen = {"writes": 0}


def counted(cls, name):  # count this rank's checkpoint and model writes
    original = getattr(cls, name)
    def wrapped(*args, **kwargs):
        seen["writes"] += 1
        return original(*args, **kwargs)
    setattr(cls, name, wrapped)


for cls in (SafetensorsCheckpoint, DiffusionCheckpoint):
    counted(cls, "write")
for cls in (TileGAN, CascadedDiffusion):
    counted(cls, "save")

def record(plan_cls, extra):
    step = plan_cls.training_step
    def wrapped(self, batch, batch_idx):
        if "condition" not in seen:  # this rank's first batch and random stream
            seen["condition"] = float(batch["condition"].double().sum())
            seen["rng"] = hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()
            seen.update(extra(self, batch))
        return step(self, batch, batch_idx)
    plan_cls.training_step = wrapped

a = rp.datasets.toy(n=64, tile_size=32 if method == "gan" else 16, seed=0)  # DCGAN: ≥ 32 px
rp.pp.log1p(a)
rp.pp.zscore(a)
common = {"batch_size": 8, "num_workers": 0, "progress_bar": False, "accelerator": "cpu", "devices": 2,
          "checkpoint_dir": out / "ckpt", "checkpoint_every": 2}
if method == "gan":
    # strategy "auto" with two devices: Lightning would pick plain DDP, which a GAN cannot use
    record(GANTrainingPlan, lambda plan, batch: {"noise": float(plan._input(batch["condition"]).double().sum())})
    rp.tl.vae(a, hidden=(16, 8), latent_dim=4, max_epochs=2, batch_size=32, progress_bar=False)
    rp.tl.train_generator(a, a.obsm["tiles"], method="rnagan", save_path=out / "model",
                          model_kwargs={"width": 8, "projection": True}, max_steps=6, n_critic=2, **common)
    m = rp.tl.get_model(a, "tile_rnagan")
    nets = {"generator": m.generator, "critic": m.critic}
    steps = m.train_info["steps"]
else:
    record(DiffusionTrainingPlan, lambda plan, batch: {})
    net = {"layers_per_block": 1, "n_tokens": 2, "token_dim": 16, "hidden": 16, "head_dim": 8}
    m = rp.models.CascadedDiffusion(a, a.obsm["tiles"], condition="expression", base_size=8,
                                    base={**net, "channels": [16, 32], "attention": [False, True]},
                                    sr={**net, "channels": [8, 16], "attention": [False, False]})
    m.train(max_steps=4, stages=("base",), strategy="ddp", **common)
    nets = {"base": m.nets["base"]}
    steps = m.train_info["base"]["steps"]
params = {f"{k}.{n}": p.detach().contiguous() for k, net in nets.items() for n, p in net.named_parameters()}
save_file(params, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps({**seen, "steps": steps}))
"""


def _run(tmp_path, method: str) -> tuple[list[dict], list[dict]]:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
        str(tmp_path),
        method,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if "Error" in line]  # the workers' own, before torchrun's
    assert proc.returncode == 0, "\n".join(errors[:10]) + proc.stderr[-2000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    return info, weights


def _assert_data_parallel(info: list[dict], weights: list[dict], steps: int, ckpt) -> None:
    assert [i["steps"] for i in info] == [steps, steps]
    # Gradients were averaged: both ranks end with the same weights ...
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k], err_msg=k)
    # ... from different batches and different random draws.
    assert info[0]["condition"] != info[1]["condition"]
    assert info[0]["rng"] != info[1]["rng"]
    # Only rank 0 wrote files (checkpoints, the saved model), and the checkpoint is complete.
    assert info[0]["writes"] > 0 and info[1]["writes"] == 0
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["step"] == steps
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gan_trains_data_parallel_on_two_devices(tmp_path):
    """Two devices work for the GAN although a critic step leaves the generator out (plain DDP refuses)."""
    info, weights = _run(tmp_path, "gan")
    _assert_data_parallel(info, weights, 6, tmp_path / "ckpt")
    assert TileGAN.load(tmp_path / "model").is_trained  # rp.tl.train_generator(save_path=) from rank 0
    assert info[0]["noise"] != info[1]["noise"]  # each rank its own generator input
    assert any(k.startswith("critic.") for k in weights[0]) and any(k.startswith("generator.") for k in weights[0])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_diffusion_trains_data_parallel(tmp_path):
    info, weights = _run(tmp_path, "cdm")
    _assert_data_parallel(info, weights, 4, tmp_path / "ckpt" / "base")
