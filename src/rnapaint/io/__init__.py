"""Readers and writers: expression tables, GCT files, slides, tile stores, model files."""

from .expression import read_expression_table
from .model_files import load_model_files, save_model_files
from .slides import Slide, SlideError
from .spatial import from_spatialdata, to_spatialdata
from .tile_store import TileStore

__all__ = [
    "Slide",
    "SlideError",
    "TileStore",
    "from_spatialdata",
    "load_model_files",
    "read_expression_table",
    "save_model_files",
    "to_spatialdata",
]
