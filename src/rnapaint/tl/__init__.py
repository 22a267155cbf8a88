"""Tools, scanpy style: wrap models and write their results into AnnData."""

from .evaluate import evaluate
from .generator import generate, train_generator
from .latent import reconstruct, shift, synthetic_expression
from .latents_cache import cached_latents, encode_tiles
from .vae import get_model, vae
from .virtual_he import virtual_he

__all__ = [
    "cached_latents",
    "encode_tiles",
    "evaluate",
    "generate",
    "get_model",
    "reconstruct",
    "shift",
    "synthetic_expression",
    "train_generator",
    "vae",
    "virtual_he",
]
