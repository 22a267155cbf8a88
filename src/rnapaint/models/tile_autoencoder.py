"""The image prior: a KL-regularised autoencoder of H&E tiles, in whose latent space generators paint.

Appearance is learned once, from crops of all the H&E there is (:class:`~rnapaint.data.TileCrops`),
not from the few tiles that have expression; a generator then only has to learn which latent a
profile calls for. The network is diffusers' ``AutoencoderKL``, so a Stable Diffusion VAE a user has
loads in its place (:meth:`TileAutoencoder.from_pretrained`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._logging import logger
from ..io.model_files import load_model_files, save_model_files
from ..nn.diffusion_unet import default_norm_groups

_PREFIX = "vae."
# Limits a config must respect before any memory is allocated (an edited or hostile file).
_MAX_CHANNELS, _MAX_LEVELS, _MAX_LATENT, _MAX_LAYERS = 4096, 8, 64, 8


def _autoencoder_kl():
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:  # pragma: no cover - diffusers is in the dev extras
        raise ImportError(
            "TileAutoencoder needs diffusers: pip install 'rnapaint[diffusion]' (or pip install diffusers)."
        ) from e
    return AutoencoderKL


def _check_vae_config(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``AutoencoderKL`` arguments in ``cfg``, or a ValueError if they are absurd or malformed."""
    init = inspect.signature(_autoencoder_kl().__init__).parameters
    args = {k: v for k, v in cfg.items() if k in init and k != "self"}
    try:
        channels = [int(c) for c in args.get("block_out_channels", (64,))]
        latent = int(args.get("latent_channels", 4))
        layers = int(args.get("layers_per_block", 1))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: the autoencoder config is malformed ({e}).") from e
    if not (
        1 <= len(channels) <= _MAX_LEVELS
        and all(1 <= c <= _MAX_CHANNELS for c in channels)
        and 1 <= latent <= _MAX_LATENT
        and 1 <= layers <= _MAX_LAYERS
    ):
        raise ValueError(
            f"{where}: the autoencoder config asks for {channels} channels, {latent} latent channels and "
            f"{layers} layers a block; rnapaint builds at most {_MAX_LEVELS} levels of ≤ {_MAX_CHANNELS} "
            f"channels, ≤ {_MAX_LATENT} latent channels, ≤ {_MAX_LAYERS} layers (an edited or damaged file?)."
        )
    for k in ("down_block_types", "up_block_types"):
        if k in args and len(args[k]) != len(channels):
            raise ValueError(f"{where}: {k} has {len(args[k])} entries for {len(channels)} levels.")
    return args


def _jsonable(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {str(k): _jsonable(v) for k, v in cfg.items() if not str(k).startswith("_")}
    if isinstance(cfg, (list, tuple)):
        return [_jsonable(v) for v in cfg]
    return cfg


class TileAutoencoder:
    """KL autoencoder of H&E tiles (diffusers ``AutoencoderKL``): uint8 tiles ↔ latents.

    ``encode`` maps tiles ``(n, H, W, 3)`` to latents ``(n, C, H/f, W/f)`` scaled to unit variance
    (Stable Diffusion's ``scaling_factor``, estimated from the training crops), ``decode`` maps them
    back. ``f = 2 ** (len(block_out_channels) − 1)``.

    Parameters
    ----------
    tile_size
        Native tile side in pixels: ``encode`` resizes tiles of another size to it (unless ``mpp`` is given).
    mpp
        Native µm/px: ``encode(tiles, mpp=...)`` rescales tiles of another resolution to it. ``None``: unknown.
    latent_channels
        Channels of the latent (4 as Stable Diffusion 1.5 / XL; 16 as SD3).
    block_out_channels
        Channels of the encoder's levels (the decoder mirrors them); three levels: down-factor 4.
    layers_per_block
        ResNet blocks a level.
    norm_num_groups
        GroupNorm groups (default: the most, up to 32, that leave ≥ 4 channels a group at every level).
    vae_config
        A whole ``AutoencoderKL`` config instead (what :meth:`from_pretrained` and :meth:`load` pass).

    Examples
    --------
    >>> ae = rp.models.TileAutoencoder(tile_size=128, mpp=1.2)
    >>> ae.train(rp.data.TileCrops([spots, "slide.svs"], size=64, mpp=1.2), max_steps=4000)
    >>> z = ae.encode(tiles)                     # (n, 4, 32, 32) float32
    >>> again = ae.decode(z)                     # (n, 128, 128, 3) uint8
    """

    def __init__(
        self,
        tile_size: int | None = 128,
        mpp: float | None = None,
        latent_channels: int = 4,
        block_out_channels: Sequence[int] = (32, 64, 128),
        layers_per_block: int = 1,
        norm_num_groups: int | None = None,
        *,
        vae_config: dict[str, Any] | None = None,
    ):
        if tile_size is not None and (isinstance(tile_size, bool) or int(tile_size) < 8):
            raise ValueError(f"tile_size must be an integer ≥ 8 px or None, got {tile_size!r}.")
        if mpp is not None and not (np.isfinite(float(mpp)) and float(mpp) > 0):
            raise ValueError(f"mpp must be a positive number of µm per pixel or None, got {mpp!r}.")
        if vae_config is None:
            channels = [int(c) for c in block_out_channels]
            vae_config = {
                "in_channels": 3,
                "out_channels": 3,
                "down_block_types": ["DownEncoderBlock2D"] * len(channels),
                "up_block_types": ["UpDecoderBlock2D"] * len(channels),
                "block_out_channels": channels,
                "layers_per_block": int(layers_per_block),
                "latent_channels": int(latent_channels),
                "norm_num_groups": int(norm_num_groups or default_norm_groups(channels)),
            }
        self.vae_config = _check_vae_config(_jsonable(dict(vae_config)), "TileAutoencoder")
        self.vae = _autoencoder_kl()(**self.vae_config)
        self.tile_size = None if tile_size is None else int(tile_size)
        self.mpp = None if mpp is None else float(mpp)
        self.scaling_factor, self.shift_factor = 1.0, 0.0
        self.history: dict[str, list[float]] = {}
        self.train_info: dict[str, Any] = {}
        self.is_trained = False
        self.source = "rnapaint"
        self._fingerprint: str | None = None
        self._said: set[tuple[int, ...]] = set()

    # ------------------------------------------------------------------ description
    @property
    def latent_channels(self) -> int:
        return int(self.vae_config.get("latent_channels", 4))

    @property
    def down_factor(self) -> int:
        """Pixels per latent position along each side."""
        return 2 ** (len(self.vae_config.get("block_out_channels", (64,))) - 1)

    def latent_shape(self, side: int | None = None) -> tuple[int, int, int]:
        """``(C, h, w)`` of the latent of a ``side``-px tile (default: the native size)."""
        s = (side or self.tile_size or 256) // self.down_factor
        return (self.latent_channels, s, s)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.vae.parameters())
        state = "trained" if self.is_trained else "untrained"
        at = f" at {self.mpp:.3g} µm/px" if self.mpp else ""
        size = f"{self.tile_size}-px tiles{at}, " if self.tile_size else ""
        return (
            f"TileAutoencoder({size}{self.latent_channels} latent channels, down-factor {self.down_factor}, "
            f"{n / 1e6:.3g}M parameters, {state}, {self.source})"
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the weights, the config and the latent scale: names the latent space a cache is in."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            meta = {"vae": self.vae_config, "scale": self.scaling_factor, "shift": self.shift_factor}
            h.update(json.dumps(meta, sort_keys=True).encode())
            for k, v in sorted(self.vae.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @staticmethod
    def _device(device: str | torch.device | None) -> torch.device:
        if device in (None, "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)

    # ------------------------------------------------------------------ training
    def train(
        self,
        crops: Any,
        max_steps: int = 4000,
        max_time: float | None = None,
        batch_size: int = 16,
        lr: float = 2e-4,
        warmup_steps: int = 100,
        ssim_weight: float = 0.5,
        kl_weight: float = 1e-6,
        disc_weight: float = 0.5,
        disc_start: int | None = None,
        disc_width: int = 32,
        disc_layers: int = 3,
        num_workers: int = 0,
        accelerator: str = "auto",
        precision: str | None = None,
        scale_crops: int = 256,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> TileAutoencoder:
        """Train on random crops: L1 + SSIM + KL, and from ``disc_start`` a PatchGAN (latent diffusion's recipe).

        Training starts from new random weights (seeded): it does not fine-tune weights loaded with
        :meth:`load` or :meth:`from_pretrained`. A model without a native µm/px takes the crops'.

        Parameters
        ----------
        crops
            A :class:`~rnapaint.data.TileCrops` (its crop size may be smaller than ``tile_size``:
            the network is convolutional), or uint8 tiles ``(n, H, W, 3)``.
        max_steps, max_time
            Stop after this many steps or seconds, whichever comes first.
        batch_size, lr, warmup_steps
            Adam (β 0.5, 0.9) for the autoencoder and the discriminator, linear warm-up.
        ssim_weight, kl_weight
            Weights of ``1 − SSIM`` and of the KL term (a sum over latent values divided by the pixels).
        disc_weight, disc_start
            Weight of the adversarial term (scaled adaptively, see the module) and the step it starts
            at (default: half of ``max_steps``); ``disc_weight=0`` trains without a discriminator.
        disc_width, disc_layers
            The :class:`~rnapaint.nn.patch_discriminator.PatchDiscriminator`'s size.
        num_workers
            Loader workers cutting crops.
        accelerator, precision
            Lightning's settings (bf16 autocast on a GPU by default).
        scale_crops
            Crops encoded after training to estimate the latent scale (1 / std, as Stable Diffusion).
        seed
            Seeds weights, crops and latent samples.
        progress_bar
            Show Lightning's progress bar.

        Returns
        -------
        ``self``, trained; ``history`` holds the losses every few steps.
        """
        import lightning.pytorch as pl

        from ..data.crops import TileCrops, crop_loader
        from ._autoencoder_training import AutoencoderTrainingPlan
        from ._training import (
            StopAt,
            StopIfDiverged,
            lightning_warnings_silenced,
            quiet_lightning,
            step_trainer,
            torch_flags_restored,
        )

        given_crops = isinstance(crops, TileCrops)
        if not given_crops:
            crops = TileCrops(
                crops, size=int(np.asarray(crops).shape[-2]), mpp=self.mpp or 1.0, source_mpp=self.mpp or 1.0
            )
        for name, v in (("max_steps", max_steps), ("batch_size", batch_size)):
            if isinstance(v, bool) or int(v) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {v!r}.")
        if crops.size < 16 or crops.size % self.down_factor:
            raise ValueError(f"crops must be a multiple of {self.down_factor} px and ≥ 16 px, got {crops.size}.")
        if disc_weight and crops.size // 2**disc_layers < 3:  # the PatchGAN's last layers need 3 px
            raise ValueError(
                f"{crops.size}-px crops are too small for a {disc_layers}-layer discriminator: use crops of at "
                f"least {3 * 2**disc_layers} px, fewer disc_layers, or disc_weight=0."
            )
        if len(crops) < batch_size:
            raise ValueError(f"an epoch of {len(crops)} crops holds no batch of {batch_size}: raise n_crops.")
        if self.mpp is None and given_crops:
            self.mpp = crops.mpp  # the model now works at the resolution it learnt
        elif self.mpp is not None and abs(crops.mpp / self.mpp - 1) > 0.01:
            logger.warning(
                f"TileAutoencoder: training on crops at {crops.mpp:.3g} µm/px, but the model's native resolution "
                f"is {self.mpp:.3g} µm/px; encode(mpp=) will rescale tiles to {self.mpp:.3g}."
            )
        options = {
            "lr": float(lr),
            "warmup_steps": int(warmup_steps),
            "ssim_weight": float(ssim_weight),
            "kl_weight": float(kl_weight),
            "disc_weight": float(disc_weight),
            "disc_start": int(max_steps // 2 if disc_start is None else disc_start),
            "disc_width": int(disc_width),
            "disc_layers": int(disc_layers),
            "log_every": 10,
        }
        quiet_lightning()
        pl.seed_everything(seed, workers=True, verbose=False)
        self.vae = _autoencoder_kl()(**self.vae_config)  # the seed alone fixes the initial weights
        plan = AutoencoderTrainingPlan(self.vae, options, seed)
        on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        loader = crop_loader(crops, batch_size=batch_size, num_workers=num_workers)
        t0 = time.perf_counter()
        with torch_flags_restored():
            trainer = step_trainer(
                accelerator,
                precision,
                progress_bar,
                max_time,
                on_gpu,
                callbacks=[StopIfDiverged("TileAutoencoder"), StopAt(max_steps)],
            )
            with lightning_warnings_silenced():
                trainer.fit(plan, loader)
        self.vae = plan.vae.cpu().float().eval()
        self._fingerprint = None
        self.history = plan.history
        self.train_info = {
            "steps": plan.step,
            "batch_size": int(batch_size),
            "crop_size": crops.size,
            "crop_mpp": crops.mpp,
            "images": len(crops.sources),
            "seed": int(seed),
            "seconds": round(time.perf_counter() - t0, 1),
            "device": "cuda" if on_gpu else "cpu",
            **{k: v for k, v in options.items() if k != "log_every"},
        }
        self._estimate_scale(crops, scale_crops, seed)
        self.is_trained = True
        logger.info(f"Trained {self!r}: {plan.step} steps in {self.train_info['seconds']:.0f} s.")
        return self

    def _estimate_scale(self, crops: Any, n: int, seed: int) -> None:
        """Stable Diffusion's latent scale: 1 / std of sampled latents of training crops."""
        x = crops.take(min(n, len(crops)), start=10**9)  # crops the training did not draw
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.cat([self._posterior(x[i : i + 64], "cpu").sample(gen) for i in range(0, len(x), 64)])
        self.shift_factor = 0.0
        self.scaling_factor = float(1.0 / z.float().std().clamp(min=1e-6))
        self._fingerprint = None

    # ------------------------------------------------------------------ inference
    def _posterior(self, tiles: np.ndarray, device: torch.device | str):
        from ._autoencoder_training import to_unit_range

        x = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).to(device)
        return self.vae.to(device).encode(to_unit_range(x)).latent_dist

    def _native(self, x: np.ndarray, mpp: float | None) -> np.ndarray:
        """Tiles resized to the native µm/px (``mpp`` given) or size (not given), in multiples of the down-factor."""
        h, w = x.shape[1:3]
        if mpp is not None and self.mpp is not None:
            scale = float(mpp) / self.mpp
        elif mpp is None and self.tile_size is not None:
            scale = self.tile_size / h
        else:
            scale = 1.0
        f = self.down_factor
        th, tw = (max(f, round(v * scale / f) * f) for v in (h, w))
        if (th, tw) == (h, w):
            return x
        why = f"{mpp:.3g} → {self.mpp:.3g} µm/px" if mpp is not None and self.mpp else "the model's native size"
        if (h, w, th, tw) not in self._said:  # once per size: a store is encoded batch by batch
            self._said.add((h, w, th, tw))
            logger.info(f"TileAutoencoder: resizing tiles from {h} × {w} to {th} × {tw} px ({why}).")
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        t = F.interpolate(t, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
        return t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    @torch.no_grad()
    def encode(
        self,
        tiles: np.ndarray,
        mpp: float | None = None,
        *,
        sample: bool = False,
        seed: int = 0,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        progress_bar: bool | None = None,
    ) -> np.ndarray:
        """Scaled latents of uint8 tiles.

        Parameters
        ----------
        tiles
            uint8 RGB ``(n, H, W, 3)`` or ``(n, k, H, W, 3)``.
        mpp
            µm/px of ``tiles``: rescaled to the model's (when the model has one; a pretrained VAE
            loaded without ``mpp`` encodes tiles as they come). Without it, tiles of another size
            than ``tile_size`` are resized to it (same field of view assumed). Either is logged.
        sample
            Draw from the posterior instead of taking its mean.
        seed
            Seeds ``sample``.
        batch_size, device, progress_bar
            Tiles a forward pass; ``None``/``"auto"``: a GPU when there is one; a bar for many batches.

        Returns
        -------
        float32 ``(n, C, h, w)`` (``(n, k, C, h, w)`` for ``(n, k, ...)`` tiles), ``(z − shift) · scale``.
        """
        from tqdm.auto import tqdm

        from .tile_encoder import check_tiles

        lead = np.shape(tiles)[:-3]
        x = self._native(check_tiles(tiles, min_side=self.down_factor), mpp)
        dev = self._device(device)
        gen = torch.Generator(device=dev).manual_seed(seed)
        chunks = []
        steps = range(0, len(x), batch_size)
        show = len(steps) > 10 if progress_bar is None else progress_bar
        self.vae.eval()
        try:
            for i in tqdm(steps, desc="encoding", disable=not show):
                post = self._posterior(x[i : i + batch_size], dev)
                z = post.sample(gen) if sample else post.mode()
                chunks.append(((z.float() - self.shift_factor) * self.scaling_factor).cpu())
        finally:
            self.vae.cpu()
        z = torch.cat(chunks).numpy()
        return z.reshape(*lead, *z.shape[1:])

    @torch.no_grad()
    def decode(
        self,
        latents: np.ndarray,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        progress_bar: bool | None = None,
    ) -> np.ndarray:
        """uint8 tiles ``(n, H, W, 3)`` of scaled latents ``(n, C, h, w)`` (``(n, k, …)`` → ``(n, k, …)``)."""
        from tqdm.auto import tqdm

        z = np.asarray(latents, dtype=np.float32)
        if z.ndim not in (4, 5) or z.shape[-3] != self.latent_channels:
            raise ValueError(f"latents must be (n, {self.latent_channels}, h, w) or (n, k, ...), got {z.shape}.")
        if not np.isfinite(z).all():
            raise ValueError("latents hold NaN or infinite values.")
        lead, z = z.shape[:-3], z.reshape(-1, *z.shape[-3:])
        dev = self._device(device)
        out = []
        steps = range(0, len(z), batch_size)
        show = len(steps) > 10 if progress_bar is None else progress_bar
        self.vae.eval()
        try:
            for i in tqdm(steps, desc="decoding", disable=not show):
                zi = torch.from_numpy(z[i : i + batch_size]).to(dev) / self.scaling_factor + self.shift_factor
                img = self.vae.to(dev).decode(zi).sample.clamp(-1, 1)
                out.append(((img + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
        finally:
            self.vae.cpu()
        tiles = torch.cat(out).numpy()
        return tiles.reshape(*lead, *tiles.shape[1:])

    def reconstruct(self, tiles: np.ndarray, mpp: float | None = None, **kwargs: Any) -> np.ndarray:
        """``decode(encode(tiles, mpp))``: uint8 tiles at the native size (``sample``/``seed`` go to ``encode``,
        the rest to both)."""
        only_encode = {k: kwargs.pop(k) for k in ("sample", "seed") if k in kwargs}
        return self.decode(self.encode(tiles, mpp, **only_encode, **kwargs), **kwargs)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (network, native size, latent scale, history)."""
        tensors = {_PREFIX + k: v for k, v in self.vae.state_dict().items()}
        config = {
            "class": type(self).__name__,
            "rnapaint_version": __import__("rnapaint").__version__,
            "model": {"tile_size": self.tile_size, "mpp": self.mpp, "vae_config": self.vae_config},
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
            "source": self.source,
            "history": self.history,
            "train_info": self.train_info,
            "is_trained": self.is_trained,
        }
        out = save_model_files(path, tensors, config, overwrite=overwrite)
        logger.info(f"Saved {self!r} to {out}")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> TileAutoencoder:
        """Load an autoencoder saved by :meth:`save`.

        Raises
        ------
        ValueError
            If the files are missing, truncated or corrupted, hold another class, describe an absurd
            network, or hold weights that do not fit it or are not finite.
        """
        tensors, config = load_model_files(path)
        if config.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('class')!r} model, not a {cls.__name__}.")
        try:
            m = config["model"]
            self = cls(m["tile_size"], m["mpp"], vae_config=_check_vae_config(m["vae_config"], str(path)))
            self.scaling_factor = float(config["scaling_factor"])
            self.shift_factor = float(config.get("shift_factor", 0.0))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: config.json does not describe a {cls.__name__} ({e!r}).") from e
        if not (math.isfinite(self.scaling_factor) and self.scaling_factor > 0 and math.isfinite(self.shift_factor)):
            raise ValueError(f"{path}: config.json holds a latent scale of {self.scaling_factor} (not finite > 0).")
        state = {k[len(_PREFIX) :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(_PREFIX)}
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"{path}: the weights hold NaN or infinite values ({bad[0]}, …): the model diverged.")
        try:
            self.vae.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the network its config describes: {e}") from e
        self.vae.eval()
        self.history, self.train_info = config.get("history", {}), config.get("train_info", {})
        self.is_trained, self.source = bool(config.get("is_trained", True)), str(config.get("source", "rnapaint"))
        return self

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        tile_size: int | None = None,
        mpp: float | None = None,
        subfolder: str | None = None,
    ) -> TileAutoencoder:
        """Load a diffusers ``AutoencoderKL`` folder — e.g. the Stable Diffusion 1.5 / XL (4 channels) or SD3
        (16 channels) VAE — from a local path (or a hub id where the network allows), safetensors only.

        Parameters
        ----------
        path
            The folder holding ``config.json`` + ``diffusion_pytorch_model.safetensors`` (or a pipeline
            folder with ``subfolder="vae"``).
        tile_size, mpp
            The native size and µm/px to resize tiles to in :meth:`encode` (default: none, tiles are
            encoded as they come, in multiples of the down-factor).
        subfolder
            The VAE's folder inside ``path``.

        Raises
        ------
        ValueError
            If the folder holds another class than ``AutoencoderKL``, or its weights are missing,
            truncated or pickled (``.bin`` files are not loaded: they can run code).
        """
        AutoencoderKL = _autoencoder_kl()
        folder = Path(path) / (subfolder or "")
        if folder.is_dir():
            cfg_file = folder / "config.json"
            try:
                cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{folder} holds no readable diffusers config.json ({e}).") from e
            kind = cfg.get("_class_name") if isinstance(cfg, dict) else None
            if kind != "AutoencoderKL":
                raise ValueError(f"{folder} holds a diffusers {kind!r}, not an AutoencoderKL.")
            _check_vae_config(cfg, str(folder))
        try:
            vae = AutoencoderKL.from_pretrained(str(path), subfolder=subfolder, use_safetensors=True)
        except Exception as e:  # diffusers raises OSError, EnvironmentError, SafetensorError…
            raise ValueError(f"cannot load an AutoencoderKL from {path}: {type(e).__name__}: {e}") from e
        self = cls(tile_size, mpp, vae_config=dict(vae.config))
        self.vae = vae.float().eval()
        self.scaling_factor = float(vae.config.get("scaling_factor") or 1.0)
        self.shift_factor = float(vae.config.get("shift_factor") or 0.0)
        self.is_trained, self.source = True, f"diffusers:{path}"
        return self
