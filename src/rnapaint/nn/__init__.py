"""Pure torch modules: no AnnData, no I/O."""

from .vae import VAE, MLPDecoder, MLPEncoder, vae_loss

__all__ = ["VAE", "MLPDecoder", "MLPEncoder", "vae_loss"]
