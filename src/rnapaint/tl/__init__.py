"""Tools, scanpy style: wrap models and write their results into AnnData."""

from .evaluate import evaluate
from .generator import generate, train_generator
from .latent import reconstruct, shift, synthetic_expression
from .vae import get_model, vae

__all__ = [
    "evaluate",
    "generate",
    "get_model",
    "reconstruct",
    "shift",
    "synthetic_expression",
    "train_generator",
    "vae",
]
