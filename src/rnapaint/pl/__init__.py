"""Figures (matplotlib). Plotting never trains a model."""

from .evaluation import evaluation
from .history import history
from .latent import latent_umap
from .response import response
from .tiles import tiles
from .virtual_he import virtual_he

__all__ = ["evaluation", "history", "latent_umap", "response", "tiles", "virtual_he"]
