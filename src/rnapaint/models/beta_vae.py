"""RNA-GAN's β-VAE as an AnnData-aware model (scvi-tools style)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._logging import logger
from .._validation import check_expression
from ..io.model_files import load_model_files, save_model_files
from ..nn.vae import VAE, vae_loss
from ._config_errors import refuse_absurd_sizes, refuse_unknown_options, refuses_incomplete_config

_VAR_PREFIX = "var."
_MODULE_PREFIX = "module."
# Every option a BetaVAE config holds; load refuses others.
_OPTIONS = frozenset(("hidden", "latent_dim", "beta", "dropout", "split_key", "zscore"))


def _as_tensor(adata: ad.AnnData) -> torch.Tensor:
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class BetaVAE:
    """β-VAE on expression profiles, as in RNA-GAN (hidden 6000/4096, latent 2048, β 0.005).

    Set up on an AnnData whose ``.X`` holds model input (z-scores from :func:`rnapaint.pp.zscore`);
    the gene list and the normalisation statistics (``var['rp_mean']``, ``var['rp_std']``) travel
    with the model, so another cohort can be put on its scale and checked against its genes.

    Parameters
    ----------
    adata
        Training data ``(n_obs, n_genes)``.
    hidden
        Encoder widths; the decoder mirrors them. RNA-GAN: ``(6000, 4096)``.
    latent_dim
        RNA-GAN: 2048; RNA-CDM: 200.
    beta
        Weight of the KL term (paper 0.005; RNA-GAN's code 0.0005).
    dropout
        Dropout after each hidden block.
    split_key
        obs column from :func:`rnapaint.pp.split`: training uses ``train`` rows, early stopping
        ``val`` rows. Without it a random 10 % of rows is held out for validation.

    Examples
    --------
    >>> model = rp.models.BetaVAE(adata, hidden=(1024, 512), latent_dim=128)
    >>> model.train(max_epochs=100)
    >>> z = model.get_latent(adata)
    """

    def __init__(
        self,
        adata: ad.AnnData,
        hidden: Sequence[int] = (6000, 4096),
        latent_dim: int = 2048,
        beta: float = 0.005,
        dropout: float = 0.0,
        split_key: str | None = "split",
    ):
        check_expression(adata)
        if latent_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"latent_dim and hidden widths must be positive, got {latent_dim}, {hidden}.")
        self.adata = adata
        self.var = pd.DataFrame(index=adata.var_names.copy())
        for col in ("rp_mean", "rp_std"):
            if col in adata.var:
                self.var[col] = adata.var[col].to_numpy(np.float32)
        self.config: dict[str, Any] = {
            "hidden": [int(h) for h in hidden],
            "latent_dim": int(latent_dim),
            "beta": float(beta),
            "dropout": float(dropout),
            "split_key": split_key,
            "zscore": dict(adata.uns.get("rnapaint", {}).get("zscore", {})),
        }
        self._module: VAE | None = None  # built on first use: train() builds its own, seeded
        self.history: dict[str, list[float]] = {}
        self.train_info: dict[str, Any] = {}
        self.is_trained = False

    @property
    def module(self) -> VAE:
        """The torch network (:class:`rnapaint.nn.VAE`)."""
        if self._module is None:
            c = self.config
            self._module = VAE(len(self.var), c["hidden"], c["latent_dim"], c["dropout"])
        return self._module

    @module.setter
    def module(self, value: VAE) -> None:
        self._module = value

    def __repr__(self) -> str:
        c = self.config
        sizes = [len(self.var), *c["hidden"]]
        # Linear + BatchNorm per block, both directions, plus the mu/logvar heads and the output layer.
        blocks = sum(a * b + 3 * b for a, b in itertools.pairwise(sizes))
        back = [c["latent_dim"], *reversed(c["hidden"])]
        blocks += sum(a * b + 3 * b for a, b in itertools.pairwise(back))
        n = blocks + 2 * (c["hidden"][-1] + 1) * c["latent_dim"] + (c["hidden"][0] + 1) * len(self.var)
        state = "trained" if self.is_trained else "untrained"
        return (
            f"BetaVAE({len(self.var)} genes → {c['hidden']} → latent {c['latent_dim']}, β={c['beta']}, "
            f"{n / 1e6:.3g}M parameters, {state})"
        )

    @property
    def var_names(self) -> pd.Index:
        """Genes the model was trained on, in order."""
        return self.var.index

    # ------------------------------------------------------------------ training
    def _split_rows(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        key = self.config["split_key"]
        obs = self.adata.obs
        if key is not None and key in obs:
            train = (obs[key] == "train").to_numpy()
            val = (obs[key] == "val").to_numpy()
            if not train.any():
                raise ValueError(f"obs[{key!r}] has no 'train' rows to train on.")
            return np.flatnonzero(train), np.flatnonzero(val)
        rng = np.random.default_rng(seed)
        perm = rng.permutation(self.adata.n_obs)
        n_val = max(1, round(0.1 * self.adata.n_obs)) if self.adata.n_obs >= 10 else 0
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def train(
        self,
        max_epochs: int = 300,
        batch_size: int = 128,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_epochs: int = 5,
        early_stopping_patience: int | None = 30,
        accelerator: str = "auto",
        devices: int | str = 1,
        precision: str | None = None,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> BetaVAE:
        """Train with Adam, linear warm-up + cosine decay and early stopping on validation loss.

        Parameters
        ----------
        max_epochs
            Upper bound on epochs.
        batch_size
            Mini-batch size (the last incomplete batch is dropped: BatchNorm needs > 1 sample).
        lr, weight_decay
            Adam settings.
        warmup_epochs
            Linear warm-up length.
        early_stopping_patience
            Stop after this many epochs without a better validation loss, then restore the best
            weights; ``None`` trains all ``max_epochs``.
        accelerator, devices
            Passed to :class:`lightning.pytorch.Trainer` (``"auto"`` uses a GPU when there is one).
        precision
            Default ``"bf16-mixed"`` on a GPU and ``"32-true"`` on the CPU.
        seed
            Seeds weights, batches and noise: the same seed on the same machine gives the same model.
        progress_bar
            Show Lightning's progress bar.

        Returns
        -------
        ``self``, trained.
        """
        import lightning.pytorch as pl
        from torch.utils.data import DataLoader, TensorDataset

        from ._training import (
            BestWeights,
            History,
            StopIfDiverged,
            lightning_warnings_silenced,
            quiet_lightning,
            quiet_trainer,
            torch_flags_restored,
        )

        if int(batch_size) < 2 or int(max_epochs) < 1 or not lr > 0:
            raise ValueError(
                f"batch_size must be ≥ 2 (a batch of one has no spread), max_epochs ≥ 1 and lr > 0; got "
                f"batch_size={batch_size}, max_epochs={max_epochs}, lr={lr}."
            )
        quiet_lightning()
        pl.seed_everything(seed, workers=True, verbose=False)
        train_rows, val_rows = self._split_rows(seed)
        x = _as_tensor(self.adata)
        # Rebuild the network so that seed alone fixes the initial weights.
        self.module = VAE(len(self.var), self.config["hidden"], self.config["latent_dim"], self.config["dropout"])
        bs = min(batch_size, len(train_rows))
        if bs < 2:
            raise ValueError(f"Need at least 2 training rows, got {len(train_rows)}.")
        gen = torch.Generator().manual_seed(seed)
        train_dl = DataLoader(
            TensorDataset(x[train_rows]),
            batch_size=bs,
            shuffle=True,
            drop_last=len(train_rows) % bs == 1 or len(train_rows) > bs,
            generator=gen,
        )
        val_dl = DataLoader(TensorDataset(x[val_rows]), batch_size=max(bs, 256)) if len(val_rows) else None
        steps_per_epoch = max(1, len(train_dl))
        plan = _VAETrainingPlan(
            self.module,
            beta=self.config["beta"],
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_epochs * steps_per_epoch,
            total_steps=max_epochs * steps_per_epoch,
        )
        history, best = History(), BestWeights("val_loss")
        callbacks: list[pl.Callback] = [StopIfDiverged("BetaVAE"), history]
        if val_dl is not None:
            callbacks.append(best)
            if early_stopping_patience is not None:
                callbacks.append(pl.callbacks.EarlyStopping("val_loss", patience=early_stopping_patience))
        # Trainer(deterministic=True) switches torch's deterministic mode on for the whole session.
        with torch_flags_restored():
            trainer = quiet_trainer(
                accelerator,
                precision,
                progress_bar,
                max_epochs=max_epochs,
                devices=devices,
                callbacks=callbacks,
                deterministic=True,
                num_sanity_val_steps=0,
            )
            with lightning_warnings_silenced(
                ".*does not have many workers.*",
                ".*GPU available but not used.*",
                ".*validation_step but have no val_dataloader.*",
            ):
                trainer.fit(plan, train_dl, val_dl)
        self.module = plan.module.cpu().eval()
        self.history = history.history
        self.train_info = {
            "epochs": int(trainer.current_epoch),
            "best_epoch": int(best.best_epoch),
            "best_val_loss": float(best.best) if best.state is not None else None,
            "n_train": len(train_rows),
            "n_val": len(val_rows),
            "seed": int(seed),
            "lr": lr,
            "batch_size": bs,
            "precision": trainer.precision,
        }
        self.is_trained = True
        logger.info(
            f"Trained {self!r} for {trainer.current_epoch} epochs"
            + (f" (best validation loss {best.best:.4f} at epoch {best.best_epoch})" if best.state else "")
        )
        return self

    # ------------------------------------------------------------------ inference
    def _data(self, adata: ad.AnnData | None) -> ad.AnnData:
        """``adata``, or the training AnnData when it is ``None`` (a loaded model has none)."""
        if adata is not None:
            return adata
        if self.adata is None:
            raise ValueError("This model was loaded from disk and holds no AnnData: pass adata.")
        return self.adata

    def check_genes(self, adata: ad.AnnData) -> None:
        """Raise a ValueError unless ``adata`` has exactly the model's genes, in order."""
        if not adata.var_names.equals(self.var_names):
            common = len(adata.var_names.intersection(self.var_names))
            missing = len(self.var_names) - common
            if common == adata.n_vars == len(self.var_names):
                how = "the same genes in another order"
            elif missing:
                how = f"{missing} of the model's genes missing (e.g. {self.var_names.difference(adata.var_names)[0]!r})"
            else:
                how = f"{adata.n_vars - common} genes the model does not have"
            raise ValueError(
                f"adata's genes differ from the model's: {adata.n_vars} vs {len(self.var_names)} genes, "
                f"{common} in common, {how}. Put it on "
                "the model's panel with adata = rp.pp.align_genes(adata, model.var_names) and normalise it "
                "with rp.pp.zscore(adata, reference=model)."
            )
        if "rp_mean" in adata.var and "rp_mean" in self.var:
            if not np.allclose(adata.var["rp_mean"].to_numpy(), self.var["rp_mean"].to_numpy(), atol=1e-4):
                warnings.warn(
                    "adata was z-scored with statistics other than the model's training data; for an "
                    "external cohort use rp.pp.zscore(adata, reference=model).",
                    UserWarning,
                    stacklevel=3,
                )

    def check_scale(self, adata: ad.AnnData) -> None:
        """Warn when ``adata`` looks unscaled although the model was trained on z-scores.

        Expression that went through :func:`rnapaint.pp.zscore` carries ``var['rp_mean']``; without
        it, per-gene means far from 0 or spreads far from 1 (log counts, TPM) are encoded into
        meaningless latents, silently. Shifted or enriched profiles move the means a little, so the
        test is loose.
        """
        if "rp_mean" not in self.var or "rp_mean" in adata.var or adata.n_obs < 2:
            return
        x = np.asarray(
            adata.X[: min(adata.n_obs, 2000)].toarray()
            if hasattr(adata.X, "toarray")
            else adata.X[: min(adata.n_obs, 2000)],
            dtype=np.float64,
        )
        off = float(np.median(np.abs(x.mean(0))))
        spread = float(np.median(x.std(0)))
        if off > 2.0 or spread > 3.0:
            warnings.warn(
                f"adata does not look z-scored (median |gene mean| {off:.2f}, median gene SD {spread:.2f}) but "
                "the model was trained on z-scores: normalise it with rp.pp.zscore(adata, reference=model).",
                UserWarning,
                stacklevel=3,
            )

    @staticmethod
    def _device(device: str | None) -> torch.device:
        if device in (None, "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(device)

    @torch.no_grad()
    def _apply(self, fn, x: torch.Tensor, batch_size: int, device: str | None) -> np.ndarray:
        dev = self._device(device)
        self.module.eval().to(dev)
        try:
            out = [fn(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
        finally:
            self.module.cpu()  # the model lives on the CPU between calls
        return torch.cat(out).numpy()

    def get_latent(
        self, adata: ad.AnnData | None = None, batch_size: int = 1024, device: str | None = "auto"
    ) -> np.ndarray:
        """Posterior means ``(n_obs, latent_dim)`` of ``adata`` (default: the training AnnData).

        ``device="auto"`` encodes on a GPU when there is one (exact fp32 arithmetic either way).
        """
        adata = self._data(adata)
        check_expression(adata)
        self.check_genes(adata)
        self.check_scale(adata)
        return self._apply(lambda b: self.module.encoder(b)[0], _as_tensor(adata), batch_size, device)

    def decode(self, z: np.ndarray, batch_size: int = 1024, device: str | None = "auto") -> np.ndarray:
        """Expression ``(n, n_genes)`` in the model's input units from latents ``(n, latent_dim)``."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.config["latent_dim"]:
            raise ValueError(f"z must have shape (n, {self.config['latent_dim']}), got {z.shape}.")
        if not np.isfinite(z).all():
            raise ValueError("z holds NaN or infinite values.")
        return self._apply(self.module.decoder, torch.from_numpy(z), batch_size, device)

    def reconstruct(
        self, adata: ad.AnnData | None = None, batch_size: int = 1024, device: str | None = "auto"
    ) -> np.ndarray:
        """Decoded posterior means ``(n_obs, n_genes)``: the model's reconstruction of ``adata``."""
        return self.decode(self.get_latent(adata, batch_size, device), batch_size, device)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (genes, statistics, settings, history)."""
        tensors: dict[str, Any] = {_MODULE_PREFIX + k: v for k, v in self.module.state_dict().items()}
        for col in self.var.columns:
            tensors[_VAR_PREFIX + col] = self.var[col].to_numpy(np.float32)
        config = {
            "class": type(self).__name__,
            "rnapaint_version": __import__("rnapaint").__version__,
            "model": self.config,
            "var_names": list(map(str, self.var_names)),
            "var_columns": list(self.var.columns),
            "history": self.history,
            "train_info": self.train_info,
            "is_trained": self.is_trained,
        }
        out = save_model_files(path, tensors, config, overwrite=overwrite)
        logger.info(f"Saved {self!r} to {out}")
        return out

    @classmethod
    @refuses_incomplete_config
    def load(cls, path: str | Path, adata: ad.AnnData | None = None) -> BetaVAE:
        """Load a model saved by :meth:`save`; with ``adata``, check that it has the model's genes.

        Raises
        ------
        ValueError
            If the files are missing, truncated or corrupted, were saved by another class, or if
            ``adata``'s genes differ from the model's.
        """
        tensors, config = load_model_files(path)
        if config.get("class") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('class')!r} model, not a {cls.__name__}.")
        var = pd.DataFrame(index=pd.Index(config["var_names"]))
        for col in config.get("var_columns", []):
            values = tensors.get(_VAR_PREFIX + col)
            if values is None or values.shape != (len(var),):
                got = "missing" if values is None else f"of shape {values.shape}"
                raise ValueError(
                    f"{path}: the gene statistic {col!r} is {got}, but the model has {len(var)} genes: the folder "
                    "is damaged or was assembled from two models."
                )
            var[col] = values
        mc = config["model"]
        refuse_unknown_options(path, cls.__name__, mc, _OPTIONS)
        refuse_absurd_sizes(path, cls.__name__, mc)
        shell = ad.AnnData(X=np.zeros((1, len(var)), np.float32), var=var)
        model = cls(
            shell,
            hidden=mc["hidden"],
            latent_dim=mc["latent_dim"],
            beta=mc["beta"],
            dropout=mc["dropout"],
            split_key=mc["split_key"],
        )
        model.config = mc
        state = {
            k[len(_MODULE_PREFIX) :]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith(_MODULE_PREFIX)
        }
        try:
            model.module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the model its config describes: {e}") from e
        model.module.eval()
        model.history = config.get("history", {})
        model.train_info = config.get("train_info", {})
        model.is_trained = bool(config.get("is_trained", True))
        model.adata = None  # type: ignore[assignment]  # the training data does not travel with the model
        if adata is not None:
            model.check_genes(adata)
            model.adata = adata
        return model


def _make_plan():
    import lightning.pytorch as pl

    from ._training import warmup_cosine

    class VAETrainingPlan(pl.LightningModule):
        """Optimisation of a :class:`~rnapaint.nn.VAE` with the β-VAE loss."""

        def __init__(
            self, module: VAE, beta: float, lr: float, weight_decay: float, warmup_steps: int, total_steps: int
        ):
            super().__init__()
            self.module = module
            self.beta, self.lr, self.weight_decay = beta, lr, weight_decay
            self.warmup_steps, self.total_steps = warmup_steps, total_steps

        def _step(self, batch, prefix: str):
            (x,) = batch
            recon, mu, logvar = self.module(x)
            loss, rec, kl = vae_loss(x, recon, mu, logvar, self.beta)
            on_step = False
            self.log(f"{prefix}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=True)
            self.log(f"{prefix}_recon", rec, on_step=on_step, on_epoch=True)
            self.log(f"{prefix}_kl", kl, on_step=on_step, on_epoch=True)
            return loss

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train")

        def validation_step(self, batch, batch_idx):
            return self._step(batch, "val")

        def configure_optimizers(self):
            opt = torch.optim.Adam(self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = warmup_cosine(opt, self.warmup_steps, self.total_steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return VAETrainingPlan


def _VAETrainingPlan(*args, **kwargs):
    return _make_plan()(*args, **kwargs)
