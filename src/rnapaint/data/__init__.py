"""Tile data for training: the TileStore, paired expression ↔ tile datasets, crops, augmentations, loaders."""

from ..io.tile_store import TileStore
from .augment import TileAugment
from .crops import TileCrops, crop_loader
from .image_sources import ImageSource, image_sources
from .loader import UnitSampler, tile_loader
from .paired import PairedTiles

__all__ = [
    "ImageSource",
    "PairedTiles",
    "TileAugment",
    "TileCrops",
    "TileStore",
    "UnitSampler",
    "crop_loader",
    "image_sources",
    "tile_loader",
]
