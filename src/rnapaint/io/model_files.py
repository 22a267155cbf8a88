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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .folder_swap import swap_in

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


# Sections of a config that record what happened (loss curves may hold NaN); the rest must be finite.
_RECORDS = ("history", "train_info")
_SAID_NO_CONFIG_SUM: set[str] = set()


def _is_weight(name: str, array: np.ndarray) -> bool:
    """A float tensor the network computes with; gene statistics (``var.*``) may be NaN where a gene is absent."""
    return np.issubdtype(array.dtype, np.floating) and not name.startswith("var.")


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of a config as JSON (sorted keys, without its own ``config_sha256``): gene names, statistics,
    options — an edited or reordered entry changes it."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    canonical = json.dumps(json.loads(json.dumps(body)), sort_keys=True)  # tuples → lists, as read back
    return hashlib.sha256(canonical.encode()).hexdigest()


def _non_finite(value: Any, where: str) -> str | None:
    """The first key path under ``where`` holding NaN or ±inf, or ``None``."""
    if isinstance(value, float) and not np.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}[{k!r}]")
        if found:
            return found
    return None


def check_folder_name(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path if it names a folder to write ``what`` into; ``""``, ``"."`` or ``".."`` raise."""
    p = Path(path)
    if str(path).strip() == "" or p.name in ("", ".", ".."):
        raise ValueError(
            f"{str(path)!r} names no folder to write {what} into: pass a new folder's path, e.g. 'out/name'."
        )
    return p


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
        Replace an existing model directory. Only a folder recognisably written by this function
        (``config.json`` with its checksum + ``model.safetensors``, and nothing else but nested model
        directories) is replaced: any other folder or file raises, even with ``overwrite=True``. An
        empty folder is written into. A previous version left aside by an interrupted replacement
        (``.<name>.old``) is restored first, so it counts as existing.
    children
        Sub-directory name → callable writing a nested model there (e.g. a generator's β-VAE), run
        inside the temporary directory so the whole tree appears at once.

    Returns
    -------
    The directory written.

    Raises
    ------
    FileExistsError
        If ``path`` is a model directory and ``overwrite`` is ``False``, or is anything else that is
        not an empty folder (whatever ``overwrite`` says).
    """
    from safetensors.numpy import save_file

    path = check_folder_name(path, "a model")
    # A swap interrupted by a kill leaves the previous version at .<name>.old: put it back first, so
    # that overwrite=False still protects it.
    _recover(path)
    _check_replaceable(path, overwrite)
    arrays = {}
    for k, v in tensors.items():
        if hasattr(v, "detach"):  # torch tensor: floats (bf16 included) as float32, integers as they are
            v = v.detach().cpu()
            arr = v.float().numpy() if v.is_floating_point() else v.numpy()
        else:
            arr = np.asarray(v)
        arrays[k] = np.ascontiguousarray(arr)
        if _is_weight(k, arrays[k]) and not np.isfinite(arrays[k]).all():
            raise ValueError(
                f"tensor {k!r} holds NaN or infinite values: the model diverged; it is not saved to {path}."
            )
    bad = _non_finite({k: v for k, v in config.items() if k not in _RECORDS}, "config")
    if bad:
        raise ValueError(f"{bad} is not a finite number: the model is not saved to {path}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a writer that was killed
        shutil.rmtree(stale, ignore_errors=True)
    # Write everything into a sibling temp dir, then swap it in: a killed writer leaves no half model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; a model should be shareable
    try:
        save_file(arrays, str(tmp / WEIGHTS))
        cfg = dict(config, format_version=FORMAT_VERSION, weights_sha256=_sha256(tmp / WEIGHTS))
        cfg["config_sha256"] = config_digest(cfg)
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=1))
        for name, write in (children or {}).items():
            write(tmp / name)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # an empty folder holds nothing to keep (and Windows cannot rename onto it)
        swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _not_a_model_dir(path: Path) -> str | None:
    """Why ``path`` is not a model directory written by :func:`save_model_files` (``None`` if it is one).

    Such a directory holds ``config.json`` (a JSON object with ``weights_sha256``), ``model.safetensors``
    and, besides them, only nested model directories (``children``).
    """
    if path.is_symlink() or not path.is_dir():
        return "it is not a folder"
    names = {p.name for p in path.iterdir()}
    if not {CONFIG, WEIGHTS} <= names or not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        return f"it holds no {CONFIG} + {WEIGHTS}"
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8
        return f"its {CONFIG} cannot be read"
    if not isinstance(config, dict) or "weights_sha256" not in config:
        return f"its {CONFIG} was not written by rnapaint"
    for name in sorted(names - {CONFIG, WEIGHTS}):
        if _not_a_model_dir(path / name) is not None:
            return f"it also holds {name!r}"
    return None


def _check_replaceable(path: Path, overwrite: bool) -> None:
    """Raise unless ``path`` is absent, an empty folder, or (with ``overwrite``) a model directory."""
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    why = _not_a_model_dir(path)
    if why is not None:
        # Never delete what is not ours: a results folder, a TileStore, another tool's files.
        raise FileExistsError(
            f"{path} exists and is not a rnapaint model directory ({why}); rnapaint does not replace it, "
            "even with overwrite=True. Pick another path."
        )
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")


def check_model_destination(path: str | Path) -> None:
    """Raise ``FileExistsError`` now if saving a model at ``path`` (with ``overwrite=True``) would.

    For callers that train before they save (``save_path=``, ``checkpoint_dir=``): a folder that
    cannot be replaced is reported before the training, not after it.
    """
    _recover(Path(path))
    _check_replaceable(Path(path), overwrite=True)


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
    """A model's ``config.json`` as a dict.

    Raises
    ------
    ValueError
        Naming the file, if it is not UTF-8 JSON holding an object, or was written in a newer format
        than this rnapaint reads.
    """
    cfile = Path(cfile)
    try:
        config = json.loads(cfile.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:  # binary garbage, not the JSON rnapaint writes
        raise ValueError(f"{cfile} is not UTF-8 text (corrupted or overwritten?): {e}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfile} is not valid JSON (truncated or corrupted?): {e}") from e
    if not isinstance(config, dict):
        raise ValueError(
            f"{cfile} holds a JSON {type(config).__name__}, not an object: not a rnapaint model config "
            "(corrupted or overwritten?)."
        )
    version = config.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{cfile} has format_version {version!r}, not an integer: the file is corrupted.")
    if version > FORMAT_VERSION:
        # A newer layout may mean something else by the same keys: refuse rather than misread it.
        raise ValueError(
            f"{cfile} was written by a newer rnapaint (format {version} > {FORMAT_VERSION}); upgrade rnapaint."
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
        If a file is missing, the config is not UTF-8 JSON holding an object or was written by a
        newer rnapaint, or the weights do not match the checksum recorded when they were saved
        (truncated or corrupted copy).
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
    _check_config_integrity(cfile, config)
    try:
        tensors = load_file(str(wfile))
    except (SafetensorError, OSError) as e:  # pragma: no cover - checksum catches this first
        raise ValueError(f"{wfile} cannot be read as safetensors: {e}") from e
    for name, t in tensors.items():
        if _is_weight(name, t) and not np.isfinite(t).all():
            raise ValueError(
                f"{wfile}: tensor {name!r} holds NaN or infinite values: the model diverged before it was saved."
            )
    return tensors, config


def _check_config_integrity(cfile: Path, config: dict[str, Any]) -> None:
    """Raise if ``config.json`` was changed after saving, or holds non-finite settings."""
    recorded = config.get("config_sha256")
    if recorded is None:
        if str(cfile) not in _SAID_NO_CONFIG_SUM:  # saved before configs had a checksum
            _SAID_NO_CONFIG_SUM.add(str(cfile))
            warnings.warn(
                f"{cfile} records no checksum of itself (saved by an older rnapaint): an edit to it would go "
                "unnoticed. Save the model again to protect it.",
                UserWarning,
                stacklevel=3,
            )
    elif config_digest(config) != recorded:
        raise ValueError(
            f"{cfile} does not match the checksum recorded when it was saved: it was edited or corrupted "
            "(gene names, statistics or settings would no longer fit the weights); copy the model again."
        )
    bad = _non_finite({k: v for k, v in config.items() if k not in _RECORDS}, "config")
    if bad:
        raise ValueError(f"{cfile}: {bad} is not a finite number: the config is damaged or the model diverged.")
