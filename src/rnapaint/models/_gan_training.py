"""Lightning pieces of the WGAN-GP training: the plan (manual optimisation), checkpoints, a step limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..io.model_files import save_model_files
from ..nn.dcgan import gradient_penalty
from ._optim_state import flatten_optimizer, log_new_settings, restore_optimizer
from ._training import decorrelate_ranks, device_images


class GANTrainingPlan(pl.LightningModule):
    """One critic step per batch; a generator step every ``n_critic`` critic steps; EMA after each."""

    def __init__(
        self,
        model: Any,
        n_critic: int,
        gp_lambda: float,
        lr_g: float,
        lr_d: float,
        betas: tuple[float, float],
        ema_decay: float,
        channels_last: bool,
        compile: bool,
        start_step: int = 0,
        resume_state: tuple[dict, dict] | None = None,
        seed: int = 0,
        gp_every: int = 1,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.config = model.config
        self.generator, self.critic, self.ema = model.generator, model.critic, model.ema
        if resume_state is not None:
            tensors, _ = resume_state
            for prefix, m in (("generator.", self.generator), ("critic.", self.critic), ("ema.", self.ema)):
                m.load_state_dict(
                    {k[len(prefix) :]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith(prefix)}
                )
        self.n_critic, self.gp_lambda, self.ema_decay = n_critic, gp_lambda, ema_decay
        self.gp_every = gp_every
        self.lr_g, self.lr_d, self.betas = lr_g, lr_d, betas
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.step = start_step
        self._resume_state = resume_state
        self._compile = compile
        self._noise_seed = seed * 1_000_003 + start_step
        self.seed = seed
        self._finish = model.dataset.finish
        self._noise: torch.Generator | None = None
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, stage: str) -> None:
        self.generator.to(memory_format=self.memory_format)
        self.critic.to(memory_format=self.memory_format)
        if self._compile:
            self.g_fwd, self.d_fwd = torch.compile(self.generator), torch.compile(self.critic)
        else:
            self.g_fwd, self.d_fwd = self.generator, self.critic

    def configure_optimizers(self):
        fused = {"fused": True} if next(self.critic.parameters()).is_cuda else {}  # one kernel for all tensors
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=self.betas, **fused)
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=self.lr_d, betas=self.betas, **fused)
        return opt_g, opt_d

    def on_train_start(self) -> None:
        # precision="bf16-true" casts the whole module to bf16, the EMA included: its update of
        # (1 − 0.999) · (generator − EMA) falls below bf16 resolution and would be lost. The average
        # is kept in float32 (its lerp casts the generator's weights up), whatever the precision.
        self.ema.float()
        decorrelate_ranks(self)  # the penalty's interpolation weights come from the global stream
        if self._resume_state is not None:
            tensors, meta = self._resume_state
            # The float32 EMA of the checkpoint again: the cast to bf16 above would have rounded it.
            self.ema.load_state_dict(
                {k[4:]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith("ema.")}, strict=True
            )
            if "opt_g" not in meta or "opt_d" not in meta:
                raise ValueError("The checkpoint holds no optimizer state; it cannot be resumed.")
            opt_g, opt_d = self.optimizers()
            changed = {
                **{
                    f"generator {k}": v
                    for k, v in restore_optimizer(opt_g.optimizer, "opt_g", tensors, meta["opt_g"]).items()
                },
                **{
                    f"critic {k}": v
                    for k, v in restore_optimizer(opt_d.optimizer, "opt_d", tensors, meta["opt_d"]).items()
                },
            }
            log_new_settings(changed)
            self._resume_state = None

    def _input(self, cond: torch.Tensor) -> torch.Tensor:
        from .tile_gan import condition_stats, make_input

        if self._noise is None:  # on the training device: no host round trip (and GPU sync) per step
            seed = self._noise_seed
            if self.global_rank:  # each DDP rank its own noise; rank 0's stream is the single-process one
                seed = int(np.random.SeedSequence([self.seed, self.step, self.global_rank]).generate_state(1)[0])
            self._noise = torch.Generator(device=self.device).manual_seed(seed)
            self._stats = condition_stats(self.config, self.device)
        z = make_input(cond, self.config, len(cond), self._noise, self._stats)  # float32
        if self._trainer is not None:  # what Lightning does to float inputs (bf16-true: a cast)
            z = self.trainer.precision_plugin.convert_input(z)
        return z

    def _critic(self, x: torch.Tensor, cond: torch.Tensor | None, cond_for_aux: torch.Tensor | None = None):
        """Critic scores ``(B,)``; with ``cond_for_aux`` (``aux_weight`` > 0) also the auxiliary loss."""
        if cond_for_aux is None:
            return self.d_fwd(x, cond) if self.config["projection"] else self.d_fwd(x)
        score, pred = (
            self.d_fwd(x, cond, return_aux=True) if self.config["projection"] else self.d_fwd(x, return_aux=True)
        )
        mean, std = self._stats
        target = (cond_for_aux.float() - mean) / std  # the clean standardised condition, without the noise
        return score, torch.nn.functional.mse_loss(pred.float(), target)

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        # augment_on="device": augmented and scaled here, on the GPU
        real = device_images(self, batch["image"]).to(memory_format=self.memory_format)
        cond = batch["condition"] if self.config["condition"] else None
        proj = cond if self.config["projection"] else None
        z = self._input(batch["condition"])
        aux_w = self.config.get("aux_weight", 0.0)
        with torch.no_grad():
            fake = self.g_fwd(z)
        if aux_w:  # the auxiliary head learns from real tiles only: what real tissue says about expression
            d_real, aux_real = self._critic(real, proj, batch["condition"])
        else:
            d_real = self._critic(real, proj)
        d_fake = self._critic(fake, proj)
        loss_d = d_fake.float().mean() - d_real.float().mean()
        if aux_w:
            loss_d = loss_d + aux_w * aux_real
            self.log("train_aux_real", aux_real.detach(), on_step=False, on_epoch=True)
        lazy = self.step % self.gp_every == 0  # lazy regularisation: the penalty every gp_every steps, scaled up
        if lazy:
            gp = gradient_penalty(self.critic, real, fake, proj)
            loss_d = loss_d + self.gp_lambda * self.gp_every * gp
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.step += 1
        self.log("train_critic", loss_d.detach(), on_step=False, on_epoch=True, prog_bar=True)
        self.log(
            "train_wasserstein", (d_real.float().mean() - d_fake.float().mean()).detach(), on_step=False, on_epoch=True
        )
        if lazy:
            self.log("train_gp", gp.detach(), on_step=False, on_epoch=True)
        if self.step % self.n_critic == 0:
            z = self._input(batch["condition"])
            # The critic's weights need no gradient here (only its input does): toggling skips that
            # half of the critic's backward pass.
            self.toggle_optimizer(opt_g)
            if aux_w:
                d_gen, aux_fake = self._critic(self.g_fwd(z), proj, batch["condition"])
                loss_g = -d_gen.float().mean() + aux_w * aux_fake
                self.log("train_aux_fake", aux_fake.detach(), on_step=False, on_epoch=True)
            else:
                loss_g = -self._critic(self.g_fwd(z), proj).float().mean()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            self._update_ema()
            self.log("train_generator", loss_g.detach(), on_step=False, on_epoch=True, prog_bar=True)

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up (as in common EMA implementations): early on the average follows the generator
        # closely, else a short run would sample from weights still close to the random init.
        g_steps = self.step // self.n_critic
        decay = min(self.ema_decay, (1.0 + g_steps) / (10.0 + g_steps))
        for e, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            e.lerp_(p.detach().to(e.dtype), 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
            e.copy_(b)


@torch.no_grad()
def ema_standing_stats(
    ema: torch.nn.Module, condition: torch.Tensor, config: dict, n_batches: int, batch_size: int, seed: int, device
) -> None:
    """Re-estimate the EMA generator's BatchNorm statistics from its own activations ("standing
    statistics", Brock et al. 2019).

    During training the EMA copies the raw generator's running statistics, which describe another
    set of weights. Here they become the average over ``n_batches`` batches of training inputs
    (conditions of ``condition``'s rows, each with fresh noise), passed through the EMA itself.

    Parameters
    ----------
    ema
        The EMA generator (its other weights are left alone).
    condition
        ``(n_tiles, condition_dim)`` the training tiles' conditions (one row per tile, so units
        weigh as in training).
    """
    from torch.optim.swa_utils import update_bn

    from .tile_gan import condition_stats, make_input

    gen = torch.Generator().manual_seed(seed)
    stats = condition_stats(config)

    def inputs():
        for _ in range(n_batches):
            rows = torch.randint(len(condition), (batch_size,), generator=gen)
            yield make_input(condition[rows], config, batch_size, gen, stats)

    was_on = next(ema.parameters()).device
    update_bn(inputs(), ema.to(device), device=torch.device(device))
    ema.to(was_on).eval()


class SafetensorsCheckpoint(pl.Callback):
    """Every ``every`` critic steps: weights, EMA and both Adam states as safetensors + JSON (atomic)."""

    def __init__(self, model: Any, path: Path, every: int):
        self.model, self.path, self.every = model, Path(path), every

    def write(self, plan: GANTrainingPlan) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, m in (("generator.", plan.generator), ("critic.", plan.critic), ("ema.", plan.ema)):
            tensors.update({prefix + k: v for k, v in m.state_dict().items()})
        meta: dict[str, Any] = {"class": "TileGANCheckpoint", "step": int(plan.step), "model": plan.config}
        if plan._trainer is not None and plan.trainer.optimizers:
            for name, opt in zip(("opt_g", "opt_d"), plan.trainer.optimizers, strict=True):
                t, m = flatten_optimizer(opt, name)
                tensors.update(t)
                meta[name] = m
        save_model_files(self.path, tensors, meta, overwrite=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.step % self.every == 0 and trainer.is_global_zero:
            self.write(pl_module)
