"""RNA-GAN's tile generator: a DCGAN trained with WGAN-GP, from noise (baseline) or from expression.

RNA-GAN drives the generator with the β-VAE posterior mean of the tile's expression unit plus
uniform noise in [−0.3, 0.3]. Its public code standardises the generator input across each batch
while batches come from a single slide, which subtracts the very profile the tiles should follow;
here every batch mixes units and the condition is never normalised across the batch, so the signal
survives (the tests check that changing only the condition changes the output).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from .._logging import logger
from ..io.model_files import check_model_destination, load_model_files, save_model_files
from ..nn.dcgan import DCGANCritic, DCGANGenerator
from ._config_errors import refuse_absurd_sizes, refuse_unknown_options, refuses_incomplete_config
from ._latent_condition import latent_condition
from ._seeding import rand_per_tile, randn_per_tile, tile_generators, unit_keys
from .generated_store import Sink

_PREFIXES = ("generator.", "critic.", "ema.")
# Every option a TileGAN config holds (the condition statistics only when conditioned); load refuses others.
_OPTIONS = frozenset(
    {
        *("condition", "rep", "image_size", "width", "latent_dim", "condition_dim", "upsample"),
        *("critic_norm", "projection", "noise", "noise_units", "condition_mean", "condition_std"),
        "aux_weight",
    }
)
# What an option absent from an older config meant; a checkpoint made before the option existed resumes
# under a config that spells that value out.
_ABSENT_MEANS = {"noise_units": "standardised", "aux_weight": 0.0}


class TileGAN:
    """WGAN-GP DCGAN for H&E tiles, unconditional (``condition=None``) or RNA-GAN (``condition="vae"``).

    Parameters
    ----------
    adata
        Expression units; with ``condition="vae"`` the condition is ``adata.obsm[rep]`` (β-VAE
        posterior means from :func:`rnapaint.tl.vae`), or computed with ``vae`` when missing.
    tiles
        A :class:`~rnapaint.data.TileStore` (or path) whose units are obs of ``adata``, or an array
        ``(n_obs, k, H, W, 3)`` uint8 aligned with ``adata`` (e.g. ``adata.obsm['tiles']``).
    condition
        ``"vae"`` (RNA-GAN) or ``None`` (the GAN baseline, from pure noise).
    vae
        The :class:`~rnapaint.models.BetaVAE` (or its path) whose latent is the condition; saved with
        the generator so that new profiles can be painted from expression alone.
    rep
        obsm key of the condition.
    units
        obs names to train on (e.g. the training split); default all units with tiles.
    width
        Channels of the first critic / last generator layer (torchgan's ``step_channels``; 64 in
        RNA-GAN).
    latent_dim
        Generator input size for the unconditional GAN (default: the condition's size, or 128).
    upsample
        ``"transpose"`` (published) or ``"resize"`` (nearest-neighbour + convolution; no
        checkerboard artifacts).
    critic_norm
        ``"layer"``, ``"spectral"`` or ``None`` (never BatchNorm: the gradient penalty is per sample).
    projection
        Projection critic (Miyato & Koyama 2018): the critic also sees the condition (default).
        RNA-GAN's published critic does not (``projection=False``): nothing in its loss then ties a
        tile to its profile. On the toy set (500 critic steps, 32 px) its tiles did not follow the
        density program (Spearman ρ −0.15 on held-out units) while the projection critic's did (ρ ≈ 0.6;
        ``tests/test_gan.py`` checks ρ ≥ 0.5 for the default).
    noise
        Half-width of RNA-GAN's uniform noise added to the condition.
    noise_units
        Where that noise is added. ``"latent"`` (default, as published): to the β-VAE posterior mean
        itself, so U(−0.3, 0.3) is measured against the latent's own spread (about 0.4 a dimension on
        HER2ST); each dimension of the sum is then scaled to unit variance with fixed statistics of
        the training units — what the published code's batch standardisation does, without its
        dependence on the batch. A collapsed dimension becomes pure noise, as there.
        ``"standardised"``: each dimension is standardised first and the noise added after, so every
        dimension gets the same noise relative to its spread (on HER2ST about 2.4× less than
        published). Models saved before this option existed used ``"standardised"`` and load that way.
    aux_weight
        Weight of an auxiliary condition loss (AC-GAN, Odena et al. 2017; with WGAN-GP as in
        Gulrajani et al. 2017), 0 to leave it out (default, as published). The critic gets a head that
        regresses the standardised condition from the image, trained on real tiles only (so it learns
        what real tissue says about expression); the generator is penalised, with this weight, by
        that head's mean squared error on its own tiles against the conditions it painted them from.
        Unlike the projection term this asks every tile to carry its profile, not only to score
        better with it than without it. RNA-GAN only. With the published critic
        (``projection=False``) a weight of 10 makes the toy tiles follow their programs
        (``tests/test_gan.py``); on top of the projection critic it gave no consistent gain on
        HER2ST at CPU size over three seeds (``benchmarks/README.md``), hence off by default.
    augment
        Augmentation of the real tiles: ``"dihedral"`` (default: flips and 90° rotations, which leave
        H&E's appearance unchanged), ``True`` (also :class:`~rnapaint.data.TileAugment`'s colour
        jitter, which the generator then learns to paint, so stain colour follows the expression less),
        ``False`` or a :class:`~rnapaint.data.TileAugment`.
    """

    def __init__(
        self,
        adata: ad.AnnData,
        tiles: Any,
        condition: str | None = "vae",
        vae: Any = None,
        rep: str = "X_vae",
        units=None,
        width: int = 64,
        latent_dim: int | None = None,
        upsample: str = "transpose",
        critic_norm: str | None = "layer",
        projection: bool = True,
        noise: float = 0.3,
        noise_units: str = "latent",
        aux_weight: float = 0.0,
        augment: Any = "dihedral",
    ):
        from ..data.augment import generator_augment
        from ..data.paired import PairedTiles
        from .beta_vae import BetaVAE

        if condition not in ("vae", None):
            raise ValueError(f"condition must be 'vae' or None, got {condition!r}.")
        if noise_units not in ("latent", "standardised"):
            raise ValueError(f"noise_units must be 'latent' or 'standardised', got {noise_units!r}.")
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite half-width ≥ 0, got {noise!r}.")
        if not (math.isfinite(aux_weight) and aux_weight >= 0):
            raise ValueError(f"aux_weight must be a finite weight ≥ 0, got {aux_weight!r}.")
        if aux_weight and condition is None:
            raise ValueError("aux_weight needs a condition: the GAN baseline has none to predict.")
        if isinstance(vae, (str, os.PathLike)):
            vae = BetaVAE.load(vae)
        self.vae = vae
        if condition == "vae" and rep not in adata.obsm:
            if vae is None:
                raise ValueError(f"adata.obsm has no {rep!r}: run rp.tl.vae(adata) or pass vae=.")
            adata = adata.copy()
            adata.obsm[rep] = vae.get_latent(adata)
        if condition is None and rep not in adata.obsm:
            adata = adata.copy()
            adata.obsm[rep] = np.zeros((adata.n_obs, 1), np.float32)  # placeholder: the baseline ignores it
        self.adata = adata
        self.dataset = PairedTiles(
            tiles, adata, rep=rep, units=units, augment=generator_augment(augment), augment_on="device"
        )
        size = self.dataset.tile_size
        cond_dim = int(adata.obsm[rep].shape[1]) if condition == "vae" else 0
        if condition == "vae":
            latent = cond_dim
        else:
            latent = latent_dim or (int(vae.config["latent_dim"]) if vae is not None else 128)
        self.config: dict[str, Any] = {
            "condition": condition,
            "rep": rep,
            "image_size": size,
            "width": int(width),
            "latent_dim": latent,
            "condition_dim": cond_dim,
            "upsample": upsample,
            "critic_norm": critic_norm,
            "projection": bool(projection) and condition == "vae",
            "noise": float(noise),
            "noise_units": noise_units,
            "aux_weight": float(aux_weight),
        }
        if condition == "vae":
            # Standardise each condition dimension with fixed statistics of the training units (not
            # per batch): β-VAE means spread ~0.3, and a DCGAN fed inputs that small learns slowly.
            train_cond = self.dataset.condition[np.unique(self.dataset.obs_rows)].double()
            std = train_cond.std(0, unbiased=False)
            # Floor the spread at 1 % of the widest dimension: collapsed β-VAE dimensions stay quiet
            # instead of being blown up to unit variance (and one training unit gives no NaN).
            std = torch.nan_to_num(std, nan=1.0).clamp_min(max(1e-6, 0.01 * float(std.max())))
            self.config["condition_mean"] = train_cond.mean(0).float().tolist()
            self.config["condition_std"] = std.float().tolist()
        self._build()
        self.history: dict[str, list[float]] = {}
        self.train_info: dict[str, Any] = {}
        self.is_trained = False
        self.global_rank = 0

    def _build(self) -> None:
        c = self.config
        self.generator = DCGANGenerator(c["latent_dim"], c["image_size"], c["width"], c["upsample"])
        self.critic = DCGANCritic(
            c["image_size"],
            c["width"],
            c["critic_norm"],
            condition_dim=c["condition_dim"] if c["projection"] else None,
            aux_dim=c["condition_dim"] if c.get("aux_weight") else None,  # configs from before it: none
        )
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

    def __repr__(self) -> str:
        c = self.config
        kind = "RNA-GAN (β-VAE condition)" if c["condition"] else "GAN (noise only)"
        ng = sum(p.numel() for p in self.generator.parameters()) / 1e6
        nd = sum(p.numel() for p in self.critic.parameters()) / 1e6
        return (
            f"TileGAN({kind}, {c['image_size']}px, input {c['latent_dim']}, G {ng:.3g}M, D {nd:.3g}M, "
            f"{'trained' if self.is_trained else 'untrained'})"
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_steps: int = 10_000,
        batch_size: int = 64,
        n_critic: int = 5,
        gp_lambda: float = 10.0,
        lr_g: float = 1e-3,
        lr_d: float = 4e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        ema_decay: float = 0.999,
        accelerator: str = "auto",
        devices: int | str = 1,
        strategy: str = "auto",
        precision: str | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        num_workers: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 500,
        resume: bool = True,
        max_time: float | None = None,
        seed: int = 0,
        progress_bar: bool = True,
        gp_every: int = 1,
        standing_stats: int = 32,
    ) -> TileGAN:
        """Train with WGAN-GP (per-sample gradient penalty) and an EMA copy of the generator.

        Parameters
        ----------
        max_steps
            Critic steps (the generator steps once every ``n_critic`` of them).
        batch_size, n_critic, gp_lambda
            WGAN-GP settings (λ = 10 as published).
        lr_g, lr_d, betas
            Adam, RNA-GAN's defaults.
        ema_decay
            Decay of the generator's exponential moving average (what :meth:`generate` samples from).
        accelerator, devices, strategy, precision
            Lightning settings (``strategy="ddp"`` for several GPUs: its ``find_unused_parameters``
            form is used, as a critic step leaves the generator out; each rank draws its own noise
            and batches); precision defaults to ``"bf16-mixed"`` on a GPU and ``"32-true"`` on the CPU.
            Under ``"bf16-true"`` the generator and critic train in bf16 while the EMA accumulates in
            float32; the trained model's weights are float32 whatever the precision.
        channels_last
            Channels-last memory format (default on a GPU).
        compile
            ``torch.compile`` the generator and critic.
        num_workers
            DataLoader workers (default: cores − 1, at most 16).
        checkpoint_dir, checkpoint_every
            Write a safetensors checkpoint there every ``checkpoint_every`` critic steps.
        resume
            Continue from the checkpoint in ``checkpoint_dir`` when there is one.
        max_time
            Stop after this many seconds (equal-time comparisons between models).
        seed
            Seeds weights, batches, augmentations and noise.
        progress_bar
            Show Lightning's progress bar.
        gp_every
            Compute the gradient penalty on every ``gp_every``-th critic step only, weighted by
            ``gp_every`` (lazy regularisation, as StyleGAN2 does for its R1 penalty): the penalty's
            double backward is the costliest part of a critic step. 1 (every step) is WGAN-GP as
            published.
        standing_stats
            After training, re-estimate the EMA generator's BatchNorm statistics over this many
            batches of its own activations (BigGAN's "standing statistics"); during training it
            carries the raw generator's, which belong to other weights. 0 keeps those.
        """
        if int(gp_every) < 1:
            raise ValueError(f"gp_every must be ≥ 1, got {gp_every}.")
        if int(standing_stats) < 0:
            raise ValueError(f"standing_stats must be ≥ 0 batches, got {standing_stats}.")
        if self.dataset is None:  # a loaded model keeps its weights, not its training tiles
            raise ValueError(
                f"This {type(self).__name__} was loaded from disk and has no training data: build "
                "a new one from adata and tiles to train (pass checkpoint_dir to resume a run)."
            )
        import lightning.pytorch as pl

        from ..data.loader import tile_loader
        from ._gan_training import GANTrainingPlan, SafetensorsCheckpoint
        from ._training import (
            History,
            StopAt,
            StopIfDiverged,
            ddp_with_unused_parameters,
            lightning_warnings_silenced,
            quiet_lightning,
            step_trainer,
            torch_flags_restored,
        )

        quiet_lightning()
        pl.seed_everything(seed, workers=True, verbose=False)
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        self._build()  # seeded initial weights
        start = 0
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None:
            check_model_destination(ckpt)  # a folder that is not a checkpoint fails now, not at step N
        resume_state = None
        if ckpt is not None and resume and (ckpt / "config.json").is_file():
            resume_state = load_model_files(ckpt)
            meta = resume_state[1]
            if meta.get("class") != "TileGANCheckpoint" or "opt_g" not in meta:
                raise ValueError(f"{ckpt} is not a complete TileGAN training checkpoint; pass another checkpoint_dir.")
            theirs = {**_ABSENT_MEANS, **meta["model"]}
            differ = sorted(k for k in set(theirs) | set(self.config) if not _same(theirs.get(k), self.config.get(k)))
            if differ:
                raise ValueError(
                    f"The checkpoint in {ckpt} was made for another model ({differ} differ); resume with "
                    "the same data and settings, or pass resume=False / another checkpoint_dir."
                )
            start = int(meta["step"])
            logger.info(f"Resuming {self!r} from step {start} ({ckpt}).")
        loader = tile_loader(
            self.dataset, batch_size=min(batch_size, len(self.dataset)), num_workers=num_workers, seed=seed + start
        )
        plan = GANTrainingPlan(
            self,
            n_critic=n_critic,
            gp_lambda=gp_lambda,
            gp_every=int(gp_every),
            lr_g=lr_g,
            lr_d=lr_d,
            betas=betas,
            ema_decay=ema_decay,
            channels_last=on_gpu if channels_last is None else channels_last,
            compile=compile,
            start_step=start,
            resume_state=resume_state,
            seed=seed,
        )
        history = History()
        callbacks: list[pl.Callback] = [StopIfDiverged("TileGAN"), history, StopAt(max_steps)]
        if ckpt is not None:
            callbacks.append(SafetensorsCheckpoint(self, ckpt, checkpoint_every))
        import time

        t0 = time.perf_counter()
        # Trainer(deterministic=...) sets torch's deterministic mode for the whole session when it is
        # built; give the user's session back as it was, whatever happens.
        with torch_flags_restored():
            trainer = step_trainer(
                accelerator,
                precision,
                progress_bar,
                max_time,
                on_gpu,
                devices=devices,
                strategy=ddp_with_unused_parameters(strategy, accelerator, devices),
                callbacks=callbacks,
            )
            if start < max_steps:
                with lightning_warnings_silenced():
                    trainer.fit(plan, loader)
            if standing_stats:
                self.update_ema_statistics(int(standing_stats), batch_size, seed, "cuda" if on_gpu else "cpu")
            # float32 weights whatever the training precision (bf16-true trains bf16 ones; generate() feeds float32)
        self.generator, self.critic, self.ema = (m.cpu().float() for m in (plan.generator, plan.critic, plan.ema))
        self.history = {k: v for k, v in history.history.items()}
        self.train_info = {
            "steps": int(plan.step),
            "resumed_from": start,
            "seconds": time.perf_counter() - t0,
            "batch_size": batch_size,
            "n_critic": n_critic,
            "gp_lambda": gp_lambda,
            "gp_every": int(gp_every),
            "standing_stats": int(standing_stats),
            "lr_g": lr_g,
            "lr_d": lr_d,
            "seed": seed,
            "precision": str(trainer.precision),
            "n_tiles": len(self.dataset),
        }
        self.is_trained = True
        self.global_rank = int(trainer.global_rank)  # under DDP: write files from rank 0 only
        if ckpt is not None and start < max_steps and trainer.is_global_zero:
            SafetensorsCheckpoint(self, ckpt, checkpoint_every).write(plan)
        return self

    def update_ema_statistics(
        self, n_batches: int = 32, batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        """Re-estimate the EMA generator's BatchNorm statistics from its own activations.

        What :meth:`train` does at its end (``standing_stats=``): ``n_batches`` batches of the
        training tiles' conditions, each with fresh noise, through the EMA in training mode.
        """
        from ._gan_training import ema_standing_stats

        if self.dataset is None:
            raise ValueError("This TileGAN was loaded from disk and has no training conditions to run.")
        conditions = self.dataset.condition[self.dataset.obs_rows]  # one row per tile, as training weighs units
        batch = min(batch_size, len(self.dataset))
        ema_standing_stats(self.ema, conditions, self.config, n_batches, batch, seed, device)

    # ------------------------------------------------------------------ generation
    def _conditions(self, adata: ad.AnnData) -> np.ndarray:
        c = self.config
        if c["condition"] is None:
            return np.zeros((adata.n_obs, 0), np.float32)
        return latent_condition(adata, c["rep"], c["condition_dim"], self.vae)

    @torch.no_grad()
    def generate(
        self,
        adata: ad.AnnData | np.ndarray,
        n_per_obs: int = 4,
        seed: int = 0,
        batch_size: int = 256,
        device: str | None = "auto",
        ema: bool = True,
        sink: Sink | None = None,
    ) -> np.ndarray | None:
        """Paint ``n_per_obs`` tiles per observation.

        Parameters
        ----------
        adata
            Expression units (their condition: ``obsm[rep]``, or encoded with the model's β-VAE), or
            conditions ``(n, condition_dim)`` directly.
        n_per_obs
            Tiles per unit, each with its own noise draw.
        seed
            Each tile's noise comes from ``(seed, unit, draw)``, the unit known by its obs name (by
            its row for an array or duplicated names): the same seed gives the same tile for the
            same unit and draw whatever ``batch_size`` and whatever other units are painted with it
            (up to a rounding step: the network's float arithmetic depends on the batch shape).
        batch_size, device
            Generation batches; ``"auto"`` uses a GPU when there is one. On a GPU the generator runs
            under bf16 autocast with channels-last memory, as it trains.
        ema
            Sample from the EMA generator (default) or the raw one.
        sink
            Called with ``(unit_index (m,), draw_index (m,), tiles (m, H, W, 3))`` for every batch
            instead of collecting the tiles in memory (e.g. a
            :class:`~rnapaint.models.GeneratedTileWriter`).

        Returns
        -------
        ``(n_obs, n_per_obs, H, W, 3)`` uint8, or ``None`` with a ``sink``.
        """
        cond = np.asarray(adata, np.float32) if isinstance(adata, np.ndarray) else self._conditions(adata)
        if not np.isfinite(cond).all():
            raise ValueError("The conditions hold NaN or infinite values.")
        from .._validation import check_count

        n_per_obs, batch_size = check_count(n_per_obs, "n_per_obs"), check_count(batch_size, "batch_size")
        c = self.config
        if c["condition"] is not None and (cond.ndim != 2 or cond.shape[1] != c["condition_dim"]):
            raise ValueError(f"conditions must have shape (n, {c['condition_dim']}), got {cond.shape}.")
        dev = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device in ("auto", None) else device
        )
        g = (self.ema if ema else self.generator).eval().to(dev)
        gpu = dev.type == "cuda"
        if gpu:  # as training runs: bf16 autocast, channels-last
            g.to(memory_format=torch.channels_last)
        n = len(cond)
        out = None if sink is not None else np.empty((n, n_per_obs, c["image_size"], c["image_size"], 3), np.uint8)
        flat = np.repeat(np.arange(n), n_per_obs)
        keys = unit_keys(adata, n)

        def emit(i: int, img: torch.Tensor) -> None:
            img = img.permute(0, 2, 3, 1).cpu().numpy()  # waits for the device
            idx = np.arange(i, i + len(img))
            if sink is None:
                out[idx // n_per_obs, idx % n_per_obs] = img
            else:
                sink(idx // n_per_obs, idx % n_per_obs, img)

        pending = None
        try:
            for i in range(0, len(flat), batch_size):
                rows = flat[i : i + batch_size]
                draws = np.arange(i, i + len(rows)) % n_per_obs
                gen = tile_generators(seed, keys[rows], draws)  # independent of the batching and of other units
                z = make_input(torch.from_numpy(cond[rows]), c, len(rows), gen)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
                    img = g(z.to(dev))
                img = img.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
                # The device paints this batch while the host draws the next batch's noise.
                if pending is not None:
                    emit(*pending)
                pending = (i, img)
            if pending is not None:
                emit(*pending)
        finally:  # the weights go back to the CPU (and its memory layout) whatever happened
            g.to("cpu", memory_format=torch.contiguous_format)
        return out

    # ------------------------------------------------------------------ files
    def _tensors(self) -> dict[str, torch.Tensor]:
        t: dict[str, torch.Tensor] = {}
        for prefix, m in zip(_PREFIXES, (self.generator, self.critic, self.ema), strict=True):
            t.update({prefix + k: v for k, v in _plain_state(m).items()})
        return t

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """``model.safetensors`` (generator, critic, EMA) + ``config.json`` (+ ``vae/`` when conditional)."""
        config = {
            "class": type(self).__name__,
            "rnapaint_version": __import__("rnapaint").__version__,
            "model": self.config,
            "history": self.history,
            "train_info": self.train_info,
            "is_trained": self.is_trained,
            "has_vae": self.vae is not None,
        }
        children = {"vae": self.vae.save} if self.vae is not None else None
        out = save_model_files(path, self._tensors(), config, overwrite=overwrite, children=children)
        logger.info(f"Saved {self!r} to {out}")
        return out

    @classmethod
    @refuses_incomplete_config
    def load(cls, path: str | os.PathLike) -> TileGAN:
        """Load a model saved by :meth:`save` (refuses truncated files and other classes)."""
        from .beta_vae import BetaVAE

        tensors, config = load_model_files(path)
        if config.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('class')!r} model, not a {cls.__name__}.")
        refuse_unknown_options(path, cls.__name__, config["model"], _OPTIONS)
        refuse_absurd_sizes(path, cls.__name__, config["model"])
        self = cls.__new__(cls)
        self.config = config["model"]
        self.vae = BetaVAE.load(Path(path) / "vae") if config.get("has_vae") else None
        self.adata, self.dataset = None, None
        self._build()
        try:
            for prefix, m in zip(_PREFIXES, (self.generator, self.critic, self.ema), strict=True):
                _load_plain_state(m, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the model its config describes: {e}") from e
        self.history, self.train_info = config.get("history", {}), config.get("train_info", {})
        self.is_trained = bool(config.get("is_trained", True))
        return self


def make_input(
    cond: torch.Tensor,
    config: dict[str, Any],
    n: int,
    gen: torch.Generator | list[torch.Generator] | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Generator input ``(n, latent_dim)``: condition + U(−noise, noise) (RNA-GAN), or N(0, I) (baseline).

    The condition is standardised with fixed statistics of the training units (stored in the
    config), never across the batch, so each sample keeps its own profile; the noise is drawn per
    sample, on the posterior mean before the scaling (``config["noise_units"] == "latent"``) or
    after it (``"standardised"``). Everything happens on ``gen``'s device (the condition's
    when no generator is given), so a GPU training step never waits for a copy to the host;
    ``stats`` are the (mean, std) tensors already on that device. A list of ``n`` CPU generators
    (generation) draws row ``i`` from ``gen[i]``.
    """
    per_tile = isinstance(gen, list)
    device = torch.device("cpu") if per_tile else gen.device if gen is not None else cond.device
    if config["condition"] is None:
        if per_tile:
            return randn_per_tile(gen, (config["latent_dim"],))
        return torch.randn(n, config["latent_dim"], generator=gen, device=device)
    if stats is None:
        stats = condition_stats(config, device)
    u = rand_per_tile(gen, tuple(cond.shape[1:])) if per_tile else torch.rand(cond.shape, generator=gen, device=device)
    u = u * 2.0 - 1.0
    cond = cond.to(device, torch.float32) - stats[0]
    # Configs from before "noise_units" existed were trained with standardised noise.
    if config.get("noise_units", "standardised") == "latent":
        # U(−a, a) has variance a²/3: (mean + noise) has the spread σ² + a²/3 over the training units.
        return (cond + config["noise"] * u) / torch.sqrt(stats[1] ** 2 + config["noise"] ** 2 / 3.0)
    return cond / stats[1] + config["noise"] * u


def condition_stats(config: dict[str, Any], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The training units' condition mean and std (see :class:`TileGAN`) as tensors on ``device``."""
    mean = torch.tensor(config.get("condition_mean", 0.0), dtype=torch.float32, device=device)
    std = torch.tensor(config.get("condition_std", 1.0), dtype=torch.float32, device=device)
    return mean, std


def _same(a: Any, b: Any) -> bool:
    """Config values equal, floats (and lists of them) up to rounding."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-7)
        except (TypeError, ValueError):
            return False
    return a == b


def _plain_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without torch.compile's ``_orig_mod.`` prefix (spectral norm's entries kept as they are)."""
    return {k.replace("_orig_mod.", ""): v for k, v in module.state_dict().items()}


def _load_plain_state(module: torch.nn.Module, state: dict[str, Any]) -> None:
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
