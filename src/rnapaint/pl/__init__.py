"""Figures (matplotlib). Plotting never trains a model."""

from .history import history
from .latent import latent_umap
from .response import response
from .tiles import tiles

__all__ = ["history", "latent_umap", "response", "tiles"]
