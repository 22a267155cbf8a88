"""Model files: ``model.safetensors`` + ``config.json``, written atomically, never pickled.

A model directory holds the tensors in safetensors (which cannot run code when loaded) and a JSON
config holding everything else (hyper-parameters, gene list, class name, a checksum of the
tensor file so a truncated or corrupted copy is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model_files(
    path: str | Path,
    tensors: dict[str, Any],
    config: dict[str, Any],
    overwrite: bool = False,
    children: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory atomically.

    Parameters
    ----------
    path
        Directory to create.
    tensors
        Name → torch tensor or numpy array.
    config
        JSON-serialisable settings; ``format_version`` and ``weights_sha256`` are added.
    overwrite
        Replace an existing directory. A previous version left aside by an interrupted replacement
        (``.<name>.old``) is restored first, so it counts as existing.
    children
        Sub-directory name → callable writing a nested model there (e.g. a generator's β-VAE), run
        inside the temporary directory so the whole tree appears at once.

    Returns
    -------
    The directory written.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    # A swap interrupted by a kill leaves the previous version at .<name>.old: put it back first, so
    # that overwrite=False still protects it.
    _recover(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    arrays = {}
    for k, v in tensors.items():
        if hasattr(v, "detach"):  # torch tensor: floats (bf16 included) as float32, integers as they are
            v = v.detach().cpu()
            arr = v.float().numpy() if v.is_floating_point() else v.numpy()
        else:
            arr = np.asarray(v)
        arrays[k] = np.ascontiguousarray(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a writer that was killed
        shutil.rmtree(stale, ignore_errors=True)
    # Write everything into a sibling temp dir, then swap it in: a killed writer leaves no half model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; a model should be shareable
    try:
        save_file(arrays, str(tmp / WEIGHTS))
        cfg = dict(config, format_version=FORMAT_VERSION, weights_sha256=_sha256(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=1))
        for name, write in (children or {}).items():
            write(tmp / name)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _recover(path: Path) -> None:
    """Finish a swap that a kill interrupted: the previous version waits at ``.<name>.old``."""
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def read_config(cfile: str | Path) -> dict[str, Any]:
    """A model's ``config.json`` as a dict; ``ValueError`` naming the file if it is not a JSON object."""
    cfile = Path(cfile)
    try:
        config = json.loads(cfile.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfile} is not valid JSON (truncated or corrupted?): {e}") from e
    if not isinstance(config, dict):
        raise ValueError(
            f"{cfile} holds a JSON {type(config).__name__}, not an object: not a rnapaint model config "
            "(corrupted or overwritten?)."
        )
    return config


def recover_model_dir(path: str | Path) -> None:
    """Finish a replacement of a model directory that a kill interrupted (see :func:`save_model_files`)."""
    _recover(Path(path))


def load_model_files(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a model directory written by :func:`save_model_files`.

    Returns
    -------
    ``(tensors, config)`` with tensors as numpy arrays.

    Raises
    ------
    ValueError
        If a file is missing, the config is not a JSON object, or the weights do not match the
        checksum recorded when they were saved (truncated or corrupted copy).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    _recover(path)
    wfile, cfile = path / WEIGHTS, path / CONFIG
    for f in (wfile, cfile):
        if not f.is_file():
            raise ValueError(f"{path} is not a rnapaint model directory: {f.name} is missing.")
    config = read_config(cfile)
    expected = config.get("weights_sha256")
    if expected is None:
        raise ValueError(f"{cfile} has no weights_sha256: not written by rnapaint.")
    if _sha256(wfile) != expected:
        raise ValueError(
            f"{wfile} does not match the checksum recorded when it was saved: the file is truncated "
            "or corrupted; copy it again."
        )
    try:
        tensors = load_file(str(wfile))
    except (SafetensorError, OSError) as e:  # pragma: no cover - checksum catches this first
        raise ValueError(f"{wfile} cannot be read as safetensors: {e}") from e
    return tensors, config
