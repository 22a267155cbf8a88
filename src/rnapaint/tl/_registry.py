"""Trained models of this session, found again from the AnnData they wrote into.

AnnData cannot hold a torch model (``write_h5ad`` would fail), so ``uns[key]['model_uid']``
names the model here, and ``uns[key]['model_path']`` names its files when it was saved.
"""

from __future__ import annotations

import uuid
from typing import Any

_MODELS: dict[str, Any] = {}


def register(model: Any) -> str:
    uid = uuid.uuid4().hex
    _MODELS[uid] = model
    return uid


def lookup(uid: str) -> Any | None:
    return _MODELS.get(uid)
