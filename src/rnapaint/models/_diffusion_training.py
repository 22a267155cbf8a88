"""Lightning pieces of diffusion training: the plan for one cascade stage and its safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from ..io.model_files import save_model_files
from ._optim_state import flatten_optimizer, log_new_settings, restore_optimizer
from ._training import decorrelate_ranks, device_images


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square images ``(n, 3, h, h)`` to ``size``: box filter down (exact for integer factors), bilinear up."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] > size:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class DiffusionTrainingPlan(pl.LightningModule):
    """One stage of the cascade: ε- or v-prediction MSE at uniformly drawn timesteps.

    The base stage learns the tiles box-downsampled to ``base_size``; the super-resolution stage
    learns the full tiles given their own low-resolution version, upsampled back and noised to a
    random level in ``[0, aug_max)`` (noise-conditioning augmentation, so that at sampling time it
    tolerates the base stage's imperfect output). The condition is replaced by the learned null
    condition with probability ``cond_drop`` (classifier-free guidance).
    """

    def __init__(
        self,
        model: Any,
        stage: str,
        lr: float,
        warmup_steps: int,
        weight_decay: float,
        ema_decay: float,
        channels_last: bool,
        compile: bool,
        start_step: int = 0,
        resume_state: tuple[dict, dict] | None = None,
        seed: int = 0,
    ):
        from diffusers.training_utils import EMAModel

        super().__init__()
        self.config, self.stage = model.config, stage
        self.net = model.nets[stage]
        self.scheduler = model.noise_scheduler()
        if resume_state is not None:
            tensors, _ = resume_state
            self.net.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith("net.")})
        self.ema = EMAModel(self.net.parameters(), decay=ema_decay, use_ema_warmup=True, power=0.75, foreach=True)
        if resume_state is not None:
            tensors, meta = resume_state
            names = [n for n, _ in self.net.named_parameters()]
            for s, n in zip(self.ema.shadow_params, names, strict=True):
                s.copy_(torch.as_tensor(tensors[f"ema.{n}"]))
            self.ema.optimization_step = int(meta["ema_step"])
        self.lr, self.warmup_steps, self.weight_decay = lr, warmup_steps, weight_decay
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.step = start_step
        self.seed = seed
        self._finish = model.dataset.finish
        self._resume_state = resume_state
        self._compile = compile
        # Fixed statistics of the training units (see CascadedDiffusion): the same standardisation at sampling.
        self.register_buffer("cond_mean", torch.tensor(model.config["condition_mean"]), persistent=False)
        self.register_buffer("cond_std", torch.tensor(model.config["condition_std"]), persistent=False)

    def setup(self, stage: str) -> None:
        self.net.to(memory_format=self.memory_format)
        self.fwd = torch.compile(self.net) if self._compile else self.net

    def configure_optimizers(self):
        fused = {"fused": True} if next(self.net.parameters()).is_cuda else {}  # one kernel for all tensors
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay, **fused)

    def on_train_start(self) -> None:
        self.ema.to(self.device)
        decorrelate_ranks(self)
        if self._resume_state is not None:
            tensors, meta = self._resume_state
            if "opt" not in meta:
                raise ValueError("The checkpoint holds no optimizer state; it cannot be resumed.")
            changed = restore_optimizer(self.optimizers().optimizer, "opt", tensors, meta["opt"])
            changed.pop("lr", None)  # set every step from the warm-up schedule anyway
            log_new_settings(changed)
            self._resume_state = None

    def training_step(self, batch, batch_idx):
        c = self.config
        for group in self.optimizers().optimizer.param_groups:  # linear warm-up, then constant (resumable)
            group["lr"] = self.lr * min(1.0, (self.step + 1) / max(1, self.warmup_steps))
        images = batch["image"]
        images = device_images(self, images)  # augment_on="device": augmented and scaled here, on the GPU
        n = len(images)
        device = images.device
        # Noise in fp32 whatever the precision: diffusers' add_noise/get_velocity cast ᾱ_t to the
        # images' dtype, and in bf16 ᾱ_t rounds to 1 for t ≤ 20 (no noise, wrong v targets).
        dtype, images = images.dtype, images.float()
        if self.stage == "base":
            x0, extra = resize(images, c["base_size"]), {}
        else:
            x0 = images
            low = resize(resize(images, c["base_size"]), c["image_size"])
            aug_t = torch.randint(0, c["aug_max"], (n,), device=device)
            low = self.scheduler.add_noise(low, torch.randn_like(low), aug_t).to(dtype)
            extra = {"low_res": low.to(memory_format=self.memory_format), "aug_t": aug_t}
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), device=device)
        x_t = self.scheduler.add_noise(x0, noise, t).to(dtype, memory_format=self.memory_format)
        target = noise if c["prediction"] == "epsilon" else self.scheduler.get_velocity(x0, noise, t)
        drop = torch.rand(n, device=device) < c["cond_drop"]
        cond = (batch["condition"] - self.cond_mean) / self.cond_std
        out = self.fwd(x_t, t, cond, drop, **extra)
        loss = F.mse_loss(out.float(), target.float())
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True)
        self.step += 1  # counted here so that callbacks (stop, checkpoint) see this step as done
        return loss

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        # Right after the weights moved, before any callback sees this step: a checkpoint written at
        # step N (DiffusionCheckpoint.on_train_batch_end) holds the EMA of N updates, as the GAN's does.
        self.ema.step(self.net.parameters())


class DiffusionCheckpoint(pl.Callback):
    """Every ``every`` steps: weights, EMA weights and the AdamW state as safetensors + JSON (atomic)."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = Path(path), every

    def write(self, plan: DiffusionTrainingPlan) -> None:
        tensors: dict[str, torch.Tensor] = {f"net.{k}": v for k, v in plan.net.state_dict().items()}
        names = [n for n, _ in plan.net.named_parameters()]
        tensors.update({f"ema.{n}": s for n, s in zip(names, plan.ema.shadow_params, strict=True)})
        meta: dict[str, Any] = {
            "class": "CascadedDiffusionCheckpoint",
            "stage": plan.stage,
            "step": int(plan.step),
            "ema_step": int(plan.ema.optimization_step),
            "model": plan.config,
        }
        if plan._trainer is not None and plan.trainer.optimizers:
            t, m = flatten_optimizer(plan.trainer.optimizers[0], "opt")
            tensors.update(t)
            meta["opt"] = m
        save_model_files(self.path, tensors, meta, overwrite=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.step % self.every == 0 and trainer.is_global_zero:
            self.write(pl_module)
