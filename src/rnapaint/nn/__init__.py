"""Pure torch modules: no AnnData, no I/O."""

from .dcgan import DCGANCritic, DCGANGenerator, gradient_penalty, init_dcgan_weights
from .diffusion_unet import ConditionalUNet, ConditionEncoder
from .inception import FIDInceptionV3
from .resnet import BasicBlock, ResNetEncoder
from .vae import VAE, MLPDecoder, MLPEncoder, vae_loss

__all__ = [
    "VAE",
    "BasicBlock",
    "ConditionEncoder",
    "ConditionalUNet",
    "DCGANCritic",
    "DCGANGenerator",
    "FIDInceptionV3",
    "MLPDecoder",
    "MLPEncoder",
    "ResNetEncoder",
    "gradient_penalty",
    "init_dcgan_weights",
    "vae_loss",
]
