"""Tile data for training: the TileStore, paired expression ↔ tile datasets, augmentations, loaders."""

from ..io.tile_store import TileStore
from .augment import TileAugment
from .loader import UnitSampler, tile_loader
from .paired import PairedTiles

__all__ = ["PairedTiles", "TileAugment", "TileStore", "UnitSampler", "tile_loader"]
