"""Readers and writers: expression tables, GCT files, model files (safetensors + JSON)."""

from .expression import read_expression_table
from .model_files import load_model_files, save_model_files

__all__ = ["load_model_files", "read_expression_table", "save_model_files"]
