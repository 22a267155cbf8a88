"""Preprocessing, scanpy style: AnnData in, AnnData out (``copy=False`` modifies in place)."""

from .genes import align_genes
from .normalize import log1p, zscore
from .split import split
from .spots import spot_tiles
from .tiling import plan_tiles, tile_slides

__all__ = ["align_genes", "log1p", "plan_tiles", "split", "spot_tiles", "tile_slides", "zscore"]
