"""RNA-GAN's DCGAN: generator, WGAN-GP critic (optionally a projection critic) and the gradient penalty.

The layer layout follows torchgan's ``DCGANGenerator`` / ``DCGANDiscriminator`` (``step_channels = width``),
which RNA-GAN (Carrillo-Perez et al. 2023) trains at 256 px from a 2048-d input with WGAN-GP. Two changes
from torchgan, both for WGAN-GP: the critic has no BatchNorm (the gradient penalty is defined per sample,
and BatchNorm makes one sample's score depend on the rest of the batch) and no final LeakyReLU (a
Wasserstein critic's output is an unbounded real number).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["DCGANCritic", "DCGANGenerator", "gradient_penalty", "init_dcgan_weights"]

_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def _n_up(image_size: int) -> int:
    """Number of channel-halving blocks between the 4×4 map and the final RGB layer."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 32 <= image_size <= 512
        or image_size & (image_size - 1)
    ):
        raise ValueError(f"image_size must be a power of two in [32, 512], got {image_size!r}.")
    return int(math.log2(image_size)) - 3


def _check_positive(**kwargs: int | None) -> None:
    for name, value in kwargs.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _channels(width: int, doublings: int, max_channels: int | None) -> int:
    # Capping each level separately keeps the high-resolution layers as wide as uncapped and only trims
    # the low-resolution ones, where almost all the parameters are.
    c = width * 2**doublings
    return c if max_channels is None else min(c, max_channels)


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016), for ``model.apply(init_dcgan_weights)``.

    Conv, transposed-conv and linear weights ~ N(0, 0.02); normalisation scales ~ N(1, 0.02); all biases 0.
    For a spectral-normed layer the raw (pre-normalisation) weight is initialised.

    Parameters
    ----------
    module
        Any module; modules other than the ones above are left alone.
    """
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        # A parametrised ``weight`` is recomputed on access; writing into it would be lost.
        weight = (
            module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") else module.weight
        )
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _NORM_LAYERS):
        if getattr(module, "weight", None) is not None:
            nn.init.normal_(module.weight, 1.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """DCGAN generator: latent ``(B, latent_dim)`` → image ``(B, 3, image_size, image_size)`` in [-1, 1].

    With ``n_up = log2(image_size) - 3`` and ``d = width * 2**n_up``: the latent is mapped to a
    ``(B, d, 4, 4)`` map, ``n_up`` blocks halve the channels and double the size (BatchNorm + LeakyReLU(0.2)),
    and a last doubling goes to 3 channels followed by Tanh. With the defaults (RNA-GAN's configuration)
    this has 111.8M parameters, as torchgan's ``DCGANGenerator(2048, 256, step_channels=64)``.

    Parameters
    ----------
    latent_dim
        Input width: 2048 in RNA-GAN (VAE latent + uniform noise).
    image_size
        Output side in pixels, a power of two in [32, 512].
    width
        Channels of the last hidden block (torchgan's ``step_channels``).
    upsample
        ``"transpose"``: ``ConvTranspose2d(c, c // 2, 4, 2, 1)`` as in DCGAN / torchgan.
        ``"resize"``: nearest-neighbour ×2 then ``Conv2d(c, c // 2, 3, 1, 1)`` ("resize-convolution",
        Odena et al. 2016), which avoids the checkerboard artifacts of strided transposed convolutions;
        its first block is a ``Linear(latent_dim, d * 16)`` reshaped to ``(d, 4, 4)``.
    max_channels
        Cap on the channels at every level (``None``: no cap); lowers memory at large ``image_size``.
    """

    def __init__(
        self,
        latent_dim: int = 2048,
        image_size: int = 256,
        width: int = 64,
        upsample: str = "transpose",
        max_channels: int | None = None,
    ):
        super().__init__()
        n_up = _n_up(image_size)
        _check_positive(latent_dim=latent_dim, width=width, max_channels=max_channels)
        if upsample not in ("transpose", "resize"):
            raise ValueError(f"upsample must be 'transpose' or 'resize', got {upsample!r}.")
        self.latent_dim, self.image_size, self.width, self.upsample = latent_dim, image_size, width, upsample
        # chans[k] = channels of the feature map at 4 * 2**k pixels.
        chans = [_channels(width, n_up - k, max_channels) for k in range(n_up + 1)]
        d = chans[0]

        layers: list[nn.Module] = []
        # Convolutions followed by BatchNorm have no bias: BN's shift makes it redundant (as torchgan).
        if upsample == "transpose":
            layers += [nn.Unflatten(1, (latent_dim, 1, 1)), nn.ConvTranspose2d(latent_dim, d, 4, 1, 0, bias=False)]
        else:
            layers += [nn.Linear(latent_dim, d * 16, bias=False), nn.Unflatten(1, (d, 4, 4))]
        layers += [nn.BatchNorm2d(d), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [*self._up(c_in, c_out, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        layers += [*self._up(chans[-1], 3, bias=True), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def _up(self, c_in: int, c_out: int, bias: bool) -> list[nn.Module]:
        if self.upsample == "transpose":
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Paint images.

        Parameters
        ----------
        z
            ``(B, latent_dim)`` generator input.

        Returns
        -------
        ``(B, 3, image_size, image_size)`` images in [-1, 1].
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}.")
        return self.net(z)


class DCGANCritic(nn.Module):
    """DCGAN critic for WGAN-GP: image ``(B, 3, S, S)`` → score ``(B,)``; optionally a projection critic.

    ``Conv2d(3, width, 4, 2, 1)`` + LeakyReLU(0.2), then ``Conv2d(c, 2c, 4, 2, 1)`` + norm + LeakyReLU(0.2)
    down to a ``(B, d, 4, 4)`` map (``d = width * 2**(log2(S) - 3)``), then ``Conv2d(d, 1, 4, 1, 0)``.
    With the defaults this has 44.7M parameters (torchgan's ``DCGANDiscriminator(256, step_channels=64)``
    with per-sample norms instead of BatchNorm).

    Parameters
    ----------
    image_size
        Input side in pixels, a power of two in [32, 512].
    width
        Channels of the first convolution (torchgan's ``step_channels``).
    norm
        ``"layer"``: per-sample layer norm over (C, H, W) with a per-channel affine, implemented as
        ``nn.GroupNorm(1, C)``. ``"spectral"``: spectral normalisation (Miyato et al. 2018) of every conv
        (and of the projection) and no other norm. ``None``: no normalisation. Never BatchNorm: the
        WGAN-GP penalty is per sample, so one sample's score must not depend on the others in the batch.
    condition_dim
        If given, a projection critic (Miyato & Koyama 2018):
        ``score = head(h) + <Linear(condition_dim, d)(condition), sum_{4×4} h>``, with ``h`` the
        ``(B, d, 4, 4)`` features; ``forward`` then requires ``condition``.
    max_channels
        Cap on the channels at every level (``None``: no cap).
    aux_dim
        If given, an auxiliary head (AC-GAN, Odena et al. 2017, as Gulrajani et al. used it with
        WGAN-GP): ``Linear(d, aux_dim)`` of the features averaged over the 4×4 map, a regression of
        the condition from the image, returned by ``forward(..., return_aux=True)``.
    """

    def __init__(
        self,
        image_size: int = 256,
        width: int = 64,
        norm: str | None = "layer",
        condition_dim: int | None = None,
        max_channels: int | None = None,
        aux_dim: int | None = None,
    ):
        super().__init__()
        n_down = _n_up(image_size)
        _check_positive(width=width, condition_dim=condition_dim, max_channels=max_channels, aux_dim=aux_dim)
        if norm not in ("layer", "spectral", None):
            raise ValueError(f"norm must be 'layer', 'spectral' or None, got {norm!r}.")
        self.image_size, self.width, self.norm, self.condition_dim = image_size, width, norm, condition_dim
        # chans[j] = channels after the (j + 1)-th stride-2 conv, at image_size / 2**(j + 1) pixels.
        chans = [_channels(width, j, max_channels) for j in range(n_down + 1)]
        d = chans[-1]

        # A bias before a layer norm is redundant (its mean subtraction removes it).
        bias = norm != "layer"
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 4, 2, 1, bias=True), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(chans):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias))
            if norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers)
        # No bias: a constant offset cancels in the Wasserstein loss (torchgan has none either).
        self.head = nn.Conv2d(d, 1, 4, 1, 0, bias=False)
        # No bias: the projection term vanishes for a zero condition; an unconditional offset is head's job.
        self.projection = None if condition_dim is None else nn.Linear(condition_dim, d, bias=False)
        self.aux = None if aux_dim is None else nn.Linear(d, aux_dim)
        self.apply(init_dcgan_weights)
        if norm == "spectral":
            # Listed first: registering a parametrisation adds submodules while we would be iterating.
            # The auxiliary head is left out: it regresses the condition and is not part of the score
            # whose slope the penalty and the norm bound.
            for m in [m for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear) and m is not self.aux]:
                spectral_norm(m)

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None = None, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Score images.

        Parameters
        ----------
        x
            ``(B, 3, image_size, image_size)`` images in [-1, 1] (any memory format).
        condition
            ``(B, condition_dim)``; required if and only if the critic was built with ``condition_dim``.
        return_aux
            Also return the auxiliary head's ``(B, aux_dim)`` output (critics built with ``aux_dim``).

        Returns
        -------
        ``(B,)`` critic scores (higher = more real), and with ``return_aux`` the auxiliary output.
        """
        if return_aux and self.aux is None:
            raise ValueError("This critic has no auxiliary head; build it with aux_dim.")
        if self.projection is None and condition is not None:
            raise ValueError("This critic has no condition_dim; do not pass a condition.")
        if self.projection is not None:
            if condition is None:
                raise ValueError(f"This projection critic needs a condition of shape (B, {self.condition_dim}).")
            if condition.ndim != 2 or condition.shape != (x.shape[0], self.condition_dim):
                raise ValueError(
                    f"condition must have shape ({x.shape[0]}, {self.condition_dim}), got {tuple(condition.shape)}."
                )
        h = self.features(x)  # (B, d, 4, 4)
        out = self.head(h).flatten()  # (B,)
        if self.projection is not None:
            out = out + (self.projection(condition) * h.sum(dim=(2, 3))).sum(dim=1)
        if return_aux:
            return out, self.aux(h.mean(dim=(2, 3)))
        return out


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017), without the weight λ.

    ``x̂ = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per sample; the penalty is
    ``mean_b (‖∇_x̂ critic(x̂)_b‖₂ - 1)²``, the norm taken over all of a sample's values. It is built with
    ``create_graph=True`` so that it back-propagates into the critic's parameters.

    Parameters
    ----------
    critic
        Called as ``critic(x̂)`` or, if ``condition`` is given, ``critic(x̂, condition)``; returns ``(B,)``
        (any shape with B leading works, scores are summed per batch).
    real, fake
        ``(B, C, H, W)`` batches of the same shape; ``fake`` is detached. channels_last is kept.
    condition
        ``(B, condition_dim)`` or ``None``.

    Returns
    -------
    Scalar float32 penalty. Works under ``torch.autocast``: the norm is computed in float32.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    # Under autocast the generator hands back bf16 while real tiles stay float32: mix in real's dtype.
    real, fake = real.detach(), fake.detach().to(real.dtype)
    eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    x_hat = torch.lerp(fake, real, eps)  # eps * real + (1 - eps) * fake
    if real.ndim == 4 and not real.is_contiguous() and real.is_contiguous(memory_format=torch.channels_last):
        # Keep the caller's channels_last layout so the critic runs its fast path.
        x_hat = x_hat.contiguous(memory_format=torch.channels_last)
    x_hat.requires_grad_(True)
    scores = critic(x_hat) if condition is None else critic(x_hat, condition)
    # Summing is exact: sample b's score depends only on x̂_b, so d(sum)/dx̂_b = d score_b / dx̂_b.
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    grad_norm = torch.linalg.vector_norm(grad.float().reshape(grad.shape[0], -1), ord=2, dim=1)
    return ((grad_norm - 1.0) ** 2).mean()
