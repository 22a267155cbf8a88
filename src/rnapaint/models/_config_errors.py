"""A model's ``load`` turns a config.json that lacks entries into a ValueError naming the folder."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def refuses_incomplete_config(load: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``load(cls, path, ...)`` classmethod body: ``KeyError``/``TypeError`` from reading the
    config (a missing entry, an option this version does not know) become a ``ValueError`` that says
    which folder and why, instead of a bare ``KeyError: 'var_names'``."""

    @functools.wraps(load)
    def wrapper(cls, path, *args, **kwargs):
        try:
            return load(cls, path, *args, **kwargs)
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{path}: config.json does not describe a complete {cls.__name__} ({type(e).__name__}: {e}); "
                "it was written by another rnapaint version, or edited."
            ) from e

    return wrapper


def refuse_unknown_options(path: Any, cls_name: str, options: dict[str, Any], known: frozenset[str]) -> None:
    """Refuse a config whose ``model`` entry holds options this version does not know.

    Loaders read the options they need by name, so an extra one (a hand edit, or a key a later
    version added without a format bump) would otherwise load silently and be ignored.
    """
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"{path}: config.json gives {cls_name} options this rnapaint version does not know: {unknown}; "
            "it was written by another rnapaint version, or edited."
        )


# Network sizes past these are refused before any memory is allocated (an edited or hostile config).
_SIZE_WORDS = ("width", "channels", "hidden", "dim", "size", "units", "blocks", "heads")
MAX_SIZE = 65_536


def refuse_absurd_sizes(path: Any, cls_name: str, options: Any, where: str = "model") -> None:
    """Raise a ValueError naming the first size-like option (``width``, ``channels``, ``hidden``…) over 65,536."""
    items = options.items() if isinstance(options, dict) else ()
    for key, value in items:
        at = f"{where}[{key!r}]"
        if isinstance(value, dict):
            refuse_absurd_sizes(path, cls_name, value, at)
            continue
        if not any(w in str(key) for w in _SIZE_WORDS):
            continue
        values = value if isinstance(value, list) else [value]
        big = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v > MAX_SIZE]
        if big:
            raise ValueError(
                f"{path}: config.json sets {cls_name} {at} = {value!r}, beyond what rnapaint builds (≤ {MAX_SIZE}): "
                "an edited or damaged file."
            )
