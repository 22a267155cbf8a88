"""RNA-CDM's generator: one cascaded pixel-space diffusion model conditioned on expression alone.

A base stage denoises ``base_size`` images (64 px by default) given the expression condition; a
super-resolution stage paints the full tile (256 px) given the same condition and the base image
upsampled. Both are diffusers ``UNet2DConditionModel`` networks (:class:`rnapaint.nn.ConditionalUNet`)
that see the condition twice: as cross-attention tokens and as an offset of the timestep embedding.
The condition is dropped (replaced by a learned null condition) for a fraction of the training
samples so that sampling can use classifier-free guidance; sampling uses diffusers' DDPM, DDIM or
DPM-Solver++ (ODE or SDE) schedulers, chosen at generation time.

Nothing about groups (section, patient, tissue) is given to the model: one model serves every
group, and the expression is its only input — RNA-CDM's multi-cancer claim.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from .._logging import logger
from ..io.model_files import check_model_destination, load_model_files, save_model_files
from ._config_errors import refuse_absurd_sizes, refuse_unknown_options, refuses_incomplete_config
from ._latent_condition import latent_condition
from ._seeding import randn_per_tile, tile_generators, unit_keys
from .generated_store import Sink

STAGES = ("base", "sr")
SAMPLERS = ("ddpm", "ddim", "dpm++", "dpm++sde")
# Every top-level option of a CascadedDiffusion config; load refuses others (stage options are checked
# by the UNet's own signature).
_OPTIONS = frozenset(
    {
        *("condition", "rep", "genes", "image_size", "base_size", "prediction", "cond_drop"),
        *("num_train_timesteps", "beta_schedule", "aug_max", "condition_dim", "condition_mean"),
        *("condition_std", "base", "sr", "head_dim_is_head_size"),
    }
)
BASE_DEFAULTS: dict[str, Any] = {
    "channels": [128, 256, 384, 512],
    "attention": [False, True, True, True],
    "layers_per_block": 2,
    "n_tokens": 8,
    "token_dim": 256,
    "hidden": 512,
    "head_dim": 32,
}
SR_DEFAULTS: dict[str, Any] = {
    "channels": [64, 128, 256, 384],
    "attention": [False, False, False, True],
    "layers_per_block": 2,
    "n_tokens": 8,
    "token_dim": 256,
    "hidden": 512,
    "head_dim": 32,
}


class CascadedDiffusion:
    """Expression → H&E tiles with a cascade of conditional diffusion models (RNA-CDM).

    Parameters
    ----------
    adata
        Expression units. With ``condition="vae"`` the condition is ``adata.obsm[rep]`` (β-VAE
        posterior means from :func:`rnapaint.tl.vae`, or computed with ``vae``); with
        ``condition="expression"`` it is ``adata.X`` (z-scored genes) and a learned encoder of the
        profile is trained with the denoisers.
    tiles
        A :class:`~rnapaint.data.TileStore` (or path) whose units are obs of ``adata``, or an array
        ``(n_obs, k, H, W, 3)`` uint8 aligned with ``adata``.
    condition
        ``"vae"`` or ``"expression"``.
    vae
        The :class:`~rnapaint.models.BetaVAE` (or its path) for ``condition="vae"``; saved with the
        model so new profiles can be painted from expression alone.
    rep
        obsm key of the β-VAE latent.
    units
        obs names to train on (e.g. the training split); default all units with tiles.
    base_size
        Side of the base stage's images. When the tiles are no larger, the cascade has one stage.
    prediction
        ``"epsilon"`` or ``"v_prediction"`` (the network's target).
    base, sr
        Network settings of each stage, merged into the defaults (:data:`BASE_DEFAULTS`,
        :data:`SR_DEFAULTS`; keys of :class:`rnapaint.nn.ConditionalUNet`: ``channels``,
        ``attention``, ``layers_per_block``, ``n_tokens``, ``token_dim``, ``hidden``, ``head_dim``,
        ``norm_groups``).
    cond_drop
        Probability of training a sample without its condition (classifier-free guidance).
    num_train_timesteps, beta_schedule
        The diffusion's noise schedule (cosine, ``"squaredcos_cap_v2"``, suits pixel space).
    aug_max
        Super-resolution stage: the low-resolution input is noised to a level drawn from
        ``[0, aug_max)`` timesteps in training (noise-conditioning augmentation).
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
        condition: str = "vae",
        vae: Any = None,
        rep: str = "X_vae",
        units=None,
        base_size: int = 64,
        prediction: str = "v_prediction",
        base: dict[str, Any] | None = None,
        sr: dict[str, Any] | None = None,
        cond_drop: float = 0.1,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        aug_max: int = 250,
        augment: Any = "dihedral",
    ):
        from ..data.augment import generator_augment
        from ..data.paired import PairedTiles
        from .beta_vae import BetaVAE

        if condition not in ("vae", "expression"):
            raise ValueError(f"condition must be 'vae' or 'expression', got {condition!r}.")
        if prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', got {prediction!r}.")
        if not 0.0 <= cond_drop < 1.0:
            raise ValueError(f"cond_drop must be in [0, 1), got {cond_drop}.")
        if not 1 <= aug_max <= num_train_timesteps:
            raise ValueError(
                f"aug_max must be in [1, num_train_timesteps={num_train_timesteps}] (levels [0, aug_max) are "
                f"drawn), got {aug_max}."
            )
        if isinstance(vae, (str, os.PathLike)):
            vae = BetaVAE.load(vae)
        self.vae = vae if condition == "vae" else None
        if condition == "vae" and rep not in adata.obsm:
            if vae is None:
                raise ValueError(f"adata.obsm has no {rep!r}: run rp.tl.vae(adata) or pass vae=.")
            adata = adata.copy()
            adata.obsm[rep] = vae.get_latent(adata)
        self.dataset = PairedTiles(
            tiles,
            adata,
            rep=rep if condition == "vae" else None,
            units=units,
            augment=generator_augment(augment),
            augment_on="device",
        )
        size = self.dataset.tile_size
        base_size = min(int(base_size), size)
        if size % base_size:
            raise ValueError(f"The tile size {size} is not a multiple of base_size {base_size}.")
        cond_dim = int(self.dataset.condition.shape[1])
        train_cond = self.dataset.condition[np.unique(self.dataset.obs_rows)].double()
        # Standardise each condition dimension with fixed statistics of the training units, never across
        # a batch (which would cancel the profile); collapsed dimensions stay quiet (std floor).
        std = train_cond.std(0, unbiased=False)
        std = torch.nan_to_num(std, nan=1.0).clamp_min(max(1e-6, 0.01 * float(std.max())))
        self.config: dict[str, Any] = {
            "condition": condition,
            "rep": rep if condition == "vae" else None,
            "genes": list(map(str, adata.var_names)) if condition == "expression" else None,
            "image_size": size,
            "base_size": base_size,
            "prediction": prediction,
            "cond_drop": float(cond_drop),
            "num_train_timesteps": int(num_train_timesteps),
            "beta_schedule": beta_schedule,
            "aug_max": int(aug_max),
            "condition_dim": cond_dim,
            "condition_mean": train_cond.mean(0).float().tolist(),
            "condition_std": std.float().tolist(),
            "base": _with_norm_groups({**BASE_DEFAULTS, **(base or {})}),
            "sr": _with_norm_groups({**SR_DEFAULTS, **(sr or {})}) if size > base_size else None,
            # Models saved before this key took head_dim as the number of attention heads.
            "head_dim_is_head_size": True,
        }
        self._build()
        self.history: dict[str, dict[str, list[float]]] = {}
        self.train_info: dict[str, dict[str, Any]] = {}
        self.is_trained = False
        self.global_rank = 0

    # ------------------------------------------------------------------ structure
    @property
    def stages(self) -> tuple[str, ...]:
        """The stages of this cascade: ``("base",)`` or ``("base", "sr")``."""
        return STAGES if self.config["sr"] is not None else STAGES[:1]

    def _build(self) -> None:
        from ..nn.diffusion_unet import ConditionalUNet

        c = self.config
        self.nets: dict[str, torch.nn.Module] = {}
        self.ema: dict[str, torch.nn.Module] = {}
        for stage in self.stages:
            size = c["base_size"] if stage == "base" else c["image_size"]
            net = ConditionalUNet(size, c["condition_dim"], low_res=stage == "sr", **c[stage])
            self.nets[stage] = net
            self.ema[stage] = copy.deepcopy(net).eval().requires_grad_(False)

    def noise_scheduler(self, sampler: str = "ddpm"):
        """The training noise schedule as a diffusers scheduler of the given kind."""
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

        c = self.config
        # "trailing" spacing starts sampling at the last training timestep (pure noise) for every
        # sampler and step count; diffusers' default "leading" spacing starts at
        # (num_train_timesteps // steps) · (steps − 1), e.g. t = 960 of 1000 with 25 steps, where the
        # image still holds signal that the sampler's pure-noise start does not have.
        ddpm = DDPMScheduler(
            num_train_timesteps=c["num_train_timesteps"],
            beta_schedule=c["beta_schedule"],
            prediction_type=c["prediction"],
            clip_sample=True,
            timestep_spacing="trailing",
        )
        if sampler == "ddpm":
            return ddpm
        if sampler == "ddim":
            return DDIMScheduler.from_config(ddpm.config)
        if sampler in ("dpm++", "dpmsolver++", "dpm++sde"):
            # Dynamic thresholding keeps its data predictions in the pixel range (Imagen): without it the
            # first steps at the cosine schedule's end (signal ≈ 0) amplify errors into saturated noise.
            # The SDE variant adds fresh noise each step. On the toy set (benchmarks/cdm_options.py) its
            # tiles are smoother than the ODE solver's, but their nuclei are further from real ones.
            return DPMSolverMultistepScheduler.from_config(
                ddpm.config,
                algorithm_type="sde-dpmsolver++" if sampler == "dpm++sde" else "dpmsolver++",
                timestep_spacing="trailing",
                thresholding=True,
                sample_max_value=1.0,
            )
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")

    def __repr__(self) -> str:
        c = self.config
        parts = []
        for stage in self.stages:
            n = sum(p.numel() for p in self.nets[stage].parameters()) / 1e6
            size = c["base_size"] if stage == "base" else c["image_size"]
            parts.append(f"{stage} {size}px {n:.3g}M")
        return (
            f"CascadedDiffusion({c['condition']} condition, {', '.join(parts)}, {c['prediction']}, "
            f"{'trained' if self.is_trained else 'untrained'})"
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_steps: int | dict[str, int] = 10_000,
        batch_size: int | dict[str, int] = 64,
        stages: tuple[str, ...] | None = None,
        lr: float = 2e-4,
        warmup_steps: int = 500,
        weight_decay: float = 0.0,
        ema_decay: float = 0.9999,
        accelerator: str = "auto",
        devices: int | str = 1,
        strategy: str = "auto",
        precision: str | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        num_workers: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1000,
        resume: bool = True,
        max_time: float | dict[str, float] | None = None,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> CascadedDiffusion:
        """Train the stages one after the other (they are independent given the real tiles).

        Parameters
        ----------
        max_steps, batch_size, max_time
            Per stage: one value for all, or a dict ``{"base": ..., "sr": ...}``. A single
            ``max_time`` (seconds) is split evenly between the stages trained.
        stages
            Stages to train (default all of this cascade's).
        lr, warmup_steps, weight_decay
            AdamW (fused on a GPU) with linear warm-up.
        ema_decay
            Highest decay of the EMA weights (with warm-up) that :meth:`generate` samples from.
        accelerator, devices, strategy, precision
            Lightning settings (``strategy="ddp"`` for several GPUs; each rank draws its own
            batches, timesteps and noise); precision defaults to
            ``"bf16-mixed"`` on a GPU and ``"32-true"`` on the CPU. Under ``"bf16-true"`` the network
            trains in bf16 while the EMA accumulates in float32; the trained model's weights are
            float32 whatever the precision.
        channels_last
            Channels-last memory format (default on a GPU).
        compile
            ``torch.compile`` the network.
        num_workers
            DataLoader workers (default: cores − 1, at most 16).
        checkpoint_dir, checkpoint_every, resume
            Write a safetensors checkpoint per stage under ``checkpoint_dir/<stage>`` every
            ``checkpoint_every`` steps, and continue from it when ``resume``.
        seed
            Seeds weights, batches, augmentations, noise and timesteps.
        progress_bar
            Show Lightning's progress bar.
        """
        import time

        if self.dataset is None:  # a loaded model keeps its weights, not its training tiles
            raise ValueError(
                f"This {type(self).__name__} was loaded from disk and has no training data: build "
                "a new one from adata and tiles to train (pass checkpoint_dir to resume a run)."
            )
        import lightning.pytorch as pl

        from ..data.loader import tile_loader
        from ._diffusion_training import DiffusionCheckpoint, DiffusionTrainingPlan
        from ._training import (
            History,
            StopAt,
            StopIfDiverged,
            lightning_warnings_silenced,
            quiet_lightning,
            step_trainer,
            torch_flags_restored,
        )

        stages = tuple(stages or self.stages)
        unknown = set(stages) - set(self.stages)
        if unknown:
            raise ValueError(f"This cascade has stages {self.stages}, not {sorted(unknown)}.")

        def per_stage(v, stage, split=False):
            if isinstance(v, dict):
                return v.get(stage)
            return v / len(stages) if split and v is not None else v

        for stage in stages if checkpoint_dir is not None else ():
            check_model_destination(Path(checkpoint_dir) / stage)  # fails now, not after the base stage
        quiet_lightning()
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        for stage in stages:
            pl.seed_everything(seed + STAGES.index(stage), workers=True, verbose=False)
            from ..nn.diffusion_unet import ConditionalUNet

            c = self.config
            size = c["base_size"] if stage == "base" else c["image_size"]
            self.nets[stage] = ConditionalUNet(size, c["condition_dim"], low_res=stage == "sr", **c[stage])
            steps, bs = int(per_stage(max_steps, stage)), int(per_stage(batch_size, stage))
            seconds = per_stage(max_time, stage, split=True)
            ckpt = Path(checkpoint_dir) / stage if checkpoint_dir is not None else None
            start, resume_state = 0, None
            if ckpt is not None and resume and (ckpt / "config.json").is_file():
                resume_state = load_model_files(ckpt)
                meta = resume_state[1]
                if meta.get("class") != "CascadedDiffusionCheckpoint" or "opt" not in meta:
                    raise ValueError(
                        f"{ckpt} is not a complete CascadedDiffusion training checkpoint; pass another checkpoint_dir."
                    )
                if meta["model"] != _jsonable(self.config):
                    differ = sorted(
                        k
                        for k in set(meta["model"]) | set(self.config)
                        if meta["model"].get(k) != _jsonable(self.config).get(k)
                    )
                    raise ValueError(
                        f"The checkpoint in {ckpt} was made for another model ({differ} differ); resume "
                        "with the same data and settings, or pass resume=False / another checkpoint_dir."
                    )
                start = int(meta["step"])
                logger.info(f"Resuming the {stage} stage from step {start} ({ckpt}).")
            plan = DiffusionTrainingPlan(
                self,
                stage,
                lr=lr,
                warmup_steps=warmup_steps,
                weight_decay=weight_decay,
                ema_decay=ema_decay,
                channels_last=on_gpu if channels_last is None else channels_last,
                compile=compile,
                start_step=start,
                resume_state=resume_state,
                seed=seed + STAGES.index(stage),
            )
            history = History()
            callbacks: list[pl.Callback] = [
                StopIfDiverged(f"CascadedDiffusion ({stage} stage)"),
                history,
                StopAt(steps),
            ]
            if ckpt is not None:
                callbacks.append(DiffusionCheckpoint(ckpt, checkpoint_every))
            loader = tile_loader(
                self.dataset, batch_size=min(bs, len(self.dataset)), num_workers=num_workers, seed=seed + start
            )
            t0 = time.perf_counter()
            # Trainer(deterministic=...) sets torch's deterministic mode for the whole session when it is
            # built; give the user's session back as it was, whatever happens.
            with torch_flags_restored():
                trainer = step_trainer(
                    accelerator,
                    precision,
                    progress_bar,
                    seconds,
                    on_gpu,
                    devices=devices,
                    strategy=strategy,
                    callbacks=callbacks,
                )
                if start < steps:
                    with lightning_warnings_silenced():
                        trainer.fit(plan, loader)
            # float32 weights whatever the training precision (bf16-true trains bf16 ones; the EMA is float32)
            self.nets[stage] = plan.net.cpu().float().to(memory_format=torch.contiguous_format)
            self.ema[stage] = copy.deepcopy(self.nets[stage]).eval().requires_grad_(False)
            plan.ema.copy_to(self.ema[stage].parameters())
            self.ema[stage].cpu()
            self.history[stage] = dict(history.history)
            self.train_info[stage] = {
                "steps": int(plan.step),
                "resumed_from": start,
                "seconds": time.perf_counter() - t0,
                "batch_size": bs,
                "lr": lr,
                "seed": seed,
                "precision": str(trainer.precision),
                "n_tiles": len(self.dataset),
            }
            self.global_rank = int(trainer.global_rank)  # under DDP: write files from rank 0 only
            if ckpt is not None and start < steps and trainer.is_global_zero:
                DiffusionCheckpoint(ckpt, checkpoint_every).write(plan)
        self.is_trained = all(s in self.train_info for s in self.stages)
        return self

    # ------------------------------------------------------------------ generation
    def _conditions(self, adata: ad.AnnData) -> np.ndarray:
        c = self.config
        if c["condition"] == "expression":
            genes = c["genes"]
            missing = [g for g in genes if g not in adata.var_names]
            if missing:
                raise ValueError(
                    f"adata lacks {len(missing)} of the model's {len(genes)} genes (e.g. {missing[:3]}); "
                    "align them with rp.pp.align_genes(adata, genes) first."
                )
            x = adata[:, genes].X
            x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
            return np.asarray(x, np.float32)
        return latent_condition(adata, c["rep"], c["condition_dim"], self.vae)

    @torch.no_grad()
    def generate(
        self,
        adata: ad.AnnData | np.ndarray,
        n_per_obs: int = 4,
        seed: int = 0,
        batch_size: int = 64,
        sampler: str = "dpm++",
        steps: int = 25,
        guidance_scale: float = 2.0,
        sr_steps: int | None = None,
        sr_guidance_scale: float | None = None,
        sr_noise_level: int | None = None,
        device: str | None = "auto",
        ema: bool = True,
        return_low_res: bool = False,
        progress_bar: bool = True,
        sink: Sink | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
        """Paint ``n_per_obs`` tiles per observation through the cascade.

        Parameters
        ----------
        adata
            Expression units (measured, synthetic, shifted or enriched profiles), or conditions
            ``(n, condition_dim)`` directly.
        n_per_obs
            Tiles per unit, each from its own noise.
        seed
            Each tile's noise comes from ``(seed, unit, draw)``, the unit known by its obs name (by
            its row for an array or duplicated names): the same seed and settings give the same tile
            for the same unit and draw whatever ``batch_size`` and whatever other units are painted
            with it (up to a rounding step: the network's float arithmetic depends on the batch shape).
        batch_size
            Units × draws denoised at once.
        sampler
            ``"ddpm"``, ``"ddim"`` (deterministic, η = 0), ``"dpm++"`` (DPM-Solver++ 2M, deterministic)
            or ``"dpm++sde"`` (its stochastic variant, SDE-DPM-Solver++ 2M: fresh noise each step from
            the tile's own generator, so still reproducible per seed).
        steps, sr_steps
            Denoising steps of the base and super-resolution stages (``sr_steps`` defaults to ``steps``).
        guidance_scale, sr_guidance_scale
            Classifier-free guidance ``w``: the prediction is ``uncond + w · (cond − uncond)``, so
            ``w = 0`` ignores the expression, ``w = 1`` is the plain conditional model and ``w > 1``
            follows the expression more strongly.
        sr_noise_level
            Noise-augmentation timestep applied to the upsampled base image before the
            super-resolution stage. The stage was trained on levels in ``[0, aug_max)`` (the model's
            ``aug_max``), so the level must lie there (a ValueError otherwise); default
            ``min(100, aug_max − 1)``.
        device
            ``"auto"`` uses a GPU when there is one.
        ema
            Sample from the EMA weights (default) or the raw ones.
        return_low_res
            Also return the base stage's images.
        progress_bar
            Show a progress bar over batches.
        sink
            Called with ``(unit_index (m,), draw_index (m,), tiles (m, H, W, 3))`` for every batch
            instead of collecting the tiles in memory (e.g. a
            :class:`~rnapaint.models.GeneratedTileWriter`).

        Returns
        -------
        ``(n_obs, n_per_obs, H, W, 3)`` uint8 (and the base images ``(n_obs, n_per_obs, b, b, 3)``),
        or ``None`` with a ``sink``.
        """
        from tqdm.auto import tqdm

        from ._diffusion_training import resize

        if not self.is_trained:
            raise ValueError("The model is not trained.")
        c = self.config
        for name, w in (("guidance_scale", guidance_scale), ("sr_guidance_scale", sr_guidance_scale)):
            if c["cond_drop"] == 0 and w is not None and w != 1:
                raise ValueError(
                    f"{name}={w}, but this model was trained with cond_drop=0: its unconditional prediction "
                    "never trained, so guidance would push toward an arbitrary output. Pass "
                    f"{name}=1 (the plain conditional model), or train with cond_drop > 0."
                )
        cond = np.asarray(adata, np.float32) if isinstance(adata, np.ndarray) else self._conditions(adata)
        if cond.ndim != 2 or cond.shape[1] != c["condition_dim"]:
            raise ValueError(f"conditions must have shape (n, {c['condition_dim']}), got {cond.shape}.")
        if not np.isfinite(cond).all():
            raise ValueError("The conditions hold NaN or infinite values.")
        if sampler not in SAMPLERS and sampler != "dpmsolver++":
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
        if steps < 1 or (sr_steps is not None and sr_steps < 1):
            raise ValueError("steps must be ≥ 1.")
        from .._validation import check_count

        try:
            n_per_obs, batch_size = check_count(n_per_obs, "n_per_obs"), check_count(batch_size, "batch_size")
        except ValueError as e:
            raise ValueError(
                f"batch_size and n_per_obs must be ≥ 1 (whole numbers), got {batch_size!r} and {n_per_obs!r}."
            ) from e
        if sink is not None and return_low_res:
            raise ValueError("return_low_res needs the tiles in memory; it cannot be combined with a sink.")
        aug_levels = max(1, min(int(c["aug_max"]), int(c["num_train_timesteps"])))  # as in training: [0, aug_max)
        if sr_noise_level is None:
            sr_noise_level = min(100, aug_levels - 1)
        if not 0 <= int(sr_noise_level) < aug_levels or int(sr_noise_level) != sr_noise_level:
            raise ValueError(
                f"sr_noise_level must be an integer timestep in [0, {aug_levels}): the super-resolution stage "
                f"was trained on noise levels below aug_max={c['aug_max']}, got {sr_noise_level!r}."
            )
        dev = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device in ("auto", None) else device
        )
        nets = {s: (self.ema if ema else self.nets)[s].eval().to(dev) for s in self.stages}
        mean = torch.tensor(c["condition_mean"], device=dev)
        std = torch.tensor(c["condition_std"], device=dev)
        n, size, b = len(cond), c["image_size"], c["base_size"]
        out = None if sink is not None else np.empty((n, n_per_obs, size, size, 3), np.uint8)
        low_out = np.empty((n, n_per_obs, b, b, 3), np.uint8) if return_low_res else None
        flat = np.repeat(np.arange(n), n_per_obs)
        keys = unit_keys(adata, n)
        on_gpu = dev.type == "cuda"
        autocast = torch.autocast("cuda", torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
        try:
            for i in tqdm(range(0, len(flat), batch_size), desc="cdm", disable=not progress_bar):
                rows = flat[i : i + batch_size]
                cb = (torch.from_numpy(cond[rows]).to(dev) - mean) / std
                draws = np.arange(i, i + len(rows)) % n_per_obs
                gen = tile_generators(seed, keys[rows], draws)  # independent of the batching and of other units
                with autocast:
                    x = self._sample(nets["base"], cb, b, sampler, steps, guidance_scale, gen, dev)
                    low = x
                    if "sr" in self.stages:
                        up = resize(x.clamp(-1, 1), size)
                        sched = self.noise_scheduler()
                        aug_t = torch.full((len(rows),), int(sr_noise_level), device=dev, dtype=torch.long)
                        noise = randn_per_tile(gen, tuple(up.shape[1:])).to(dev)
                        up = sched.add_noise(up, noise, aug_t)
                        x = self._sample(
                            nets["sr"],
                            cb,
                            size,
                            sampler,
                            sr_steps or steps,
                            guidance_scale if sr_guidance_scale is None else sr_guidance_scale,
                            gen,
                            dev,
                            low_res=up,
                            aug_t=aug_t,
                        )
                idx = np.arange(i, i + len(rows))
                if sink is None:
                    out[idx // n_per_obs, idx % n_per_obs] = _to_uint8(x)
                else:
                    sink(idx // n_per_obs, idx % n_per_obs, _to_uint8(x))
                if low_out is not None:
                    low_out[idx // n_per_obs, idx % n_per_obs] = _to_uint8(low)
        finally:
            for net in nets.values():
                net.cpu()
        return (out, low_out) if return_low_res else out

    def _sample(
        self,
        net: torch.nn.Module,
        cond: torch.Tensor,
        size: int,
        sampler: str,
        steps: int,
        w: float,
        gen: list[torch.Generator],
        dev: torch.device,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """One stage's reverse process with classifier-free guidance ``w`` (see :meth:`generate`)."""
        sched = self.noise_scheduler(sampler)
        sched.set_timesteps(steps, device=dev)
        n = len(cond)
        x = randn_per_tile(gen, (3, size, size)).to(dev) * sched.init_noise_sigma
        guided = w != 1.0
        if guided:  # one forward pass for the conditional and unconditional halves
            cond = torch.cat([cond, cond])
            drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(dev)
            extra = {k: torch.cat([v, v]) for k, v in extra.items()}
        else:
            drop = None
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t)
            tt = t.expand(2 * n if guided else n).to(dev)
            pred = net(torch.cat([inp, inp]) if guided else inp, tt, cond, drop, **extra).float()
            if guided:
                c, u = pred.chunk(2)
                pred = u + w * (c - u)
            x = sched.step(pred, t, x, generator=gen).prev_sample  # DDPM, SDE: per-tile noise from the list
        return x.float()

    # ------------------------------------------------------------------ files
    def _tensors(self) -> dict[str, torch.Tensor]:
        t: dict[str, torch.Tensor] = {}
        for stage in self.stages:
            t.update({f"{stage}.net.{k}": v for k, v in self.nets[stage].state_dict().items()})
            t.update({f"{stage}.ema.{k}": v for k, v in self.ema[stage].state_dict().items()})
        return t

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """``model.safetensors`` (each stage's weights and EMA weights) + ``config.json`` (+ ``vae/``)."""
        config = {
            "class": type(self).__name__,
            "rnapaint_version": __import__("rnapaint").__version__,
            "model": _jsonable(self.config),
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
    def load(cls, path: str | os.PathLike) -> CascadedDiffusion:
        """Load a model saved by :meth:`save` (refuses truncated files and other classes)."""
        from .beta_vae import BetaVAE

        tensors, config = load_model_files(path)
        if config.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('class')!r} model, not a {cls.__name__}.")
        refuse_unknown_options(path, cls.__name__, config["model"], _OPTIONS)
        refuse_absurd_sizes(path, cls.__name__, config["model"])
        if not config["model"].get("head_dim_is_head_size"):
            raise ValueError(
                f"{path} was saved by an rnapaint (before 2026-11-24) whose diffusion UNet took head_dim as the "
                "number of attention heads: its weights would load into another attention layout and paint "
                "other tiles. Train the model again with this version."
            )
        self = cls.__new__(cls)
        self.config = config["model"]
        for stage in STAGES:
            settings = self.config.get(stage)
            if isinstance(settings, dict) and "norm_groups" not in settings and "channels" in settings:
                # Saved before the option existed: GroupNorm had min(32, channels[0]) groups.
                settings["norm_groups"] = min(32, int(settings["channels"][0]))
        self.vae = BetaVAE.load(Path(path) / "vae") if config.get("has_vae") else None
        self.dataset = None
        self._build()
        try:
            for stage in self.stages:
                for kind, modules in (("net", self.nets), ("ema", self.ema)):
                    prefix = f"{stage}.{kind}."
                    modules[stage].load_state_dict(
                        {k[len(prefix) :]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith(prefix)},
                        strict=True,
                    )
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the model its config describes: {e}") from e
        self.history, self.train_info = config.get("history", {}), config.get("train_info", {})
        self.is_trained = bool(config.get("is_trained", True))
        return self


def _with_norm_groups(settings: dict[str, Any]) -> dict[str, Any]:
    """A stage's network settings with its GroupNorm groups written out, so that its config says them."""
    from ..nn.diffusion_unet import default_norm_groups

    if settings.get("norm_groups") is None:
        settings = {**settings, "norm_groups": default_norm_groups(settings["channels"])}
    return settings


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(n, 3, h, w)`` in [−1, 1] → ``(n, h, w, 3)`` uint8."""
    return x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists), for comparisons with a checkpoint's."""
    import json

    return json.loads(json.dumps(config))
