"""Figures (matplotlib). Plotting never trains a model."""

from .evaluation import evaluation
from .history import history
from .latent import latent_umap
from .response import response
from .tiles import tiles

__all__ = ["evaluation", "history", "latent_umap", "response", "tiles"]
