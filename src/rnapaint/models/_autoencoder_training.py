"""Lightning plan of TileAutoencoder training: L1 + SSIM + KL, and after a warm-up a PatchGAN.

The losses follow latent diffusion's autoencoders (Rombach et al. 2022, taming-transformers'
``LPIPSWithDiscriminator``) without the perceptual term, whose VGG weights would be a download:
every term is a mean over pixels, the KL a sum over latent values divided by the pixels, and the
adversarial term is weighted adaptively by the ratio of the reconstruction's and the adversarial
loss's gradient norms at the decoder's last layer, so that neither swamps the other.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from ..nn.patch_discriminator import PatchDiscriminator
from ..nn.ssim import ssim


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(B, 3, H, W)`` → float in [−1, 1] (diffusers' autoencoders' range)."""
    return x.float().div(127.5).sub(1.0)


class AutoencoderTrainingPlan(pl.LightningModule):
    """One optimiser for the autoencoder, one for the discriminator (manual optimisation)."""

    def __init__(self, vae: torch.nn.Module, options: dict[str, Any], seed: int = 0):
        super().__init__()
        self.automatic_optimization = False
        self.vae, self.o, self.seed, self.step = vae, options, seed, 0
        self.history: dict[str, list[float]] = {}
        self.disc = (
            PatchDiscriminator(options["disc_width"], options["disc_layers"]) if options["disc_weight"] else None
        )

    def configure_optimizers(self):
        betas = (0.5, 0.9)  # latent diffusion's autoencoder settings
        opt = [torch.optim.Adam(self.vae.parameters(), lr=self.o["lr"], betas=betas)]
        if self.disc is not None:
            opt.append(torch.optim.Adam(self.disc.parameters(), lr=self.o["lr"], betas=betas))
        return opt

    def _adaptive_weight(self, rec: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
        last = self.vae.decoder.conv_out.weight
        g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()

    def _losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        o = self.o
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        l1 = (x - recon).abs().mean()
        structural = 1.0 - ssim(x, recon, data_range=2.0).mean()
        rec = l1 + o["ssim_weight"] * structural
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + o["kl_weight"] * kl
        logs = {"l1": l1, "ssim": 1.0 - structural, "kl": kl}
        if self.disc is not None and self.step >= o["disc_start"]:
            adv = -self.disc(recon).mean()
            w = self._adaptive_weight(rec, adv) if torch.is_grad_enabled() else torch.ones(())
            loss = loss + o["disc_weight"] * w * adv
            logs["adv"] = adv
        return loss, recon, logs

    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opt_g = opts[0] if isinstance(opts, (list, tuple)) else opts
        lr = self.o["lr"] * min(1.0, (self.step + 1) / max(1, self.o["warmup_steps"]))
        for opt in opts if isinstance(opts, (list, tuple)) else [opts]:
            for group in opt.optimizer.param_groups:
                group["lr"] = lr
        x = to_unit_range(batch)
        loss, recon, logs = self._losses(x)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"TileAutoencoder training loss became {float(loss)} at step {self.step}; lower lr "
                f"(now {self.o['lr']}) or kl_weight."
            )
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        if self.disc is not None and self.step >= self.o["disc_start"]:
            opt_d = opts[1]
            d_loss = 0.5 * (F.relu(1.0 - self.disc(x)).mean() + F.relu(1.0 + self.disc(recon.detach())).mean())
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            logs["disc"] = d_loss
        self.step += 1
        self.log("loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        if self.step % self.o["log_every"] == 0 or self.step == 1:  # a host sync: not every step on a GPU
            self.history.setdefault("step", []).append(float(self.step))
            self.history.setdefault("loss", []).append(float(loss.detach()))
            for k, v in logs.items():
                self.history.setdefault(k, []).append(float(v.detach()))
        return loss.detach()
