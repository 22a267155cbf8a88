"""AnnData-aware models: set up from an AnnData, trained through Lightning, saved as safetensors + JSON."""

from .beta_vae import BetaVAE
from .cascaded_diffusion import CascadedDiffusion
from .generated_store import GeneratedTileWriter
from .loading import load_model
from .pretrained import pretrained
from .tile_autoencoder import TileAutoencoder
from .tile_encoder import TileEncoder
from .tile_gan import TileGAN

__all__ = [
    "BetaVAE",
    "CascadedDiffusion",
    "GeneratedTileWriter",
    "TileAutoencoder",
    "TileEncoder",
    "TileGAN",
    "load_model",
    "pretrained",
]
