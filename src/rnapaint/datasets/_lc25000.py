"""LC25000 lung tiles (Borkowski et al. 2019): labelled H&E tiles for classifiers and encoders."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ._root import data_dir

SOURCE = "LC25000 (Borkowski et al. 2019, arXiv:1912.12142; github.com/tampapath/lung_colon_image_set)"
# Folder name → what it holds; folders are read in this order, so codes are stable.
CLASSES = {
    "lung_aca": "lung adenocarcinoma",
    "lung_n": "benign lung tissue",
    "lung_scc": "lung squamous cell carcinoma",
}
_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class LabelledTiles:
    """Tiles with one class label each.

    Attributes
    ----------
    tiles
        uint8 RGB ``(n, H, W, 3)``.
    labels
        ``(n,)`` class names (the data set's folder names, e.g. ``'lung_aca'``).
    classes
        The class names in code order.
    files
        ``(n,)`` file names (``<class>/<file>``), to trace a tile back to its source.
    """

    tiles: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    files: tuple[str, ...]

    @property
    def codes(self) -> np.ndarray:
        """``(n,)`` int64 class indices into :attr:`classes`."""
        return np.searchsorted(np.asarray(self.classes), self.labels).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}: {int((self.labels == c).sum())}" for c in self.classes)
        return f"LabelledTiles({len(self)} tiles of {self.tiles.shape[1]}×{self.tiles.shape[2]} px; {counts})"


def lc25000(root: str | os.PathLike | None = None, size: int | None = None) -> LabelledTiles:
    """Lung tiles of LC25000: adenocarcinoma, benign lung and squamous cell carcinoma.

    LC25000 augmented ~250 source images a class into 5,000 (rotations, flips), so near-duplicates
    sit in every class: cross-validated accuracies on it are optimistic.

    Parameters
    ----------
    root
        Data root holding ``lc25000_lung/`` with one folder of JPEG tiles per class (``lung_aca``,
        ``lung_n``, ``lung_scc``); ``None`` reads ``$RNAPAINT_DATA``.
    size
        Resize every tile to ``size × size`` px (Lanczos, antialiased), e.g. to a generator's tile
        size; ``None`` keeps them as stored (224 px in the shared copy).

    Returns
    -------
    :class:`LabelledTiles`: ``tiles`` uint8 ``(n, H, W, 3)``, ``labels`` (folder names), ``classes``,
    ``files``; tiles ordered by class, then file name.

    Raises
    ------
    FileNotFoundError
        If the folder or a class folder is missing or holds no images.
    ValueError
        If ``size`` is not positive, or the stored tiles differ in size and ``size`` is ``None``.
    """
    from PIL import Image

    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    folder = data_dir(root, "lc25000_lung", SOURCE)
    tiles, labels, files = [], [], []
    for cls in CLASSES:
        paths = sorted(p for p in (folder / cls).glob("*") if p.suffix.lower() in _SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"{folder / cls} is missing or holds no images; the data comes from {SOURCE}.")
        for p in paths:
            with Image.open(p) as img:
                img = img.convert("RGB")
                if size is not None and img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.LANCZOS)
                tiles.append(np.asarray(img, dtype=np.uint8))
            labels.append(cls)
            files.append(f"{cls}/{p.name}")
    shapes = {t.shape for t in tiles}
    if len(shapes) > 1:
        raise ValueError(f"The tiles under {folder} differ in size ({sorted(shapes)}); pass size=... to resize them.")
    return LabelledTiles(np.stack(tiles), np.asarray(labels), tuple(CLASSES), tuple(files))
