"""Tools, scanpy style: wrap models and write their results into AnnData."""

from .generator import generate, train_generator
from .latent import reconstruct, shift, synthetic_expression
from .vae import get_model, vae

__all__ = [
    "generate", "get_model", "reconstruct", "shift", "synthetic_expression", "train_generator", "vae",
]
