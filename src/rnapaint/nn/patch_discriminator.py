"""A PatchGAN discriminator (Isola et al. 2017), as latent-diffusion autoencoders train against.

Each output logit judges one receptive field (70 px for three layers), so the decoder is pushed to
paint sharp local texture — nuclei edges, chromatin — that L1 and SSIM alone blur away.
"""

from __future__ import annotations

from torch import nn


class PatchDiscriminator(nn.Module):
    """Images ``(N, 3, H, W)`` in [−1, 1] → patch logits ``(N, 1, h, w)``.

    Parameters
    ----------
    width
        Channels of the first layer (doubling each layer, at most 8×).
    n_layers
        Strided layers after the first: the receptive field grows with them (3: 70 px).
    """

    def __init__(self, width: int = 64, n_layers: int = 3):
        super().__init__()
        if width < 1 or n_layers < 1:
            raise ValueError(f"width and n_layers must be ≥ 1, got {width}, {n_layers}.")
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, n_layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():  # pix2pix's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.net(x)
