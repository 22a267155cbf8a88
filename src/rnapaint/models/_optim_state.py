"""Optimizer state ↔ flat tensors + JSON, so checkpoints are safetensors and never pickles."""

from __future__ import annotations

from typing import Any

import torch


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


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Inverse of :func:`flatten_optimizer` (tensors may be numpy arrays from safetensors)."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, pid, k = key.split(".", 2)
        state.setdefault(int(pid), {})[k] = torch.as_tensor(v)
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
