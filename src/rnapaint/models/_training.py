"""Lightning pieces shared by rnapaint's models: LR schedule, history, best-weights restore."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up to the base LR, then cosine decay to 1 % of it (a step-wise LambdaLR)."""
    total_steps = max(total_steps, warmup_steps + 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class History(pl.Callback):
    """Collects the epoch-level logged metrics into ``history`` (name → list of floats)."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}

    def _collect(self, trainer: pl.Trainer, prefix: str) -> None:
        for k, v in trainer.callback_metrics.items():
            if k.startswith(prefix) and not k.endswith("_step"):
                self.history.setdefault(k, []).append(float(v))

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self._collect(trainer, "train_")
        self.history.setdefault("epoch", []).append(float(trainer.current_epoch))
        self.history.setdefault("lr", []).append(float(trainer.optimizers[0].param_groups[0]["lr"]))

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._collect(trainer, "val_")


class BestWeights(pl.Callback):
    """Keeps the weights of the best validation epoch in memory and restores them at the end.

    Lightning's ModelCheckpoint would do this through a pickled ``.ckpt`` file; rnapaint never
    writes pickles, and an in-memory copy of a model this size is cheap.
    """

    def __init__(self, monitor: str = "val_loss"):
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})

    def on_train_end(self, trainer, pl_module):
        if self.state is not None:
            pl_module.load_state_dict(self.state)


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter (GPU available..., model summary); keep warnings."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


# Lightning warnings that tell an rnapaint user nothing they could act on.
_NOT_FOR_USERS = (
    # lightning 2.6 calls a torch pytree API that torch 2.13 deprecates
    ".*isinstance.treespec, LeafSpec.*",
    # the generators' EMA copies sit in eval mode on purpose: they are averaged, never trained
    ".*module.s. in eval mode at the start of training.*",
)


@contextlib.contextmanager
def lightning_warnings_silenced(*messages: str) -> Iterator[None]:
    """Around ``trainer.fit``: ignore Lightning's warnings about its own internals (and ``messages``)."""
    with warnings.catch_warnings():
        for message in (*_NOT_FOR_USERS, *messages):
            warnings.filterwarnings("ignore", message=message)
        yield


def default_precision(accelerator: str) -> str:
    """bf16 autocast on a GPU (as the design asks), full precision on the CPU."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed"
    return "32-true"


def quiet_trainer(accelerator: str, precision: str | None, progress_bar: bool, **kwargs: Any) -> pl.Trainer:
    """A Lightning Trainer as every rnapaint model runs it; ``kwargs`` go to ``pl.Trainer``.

    rnapaint keeps its own history and safetensors checkpoints, so Lightning's logger, checkpoints
    and model summary are off; precision defaults to :func:`default_precision`. Build it inside
    :func:`torch_flags_restored`: the Trainer sets torch's deterministic mode when it is built.
    """
    return pl.Trainer(
        accelerator=accelerator,
        precision=precision or default_precision(accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        **kwargs,
    )


def step_trainer(
    accelerator: str, precision: str | None, progress_bar: bool, seconds: float | None, on_gpu: bool, **kwargs: Any
) -> pl.Trainer:
    """:func:`quiet_trainer` for the generators, which count their own steps: no epoch or step limit of
    Lightning's (a :class:`StopAt` callback stops them), an optional time limit, deterministic
    algorithms on the CPU only, and a history entry every step."""
    return quiet_trainer(
        accelerator,
        precision,
        progress_bar,
        max_steps=-1,
        max_epochs=10**9,
        max_time={"seconds": seconds} if seconds else None,
        deterministic=not on_gpu,
        log_every_n_steps=1,
        **kwargs,
    )


class StopIfDiverged(pl.Callback):
    """Stop training with an error naming the step as soon as the step's loss or any weight is NaN or infinite.

    Put it first among the callbacks: it runs before a checkpoint callback of the same step, so the
    last checkpoint written holds finite weights (and :func:`rnapaint.io.save_model_files` refuses
    non-finite ones anyway). The error propagates out of ``train``, so the model is neither saved
    nor registered as trained.
    """

    def __init__(self, what: str):
        self.what = what

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        bad_loss = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        weights = [p.detach() for p in pl_module.parameters()]
        # One fused reduction and one host sync a step: the largest |weight| of a tensor is NaN or inf iff one is.
        bad_weights = bool(weights) and not bool(
            torch.stack(torch._foreach_norm(weights, float("inf"))).isfinite().all()
        )
        if bad_loss or bad_weights:
            step = int(getattr(pl_module, "step", trainer.global_step))
            raise FloatingPointError(
                f"{self.what} training diverged at step {step}: its {'loss' if bad_loss else 'weights'} became NaN "
                "or infinite. Nothing was saved or registered (a checkpoint keeps the last finite weights); lower "
                "the learning rate or check the inputs."
            )


class StopAt(pl.Callback):
    """Stop when the plan's own step counter reaches ``max_steps`` (survives resumes)."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.step >= self.max_steps:
            trainer.should_stop = True


@contextlib.contextmanager
def torch_flags_restored() -> Iterator[None]:
    """Give back torch's global flags that ``lightning.pytorch.Trainer(deterministic=...)`` sets.

    The Trainer sets ``torch.use_deterministic_algorithms`` (and ``cudnn.benchmark``) for the whole
    session when it is *constructed*, so the flags are read before the Trainer is built and restored
    once training ends or fails.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def device_images(plan: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
    """The training step's images: uint8 batches (``augment_on="device"``) augmented and scaled here.

    ``plan`` has ``_finish`` (the dataset's :meth:`~rnapaint.data.PairedTiles.finish`), ``seed`` and
    ``step``; the augmentation is seeded from (seed, step, rank), so a resumed run needs no state for
    it. Float batches (``augment_on="worker"``) pass through.
    """
    from ..data.paired import step_generator

    if images.dtype != torch.uint8:
        return images
    images = plan._finish(images, step_generator(plan.seed, plan.step, plan.global_rank))
    if plan._trainer is not None:  # what Lightning does to float inputs (bf16-true etc.: a cast)
        images = plan.trainer.precision_plugin.convert_input(images)
    return images


def _device_count(accelerator: str, devices: Any) -> int:
    """How many devices a Lightning ``devices`` setting asks for (1 when it cannot tell)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    from lightning.fabric.utilities.imports import _IS_INTERACTIVE

    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if devices == "auto" and _IS_INTERACTIVE:  # Lightning then uses one GPU in a notebook
        return 1
    if devices == -1 or devices == "auto":
        return max(gpus, 1)
    return devices if isinstance(devices, int) else 1


def ddp_with_unused_parameters(strategy: Any, accelerator: str = "auto", devices: Any = 1) -> Any:
    """The DDP variant that tolerates parameters a backward pass does not reach (GANs, manual optimisation).

    A critic step never reaches the generator's weights, so plain ``"ddp"`` stops with "parameters
    that were not used in producing the loss"; its ``*_find_unused_parameters_true`` twin is what
    Lightning asks for.

    Parameters
    ----------
    strategy
        Lightning strategy name or object. ``"ddp"``-family names get their unused-parameters form;
        ``"auto"`` with several devices (which Lightning would turn into plain DDP) becomes it too;
        anything else (a strategy object included) passes through.
    accelerator, devices
        The Trainer's settings, to tell whether ``"auto"`` means several processes.

    Returns
    -------
    The strategy to hand to ``lightning.pytorch.Trainer``.
    """
    if strategy == "auto" and _device_count(accelerator, devices) > 1:
        from lightning.fabric.utilities.imports import _IS_INTERACTIVE

        strategy = "ddp_fork" if _IS_INTERACTIVE else "ddp"  # what Lightning's "auto" picks
    if isinstance(strategy, str) and strategy.startswith("ddp") and "find_unused" not in strategy:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def decorrelate_ranks(plan: pl.LightningModule) -> None:
    """Seed the global torch RNG (CPU and GPUs) for this training run from (seed, start step, rank).

    ``seed_everything`` seeds every rank alike (so that the initial weights agree), and a resumed run
    the same as a fresh one; without this, every DDP rank would draw the same timesteps, noise and
    penalty interpolations for its own images, and a run resumed at step ``k`` would replay the
    draws of step 1 onwards instead of continuing with new ones. A single process starting at step
    0 keeps the stream ``seed_everything`` gave it (so a fresh run is what it always was).
    """
    if plan.trainer.world_size > 1 or int(plan.step) > 0:
        state = np.random.SeedSequence([int(plan.seed), int(plan.step), int(plan.global_rank), 0x646470])
        torch.manual_seed(int(state.generate_state(1, np.uint64)[0] >> 1))
