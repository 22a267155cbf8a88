"""Tools, scanpy style: wrap models and write their results into AnnData."""

from .latent import reconstruct, shift, synthetic_expression
from .vae import get_model, vae

__all__ = ["get_model", "reconstruct", "shift", "synthetic_expression", "vae"]
