"""Pure torch modules: no AnnData, no I/O."""

from .dcgan import DCGANCritic, DCGANGenerator, gradient_penalty, init_dcgan_weights
from .vae import VAE, MLPDecoder, MLPEncoder, vae_loss

__all__ = [
    "VAE", "DCGANCritic", "DCGANGenerator", "MLPDecoder", "MLPEncoder", "gradient_penalty", "init_dcgan_weights",
    "vae_loss",
]
