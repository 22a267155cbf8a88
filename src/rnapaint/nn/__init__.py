"""Pure torch modules: no AnnData, no I/O."""

from .dcgan import DCGANCritic, DCGANGenerator, gradient_penalty, init_dcgan_weights
from .diffusion_unet import ConditionalUNet, ConditionEncoder
from .inception import FIDInceptionV3
from .patch_discriminator import PatchDiscriminator
from .resnet import BasicBlock, ResNetEncoder
from .ssim import ssim
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
    "PatchDiscriminator",
    "ResNetEncoder",
    "gradient_penalty",
    "init_dcgan_weights",
    "ssim",
    "vae_loss",
]
