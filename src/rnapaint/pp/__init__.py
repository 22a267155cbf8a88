"""Preprocessing, scanpy style: AnnData in, AnnData out (``copy=False`` modifies in place)."""

from .genes import align_genes
from .normalize import log1p, zscore
from .split import split

__all__ = ["align_genes", "log1p", "split", "zscore"]
