"""Data sets: the real ones (read from a data root) and a procedural toy set with known ground truth."""

from ._her2st import her2st
from ._lc25000 import LabelledTiles, lc25000
from ._tcga import tcga_tumor_normal
from ._toy import toy, toy_tile_properties

__all__ = ["LabelledTiles", "her2st", "lc25000", "tcga_tumor_normal", "toy", "toy_tile_properties"]
