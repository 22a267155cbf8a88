"""Editing a saved model's config.json in a test: a consistent edit carries a matching checksum."""

from __future__ import annotations

from typing import Any

from rnapaint.io.model_files import config_digest


def signed(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with its ``config_sha256`` recomputed, as a deliberate (or hostile) edit would leave it, so that a
    test reaches the check behind the checksum (unknown options, weights that do not fit, old layouts)."""
    return dict(cfg, config_sha256=config_digest(cfg))
