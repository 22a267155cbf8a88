"""Put a folder built aside into place: the one step every folder writer (models, caches, outputs) ends with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def old_path(path: Path) -> Path:
    """Where the previous version of ``path`` waits during a swap: ``.<name>.old`` beside it."""
    return path.with_name(f".{path.name}.old")


def swap_in(staged: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename ``staged`` to ``path``; an existing ``path`` is moved to ``.<name>.old`` first, removed after.

    Each step is a rename, so a kill leaves either version whole: the previous one at
    ``.<name>.old`` when the kill fell between the two renames (its readers put it back).
    """
    staged, path = Path(staged), Path(path)
    if path.exists():
        old = old_path(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(staged, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, path)
