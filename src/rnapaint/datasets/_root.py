"""Where the real data lives: ``root=`` or ``$RNAPAINT_DATA``, in the layout of the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "RNAPAINT_DATA"


def data_dir(root: str | os.PathLike | None, name: str, source: str) -> Path:
    """Return ``<root>/<name>``, raising an error that says where to get the data when it is absent.

    Parameters
    ----------
    root
        Folder holding ``tcga_tumor_normal/``, ``her2st/``, ...; ``None`` reads ``$RNAPAINT_DATA``.
    name
        Sub-folder of this data set.
    source
        Where the data comes from, for the error message.
    """
    if root is None:
        root = os.environ.get(ENV)
        if not root:
            raise FileNotFoundError(
                f"No data root given: pass root=... or set the environment variable {ENV} to the folder "
                f"that holds '{name}/'. The data comes from {source}."
            )
    path = Path(root).expanduser() / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist. Put '{name}/' there; it comes from {source}.")
    return path
