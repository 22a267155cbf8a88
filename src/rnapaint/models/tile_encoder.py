"""A self-supervised tile encoder (SimCLR) for evaluating and pretraining on tiles, real or generated.

RNA-GAN and RNA-CDM pretrain a SimCLR encoder on synthetic tiles and fine-tune it on real labelled
tiles; the same encoder also gives domain-specific features for FID (``feature_module``), in
place of an ImageNet Inception that has never seen H&E.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._logging import logger
from ..data.augment import TileAugment, apply_colour, colour_parameters
from ..io.model_files import load_model_files, save_model_files
from ..nn.resnet import ResNetEncoder

_MODULE_PREFIX = "module."
_MIN_SIDE = 8
_GPU_DATA_BYTES = 4 << 30  # training tiles up to this size live on the GPU (20k tiles of 256 px = 3.9 GB)
# SimCLR's colour jitter for H&E (Chen et al. 2020 use 0.8/0.8/0.8/0.2; stains vary less than photos).
_DEFAULT_AUGMENT = {"flips": True, "rot90": True, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.05}


def check_tiles(tiles: np.ndarray, what: str = "tiles", min_side: int = _MIN_SIDE) -> np.ndarray:
    """Return ``tiles`` as ``(m, H, W, 3)`` uint8 (``(n, k, ...)`` flattened), or raise a ValueError.

    Parameters
    ----------
    tiles
        RGB tiles ``(n, H, W, 3)`` or ``(n, k, H, W, 3)``, uint8.
    what
        Name of the argument in error messages.
    min_side
        Smallest tile side accepted.
    """
    x = np.asarray(tiles)
    if x.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 RGB (0–255), got dtype {x.dtype}; convert float tiles in [0, 1] with "
            "(x * 255).round().astype(np.uint8)."
        )
    if x.ndim not in (4, 5) or x.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (n, H, W, 3) or (n, k, H, W, 3), got {x.shape}.")
    if min(x.shape[-3:-1]) < min_side:
        raise ValueError(f"{what} must be at least {min_side} px a side, got {x.shape[-3]} × {x.shape[-2]}.")
    if x.shape[0] == 0 or (x.ndim == 5 and x.shape[1] == 0):
        raise ValueError(f"{what} holds no tiles (shape {x.shape}).")
    return x.reshape(-1, *x.shape[-3:])


class TileFeatures(nn.Module):
    """A frozen-able feature extractor: images ``(N, 3, H, W)`` → features ``(N, num_features)``.

    Accepts uint8 in [0, 255] (what torchmetrics' ``FrechetInceptionDistance(normalize=False)``
    passes) or float in [0, 1] (``normalize=True``). Returned by :meth:`TileEncoder.feature_module`.

    Parameters
    ----------
    backbone
        The convolutional encoder (``(N, 3, H, W)`` float → ``(N, backbone.num_features)``).
    feature_dim
        Width of a linear layer after pooling; ``None`` keeps the backbone's features.

    Attributes
    ----------
    num_features
        Width of the output (torchmetrics reads it instead of probing with a dummy image).
    """

    def __init__(self, backbone: ResNetEncoder, feature_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.neck: nn.Module = nn.Identity() if feature_dim is None else nn.Linear(backbone.num_features, feature_dim)
        self.num_features = backbone.num_features if feature_dim is None else int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, num_features)`` float of images ``(N, 3, H, W)``, uint8 or float in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(x.shape)}.")
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        # Centre [0, 1] on zero: the first convolution has no bias, and tiles are mostly bright.
        return self.neck(self.backbone(x * 2.0 - 1.0))


class _SimCLRNet(nn.Module):
    """Features and the projection head (Linear–ReLU–Linear, SimCLR v1) whose output the loss sees."""

    def __init__(self, features: TileFeatures, hidden: int, projection_dim: int):
        super().__init__()
        self.features = features
        self.projector = nn.Sequential(
            nn.Linear(features.num_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy of ``2B`` projections (views ``i`` and ``i + B`` pair up).

    Parameters
    ----------
    z
        ``(2B, d)`` projections, the first view of every tile then the second.
    temperature
        Softmax temperature of the cosine similarities.

    Returns
    -------
    Scalar float32 loss: each view must pick its partner among the other ``2B − 1`` views.
    """
    n = z.shape[0]
    if n % 2 or n < 4:
        raise ValueError(f"nt_xent needs an even number ≥ 4 of projections (2 views of ≥ 2 tiles), got {n}.")
    z = F.normalize(z.float(), dim=1)  # float32 even under bf16 autocast: the softmax is sharp
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    b = n // 2
    target = torch.cat([torch.arange(b, n), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class _Views:
    """Batched SimCLR augmentation on the training device: random resized crop, dihedral transforms,
    colour jitter and Gaussian blur of float tiles ``(B, 3, H, W)`` in [0, 1].

    :class:`~rnapaint.data.TileAugment` does the same flips, rotations and colour jitter one tile at a
    time in a loader worker; here one batch is transformed at once on the GPU, where a per-tile
    Python loop would starve it. Random numbers come from a CPU generator, so views repeat for a seed
    on any device.
    """

    def __init__(
        self,
        augment: TileAugment,
        crop_scale: tuple[float, float],
        jitter_prob: float,
        blur_prob: float,
        blur_sigma: tuple[float, float],
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ):
        self.augment, self.crop_scale, self.crop_ratio = augment, crop_scale, crop_ratio
        self.jitter_prob, self.blur_prob, self.blur_sigma = jitter_prob, blur_prob, blur_sigma

    def _u(self, gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    def _geometry(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        # One affine sampling grid per tile does crop, resize, flip and rotation in a single pass:
        # input coordinates = diag(w, h) · D · output coordinates + centre.
        n, _, hgt, wid = x.shape
        area = self._u(gen, n, *self.crop_scale)
        ratio = torch.exp(self._u(gen, n, math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (2 * torch.rand(n, generator=gen) - 1) * (1 - w)
        cy = (2 * torch.rand(n, generator=gen) - 1) * (1 - h)
        k = torch.randint(0, 4, (n,), generator=gen) if self.augment.rot90 else torch.zeros(n, dtype=torch.long)
        flip = (torch.rand(n, generator=gen) < 0.5) if self.augment.flips else torch.zeros(n, dtype=torch.bool)
        angle = k.float() * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
        sign = 1.0 - 2.0 * flip.float()  # a mirror before the rotation gives the other 4 symmetries
        d = torch.stack([torch.stack([cos * sign, -sin], 1), torch.stack([sin * sign, cos], 1)], 1)
        theta = torch.cat([d * torch.stack([w, h], 1)[:, :, None], torch.stack([cx, cy], 1)[:, :, None]], 2)
        grid = F.affine_grid(theta.to(x.device, x.dtype), [n, 3, hgt, wid], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _colour(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        # TileAugment's affine colour model, one matrix per tile; a fraction of tiles is left as it is.
        m, offset_scale = colour_parameters(self.augment, x.shape[0], gen, jitter_prob=self.jitter_prob)
        return apply_colour(x, m, offset_scale).clamp(0.0, 1.0)

    def _blur(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, ch, hgt, wid = x.shape
        # Sigmas are given for 224 px tiles (SimCLR's setting) and scale with the tile size.
        scale = min(hgt, wid) / 224
        lo, hi = self.blur_sigma[0] * scale, self.blur_sigma[1] * scale
        radius = min(math.ceil(3 * hi), (min(hgt, wid) - 1) // 2)
        if radius < 1:
            return x
        sigma = self._u(gen, n, lo, hi)
        sigma = torch.where(torch.rand(n, generator=gen) < self.blur_prob, sigma, torch.full_like(sigma, 1e-3))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0).to(x.device, x.dtype)  # (n·3, taps)
        # Separable convolution, one kernel per tile: tiles become channels of a grouped convolution.
        y = F.pad(x.reshape(1, n * ch, hgt, wid), (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, k[:, None, :, None], groups=n * ch)
        y = F.conv2d(y, k[:, None, None, :], groups=n * ch)
        return y.reshape(n, ch, hgt, wid)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One random view of each tile of ``x`` ``(B, 3, H, W)`` float in [0, 1]; same shape."""
        x = self._geometry(x, gen)
        a = self.augment
        if a.brightness or a.contrast or a.saturation or a.hue:
            x = self._colour(x, gen)
        if self.blur_prob > 0:
            x = self._blur(x, gen)
        return x


class TileEncoder:
    """SimCLR tile encoder: a small ResNet trained to match two augmented views of each tile.

    Use it to pretrain on (synthetic) tiles and fine-tune on real labelled ones, as RNA-GAN and
    RNA-CDM do, or as an H&E-specific feature extractor for FID (:meth:`feature_module`).

    Parameters
    ----------
    width
        Channels of the first ResNet stage (doubling every stage).
    blocks
        :class:`~rnapaint.nn.BasicBlock` s per stage; ``(2, 2, 2, 2)`` with ``width=64`` is a ResNet-18.
    feature_dim
        Width of the features (a linear layer after pooling); ``None`` uses the last stage's
        ``width · 2**(len(blocks) - 1)`` channels directly.
    projection_dim
        Output of the projection head that the contrastive loss sees (features come from before it).
    projection_hidden
        Hidden width of the projection head (default: the feature width).
    temperature
        NT-Xent temperature.
    norm
        ``"group"`` (features of a tile do not depend on its batch) or ``"batch"``.
    stem
        ``"small"`` (3×3 at full resolution, for 32–64 px tiles) or ``"large"`` (7×7 stride 2 + max
        pool: 16× cheaper, for 128–256 px tiles).
    augment
        Flips, 90° rotations and colour jitter limits as a :class:`~rnapaint.data.TileAugment`
        (default: flips, rotations, brightness/contrast/saturation 0.4, hue 0.05).
    crop_scale
        Range of the random resized crop's area, as a fraction of the tile.
    jitter_prob
        Probability that a view is colour-jittered.
    blur_prob, blur_sigma
        Probability of a Gaussian blur and its sigma range in pixels at 224 px (scaled with the tile size).

    Examples
    --------
    >>> enc = rp.models.TileEncoder(width=32).fit(tiles, epochs=50)
    >>> feats = enc.encode(tiles)                      # (n, 256)
    >>> fid = FrechetInceptionDistance(feature=enc.feature_module())
    """

    def __init__(
        self,
        width: int = 32,
        blocks: Sequence[int] = (1, 1, 1, 1),
        feature_dim: int | None = None,
        projection_dim: int = 128,
        projection_hidden: int | None = None,
        temperature: float = 0.2,
        norm: str = "group",
        stem: str = "small",
        augment: TileAugment | None = None,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        jitter_prob: float = 0.8,
        blur_prob: float = 0.3,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if projection_dim < 1 or (feature_dim is not None and feature_dim < 1):
            raise ValueError(f"projection_dim and feature_dim must be ≥ 1, got {projection_dim}, {feature_dim}.")
        lo, hi = (float(v) for v in crop_scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low ≤ high ≤ 1, got {crop_scale}.")
        if not (0 <= jitter_prob <= 1 and 0 <= blur_prob <= 1):
            raise ValueError(f"jitter_prob and blur_prob must lie in [0, 1], got {jitter_prob}, {blur_prob}.")
        if augment is None:
            augment = TileAugment(**_DEFAULT_AUGMENT)
        self.config: dict[str, Any] = {
            "width": int(width),
            "blocks": [int(b) for b in blocks],
            "feature_dim": None if feature_dim is None else int(feature_dim),
            "projection_dim": int(projection_dim),
            "projection_hidden": None if projection_hidden is None else int(projection_hidden),
            "temperature": float(temperature),
            "norm": norm,
            "stem": stem,
            "augment": {k: getattr(augment, k) for k in _DEFAULT_AUGMENT},
            "crop_scale": [lo, hi],
            "jitter_prob": float(jitter_prob),
            "blur_prob": float(blur_prob),
            "blur_sigma": [float(v) for v in blur_sigma],
        }
        self.module = self._build()  # validates width, blocks, norm and stem
        self.history: dict[str, list[float]] = {}
        self.train_info: dict[str, Any] = {}
        self.is_trained = False

    def _build(self) -> _SimCLRNet:
        c = self.config
        backbone = ResNetEncoder(c["width"], c["blocks"], norm=c["norm"], stem=c["stem"])
        features = TileFeatures(backbone, c["feature_dim"])
        return _SimCLRNet(features, c["projection_hidden"] or features.num_features, c["projection_dim"])

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`encode`'s output."""
        return self.module.features.num_features

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.module.parameters())
        state = "trained" if self.is_trained else "untrained"
        return (
            f"TileEncoder(width {c['width']}, blocks {tuple(c['blocks'])}, {self.feature_dim} features, "
            f"{n / 1e6:.3g}M parameters, {state})"
        )

    @staticmethod
    def _device(device: str | torch.device | None) -> torch.device:
        if device in (None, "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)

    def _views(self) -> _Views:
        c = self.config
        return _Views(
            TileAugment(**c["augment"]),
            tuple(c["crop_scale"]),
            c["jitter_prob"],
            c["blur_prob"],
            tuple(c["blur_sigma"]),
        )

    # ------------------------------------------------------------------ training
    def fit(
        self,
        tiles: np.ndarray,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        warmup_epochs: int = 5,
        max_steps: int | None = None,
        device: str | torch.device | None = "auto",
        seed: int = 0,
        progress_bar: bool = True,
    ) -> TileEncoder:
        """Train with SimCLR: two random views of each tile, NT-Xent over the batch, AdamW, warm-up + cosine.

        Parameters
        ----------
        tiles
            uint8 RGB tiles ``(n, H, W, 3)`` or ``(n, k, H, W, 3)`` (all ``n · k`` tiles are used), at
            least 2 (every other tile of a batch is a negative).
        epochs
            Passes over the tiles.
        batch_size
            Tiles per step (``2 · batch_size`` views); the last incomplete batch is dropped when
            there is more than one.
        lr, weight_decay
            AdamW settings.
        warmup_epochs
            Linear warm-up length.
        max_steps
            Stop after this many optimiser steps (the LR schedule is fitted to the shorter run).
        device
            ``"auto"`` trains on a GPU when there is one (bf16 autocast there, fp32 on the CPU).
        seed
            Seeds initial weights, batches and views: the same seed on the same machine gives the same weights.
        progress_bar
            Show a tqdm bar over epochs.

        Returns
        -------
        ``self``, trained; ``history`` holds ``loss`` (mean NT-Xent of each epoch), ``lr`` and ``epoch``.
        """
        from tqdm.auto import tqdm

        from ._training import warmup_cosine

        x = check_tiles(tiles)
        n = len(x)
        if n < 2:
            raise ValueError(f"SimCLR needs at least 2 tiles (the others in a batch are its negatives), got {n}.")
        if batch_size < 2:
            raise ValueError(f"batch_size must be ≥ 2, got {batch_size}.")
        if epochs < 1 or (max_steps is not None and max_steps < 1):
            raise ValueError(f"epochs and max_steps must be ≥ 1, got {epochs}, {max_steps}.")
        dev = self._device(device)
        cuda = dev.type == "cuda"
        torch.manual_seed(seed)
        self.module = self._build().to(dev)  # rebuilt so that the seed alone fixes the initial weights
        if cuda:
            self.module = self.module.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        bs = min(batch_size, n)
        steps_per_epoch = max(1, n // bs)
        total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
        opt = torch.optim.AdamW(self.module.parameters(), lr=lr, weight_decay=weight_decay)
        sched = warmup_cosine(opt, min(warmup_epochs * steps_per_epoch, total // 2), total)
        views, temperature = self._views(), self.config["temperature"]
        data = torch.from_numpy(np.ascontiguousarray(x))
        if cuda and data.nbytes <= _GPU_DATA_BYTES:
            data = data.to(dev)  # uint8 tiles are compact: keep them on the GPU, no copy per step
        history: dict[str, list[float]] = {"loss": [], "lr": [], "epoch": []}
        step, start = 0, time.perf_counter()
        self.module.train()
        bar = tqdm(range(epochs), desc="SimCLR", disable=not progress_bar)
        for epoch in bar:
            order = torch.from_numpy(rng.permutation(n)).to(data.device)
            losses = []
            for i in range(steps_per_epoch):
                batch = data[order[i * bs : (i + 1) * bs]].to(dev, non_blocking=True)
                batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
                pair = torch.cat([views(batch, gen), views(batch, gen)])
                if cuda:
                    pair = pair.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                    z = self.module(pair)
                loss = nt_xent(z, temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.detach())
                step += 1
                if step >= total:
                    break
            history["loss"].append(float(torch.stack(losses).mean()))
            history["lr"].append(float(opt.param_groups[0]["lr"]))
            history["epoch"].append(float(epoch))
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
            if not math.isfinite(history["loss"][-1]):
                raise RuntimeError(f"SimCLR loss became {history['loss'][-1]} at epoch {epoch}; lower lr (now {lr}).")
            if step >= total:
                break
        bar.close()
        self.module = self.module.to(memory_format=torch.contiguous_format).cpu().eval()
        self.history = history
        self.train_info = {
            "steps": step,
            "epochs": len(history["loss"]),
            "n_tiles": n,
            "tile_shape": list(x.shape[1:3]),
            "batch_size": bs,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": int(seed),
            "device": str(dev),
            "precision": "bf16-mixed" if cuda else "32-true",
            "seconds": round(time.perf_counter() - start, 2),
        }
        self.is_trained = True
        logger.info(f"Trained {self!r}: {step} steps, final loss {history['loss'][-1]:.4f}")
        return self

    # ------------------------------------------------------------------ inference
    def feature_module(self) -> TileFeatures:
        """A frozen copy of the feature extractor: ``(N, 3, H, W)`` uint8 (or float in [0, 1]) → ``(N, feature_dim)``.

        This is what ``torchmetrics.image.fid.FrechetInceptionDistance(feature=...)`` takes: it reads
        the ``num_features`` attribute and feeds uint8 batches (``normalize=False``). The copy is in
        evaluation mode without gradients; later training of this encoder does not change it.
        """
        features = copy.deepcopy(self.module.features).cpu().eval()
        features.requires_grad_(False)
        return features

    @torch.no_grad()
    def encode(self, tiles: np.ndarray, batch_size: int = 256, device: str | torch.device | None = None) -> np.ndarray:
        """Features of tiles, in evaluation mode and fp32 (deterministic).

        Parameters
        ----------
        tiles
            uint8 RGB ``(n, H, W, 3)`` or ``(n, k, H, W, 3)``; any size of at least 8 px (features
            are pooled over the image).
        batch_size
            Tiles per forward pass.
        device
            ``None`` or ``"auto"``: a GPU when there is one.

        Returns
        -------
        float32 ``(n, feature_dim)``, or ``(n, k, feature_dim)`` for ``(n, k, H, W, 3)`` input.
        """
        x = check_tiles(tiles)
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
        dev = self._device(device)
        features = self.module.features.eval().to(dev)
        out = np.empty((len(x), self.feature_dim), np.float32)
        try:
            for i in range(0, len(x), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(dev)
                out[i : i + batch_size] = features(batch.permute(0, 3, 1, 2)).float().cpu().numpy()
        finally:
            self.module.cpu()  # the model lives on the CPU between calls
        return out.reshape(*np.shape(tiles)[:-3], self.feature_dim)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (architecture, augmentation, history)."""
        tensors = {_MODULE_PREFIX + k: v for k, v in self.module.state_dict().items()}
        config = {
            "class": type(self).__name__,
            "rnapaint_version": __import__("rnapaint").__version__,
            "model": self.config,
            "history": self.history,
            "train_info": self.train_info,
            "is_trained": self.is_trained,
        }
        out = save_model_files(path, tensors, config, overwrite=overwrite)
        logger.info(f"Saved {self!r} to {out}")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> TileEncoder:
        """Load an encoder saved by :meth:`save`.

        Raises
        ------
        ValueError
            If the files are missing, truncated or corrupted, were saved by another class, or the
            weights do not fit the architecture in the config.
        """
        tensors, config = load_model_files(path)
        if config.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('class')!r} model, not a {cls.__name__}.")
        mc = dict(config["model"])
        try:
            self = cls(**{k: v for k, v in mc.items() if k != "augment"}, augment=TileAugment(**mc["augment"]))
        except (TypeError, KeyError) as e:
            raise ValueError(f"{path}: config.json does not describe a {cls.__name__}: {e}") from e
        state = {
            k[len(_MODULE_PREFIX) :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(_MODULE_PREFIX)
        }
        try:
            self.module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the model its config describes: {e}") from e
        self.module.eval()
        self.history, self.train_info = config.get("history", {}), config.get("train_info", {})
        self.is_trained = bool(config.get("is_trained", True))
        return self
