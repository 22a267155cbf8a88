"""rnapaint: learn how gene expression shapes tissue and paint H&E tiles from expression.

The sub-packages follow the layers of the design (each imports only those before it)::

    io → datasets → pp → data → nn → models → metrics → tl → pl → cli

They are imported lazily, so ``import rnapaint as rp`` stays fast and torch, lightning and
scanpy are loaded only when a function that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

_SUBMODULES = ("io", "datasets", "pp", "data", "nn", "models", "metrics", "tl", "pl", "cli")

__all__ = [
    "__version__",
    "cli",
    "data",
    "datasets",
    "io",
    "metrics",
    "models",
    "nn",
    "pl",
    "pp",
    "tl",
]

if TYPE_CHECKING:  # pragma: no cover
    from . import cli, data, datasets, io, metrics, models, nn, pl, pp, tl


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'rnapaint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
