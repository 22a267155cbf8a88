"""Pixel roughness of image tiles: a texture summary shared by the benchmark scripts (numpy only)."""

from __future__ import annotations

import numpy as np


def roughness(tiles: np.ndarray) -> float:
    """Mean absolute difference between horizontally and vertically adjacent pixels (0–255).

    Parameters
    ----------
    tiles
        ``(..., H, W, 3)`` uint8 (or float on the 0–255 scale).
    """
    t = np.asarray(tiles, np.float32)
    return float((np.abs(np.diff(t, axis=-2)).mean() + np.abs(np.diff(t, axis=-3)).mean()) / 2)
