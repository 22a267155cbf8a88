"""The β-VAE of RNA-GAN: MLP encoder and decoder with BatchNorm and LeakyReLU."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Expression ``(batch, n_genes)`` → posterior mean and log-variance ``(batch, latent_dim)``."""

    def __init__(self, n_genes: int, hidden: Sequence[int], latent_dim: int, dropout: float = 0.0):
        super().__init__()
        self.body = _mlp([n_genes, *hidden], dropout)
        self.mu = nn.Linear(hidden[-1], latent_dim)
        self.logvar = nn.Linear(hidden[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h).clamp(-20.0, 10.0)


class MLPDecoder(nn.Module):
    """Latent ``(batch, latent_dim)`` → expression ``(batch, n_genes)`` (z-score units, linear output)."""

    def __init__(self, n_genes: int, hidden: Sequence[int], latent_dim: int, dropout: float = 0.0):
        super().__init__()
        self.body = _mlp([latent_dim, *reversed(hidden)], dropout)
        self.out = nn.Linear(hidden[0], n_genes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))


class VAE(nn.Module):
    """β-VAE for expression profiles.

    Parameters
    ----------
    n_genes
        Input width.
    hidden
        Encoder widths (the decoder mirrors them); RNA-GAN uses ``(6000, 4096)``.
    latent_dim
        2048 in RNA-GAN, 200 in RNA-CDM.
    dropout
        Dropout after each hidden block.
    """

    def __init__(
        self, n_genes: int, hidden: Sequence[int] = (6000, 4096), latent_dim: int = 2048, dropout: float = 0.0
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden needs at least one layer width.")
        self.encoder = MLPEncoder(n_genes, hidden, latent_dim, dropout)
        self.decoder = MLPDecoder(n_genes, hidden, latent_dim, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return reconstruction ``(batch, n_genes)``, ``mu`` and ``logvar`` ``(batch, latent_dim)``."""
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RNA-GAN's objective: mean squared error + β · KL(q(z|x) ‖ N(0, I)).

    The reconstruction term is the mean over genes and samples, the KL term the sum over latent
    dimensions averaged over samples (as in RNA-GAN's code), so β is comparable with the paper's.

    Returns
    -------
    ``(loss, reconstruction, kl)``, scalars.
    """
    recon_loss = torch.mean((recon.float() - x.float()) ** 2)
    kl = torch.mean(-0.5 * torch.sum(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp(), dim=1))
    return recon_loss + beta * kl, recon_loss, kl
