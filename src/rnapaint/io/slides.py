"""Whole-slide and plain images behind one small interface: OpenSlide when it can, PIL otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_PLAIN = {".jpg", ".jpeg", ".png"}
# Whole-slide formats that only OpenSlide reads sensibly: PIL would decode level 0 whole into memory
# (several GB for a scan), or cannot read them at all.
WSI_FORMATS = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"}


class SlideError(ValueError):
    """A slide that cannot be read (missing, corrupt, unsupported)."""


class Slide:
    """A pyramidal slide (OpenSlide: SVS, NDPI, MRXS, generic tiled TIFF…) or a plain image (PIL).

    Parameters
    ----------
    path
        The file.
    mpp
        Microns per pixel at level 0; overrides the slide's own value (required for plain images
        and for slides that do not record it).

    Raises
    ------
    SlideError
        If the file is missing or unreadable, or is a whole-slide format (``.svs``, ``.ndpi``,
        ``.mrxs``, ``.scn``, ``.vms``, ``.vmu``, ``.bif``, ``.svslide``) while OpenSlide is not
        installed (``pip install 'rnapaint[wsi]'``). Other images (PNG, JPEG, plain TIFF) are read
        with PIL when OpenSlide cannot open them.

    Attributes
    ----------
    dimensions
        ``(width, height)`` at level 0.
    level_dimensions, level_downsamples
        Per pyramid level (one level for plain images).
    mpp
        µm/px at level 0, or ``None`` when unknown.
    """

    def __init__(self, path: str | os.PathLike, mpp: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise SlideError(f"No slide at {self.path}.")
        self._osr = None
        self._img = None
        suffix = self.path.suffix.lower()
        if suffix not in _PLAIN:
            try:
                import openslide
            except ImportError as e:
                if suffix in WSI_FORMATS:
                    raise SlideError(
                        f"{self.path.name} is a whole-slide image ({suffix}) and OpenSlide is not installed: "
                        "install it with `pip install 'rnapaint[wsi]'` (openslide-python and openslide-bin)."
                    ) from e
                openslide = None
            if openslide is not None:
                try:
                    self._osr = openslide.OpenSlide(str(self.path))
                except Exception as e:  # OpenSlideError, OpenSlideUnsupportedFormatError
                    if suffix in WSI_FORMATS:
                        raise SlideError(f"OpenSlide cannot read {self.path}: {e}") from e
        if self._osr is None:
            self._open_plain()
        own = self._own_mpp()
        self.mpp = float(mpp) if mpp is not None else own

    def _open_plain(self) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # H&E scans are legitimately huge
        try:
            img = Image.open(self.path)
            img.load()
        except Exception as e:
            raise SlideError(f"Cannot read {self.path} as an image: {e}") from e
        self._img = img.convert("RGB")

    def _own_mpp(self) -> float | None:
        if self._osr is None:
            return None
        v = self._osr.properties.get("openslide.mpp-x")
        try:
            return float(v) if v is not None and float(v) > 0 else None
        except ValueError:
            return None

    @property
    def dimensions(self) -> tuple[int, int]:
        return self._osr.dimensions if self._osr is not None else self._img.size

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._osr.level_dimensions if self._osr is not None else (self._img.size,)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._osr.level_downsamples) if self._osr is not None else (1.0,)

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """RGB pixels ``(height, width, 3)`` uint8 of a level, its top-left given in level-0 pixels.

        Areas outside the slide come back white (OpenSlide returns them transparent).
        """
        if self._osr is not None:
            rgba = np.asarray(self._osr.read_region((int(x), int(y)), level, (int(width), int(height))))
            alpha = rgba[..., 3:4].astype(np.float32) / 255.0
            rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
            return rgb.round().astype(np.uint8)
        box = (int(x), int(y), int(x) + int(width), int(y) + int(height))
        return np.asarray(self._img.crop(box))  # PIL pads outside with black: callers check bounds

    def thumbnail(self, max_size: int = 2048) -> tuple[np.ndarray, float]:
        """A low-resolution RGB view and its downsample factor relative to level 0."""
        w, h = self.dimensions
        factor = max(w, h) / max_size if max(w, h) > max_size else 1.0
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        if self._osr is not None:
            img = self._osr.get_thumbnail(size).convert("RGB")
        else:
            from PIL import Image

            img = self._img.resize(size, Image.Resampling.BOX)
        arr = np.asarray(img)
        return arr, w / arr.shape[1]

    def close(self) -> None:
        if self._osr is not None:
            self._osr.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
