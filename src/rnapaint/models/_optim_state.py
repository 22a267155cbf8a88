"""Optimizer state ↔ flat tensors + JSON, so checkpoints are safetensors and never pickles."""

from __future__ import annotations

from typing import Any

import torch

from .._logging import logger


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of ``opt.state_dict()`` under ``{prefix}.{param}.{key}``, the rest as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(
    opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, Any], meta: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """Inverse of :func:`flatten_optimizer` (tensors may be numpy arrays from safetensors).

    Only the state (moments, step counts) comes from the checkpoint. The hyperparameters (lr, betas,
    weight decay, …) stay those the optimizer was built with, i.e. the resuming call's settings:
    ``torch``'s ``load_state_dict`` would put the checkpoint's back, so new ones would be silently
    ignored. Returns ``{name: (checkpoint value, value used)}`` for those that differ.
    """
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = torch.as_tensor(v)
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    settings = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    changed: dict[str, tuple[Any, Any]] = {}
    for group, mine in zip(opt.param_groups, settings, strict=True):
        for k, v in mine.items():
            old = group.get(k)
            if _differs(old, v):
                changed[k] = (old, v)
        group.update(mine)
    return changed


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # JSON turns tuples into lists
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b, strict=True))
    return a != b


_IMPLEMENTATION = {"fused", "foreach", "capturable", "differentiable"}


def log_new_settings(changed: dict[str, tuple[Any, Any]]) -> None:
    """Say which optimizer settings of a resumed run differ from its checkpoint's (this run's are used)."""
    # How the update runs (fused kernels, ...) follows the device, not the user: not worth a line.
    changed = {k: v for k, v in changed.items() if k.split()[-1] not in _IMPLEMENTATION}
    if changed:
        what = ", ".join(f"{k} {new} (checkpoint {old})" for k, (old, new) in changed.items())
        logger.info(f"Resuming with this run's optimizer settings: {what}.")
