"""The package logger: functions log what they added, as scanpy does (``Adding adata.obsm['X_vae']``)."""

from __future__ import annotations

import logging

logger = logging.getLogger("rnapaint")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
