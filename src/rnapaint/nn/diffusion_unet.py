"""Expression-conditioned UNet for pixel-space diffusion: a diffusers ``UNet2DConditionModel`` fed
cross-attention tokens and a timestep-embedding offset made from the expression condition.

diffusers is imported when a network is built, not when :mod:`rnapaint.nn` is imported (it takes
seconds), so the rest of the package stays quick to import without the ``diffusion`` extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import nn

AUG_EMBED_DIM = 64  # sinusoidal embedding of the super-resolution stage's noise-augmentation level


def require_diffusers() -> None:
    """Raise an ImportError that says how to install diffusers when it is missing.

    It is the ``diffusion`` extra, not a base dependency: a plain ``pip install rnapaint`` has it not.
    """
    if importlib.util.find_spec("diffusers") is None:
        raise ImportError(
            "The diffusion models (RNA-CDM, rp.models.CascadedDiffusion, `rnapaint demo`) need diffusers: "
            "pip install 'rnapaint[diffusion]'."
        )


class ConditionEncoder(nn.Module):
    """Condition vector → cross-attention tokens and a pooled vector, with a learned null condition.

    ``forward(c, drop)`` takes ``c`` ``(n, d)`` and an optional boolean ``drop`` ``(n,)``: dropped
    rows use the learned null condition instead (classifier-free guidance trains on both). Returns
    tokens ``(n, n_tokens, token_dim)`` and the pooled vector ``(n, hidden)``.

    Parameters
    ----------
    in_dim
        Size ``d`` of the condition (β-VAE latent, or the z-scored genes for a learned encoder).
    n_tokens, token_dim
        Shape of the token sequence the UNet cross-attends to.
    hidden
        Width of the MLP, and size of the pooled vector added to the timestep embedding.
    """

    def __init__(self, in_dim: int, n_tokens: int = 8, token_dim: int = 256, hidden: int = 512):
        super().__init__()
        self.n_tokens, self.token_dim = n_tokens, token_dim
        self.null = nn.Parameter(torch.zeros(in_dim))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.to_tokens = nn.Linear(hidden, n_tokens * token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, c: torch.Tensor, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if drop is not None:
            c = torch.where(drop[:, None], self.null.to(c.dtype).expand_as(c), c)
        h = self.mlp(c)
        tokens = self.norm(self.to_tokens(h).view(len(c), self.n_tokens, self.token_dim))
        return tokens, h


def default_norm_groups(channels: Sequence[int]) -> int:
    """GroupNorm groups for a UNet with these channels per level: the most, up to 32, that leave at least
    4 channels a group at the first level and divide every level's channels.

    With one channel a group, GroupNorm is instance norm: it removes every feature map's spatial mean,
    and with it an image's overall colour, which a super-resolution stage must carry over from its
    low-resolution input (measured on the toy set: hue followed 0.94 with 4 channels a group at 16 px,
    0.00 with 1).
    """
    channels = [int(c) for c in channels]
    for groups in range(max(1, min(32, channels[0] // 4)), 0, -1):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1


class ConditionalUNet(nn.Module):
    """A diffusion denoiser conditioned on expression: cross-attention tokens + timestep-embedding offset.

    ``forward(x, t, c, drop=None, low_res=None, aug_t=None)`` → the network output ``(n, 3, H, W)``
    (ε or v): ``x`` ``(n, 3, H, W)``, ``t`` ``(n,)`` timesteps, ``c`` ``(n, condition_dim)``,
    ``drop`` ``(n,)`` bool, and for the super-resolution stage ``low_res`` ``(n, 3, H, W)`` and
    ``aug_t`` ``(n,)``.

    Parameters
    ----------
    image_size
        Side of the (square) images it denoises.
    condition_dim
        Size of the condition vector.
    channels
        ``block_out_channels`` of the UNet, one per resolution level.
    attention
        Per level, whether the blocks cross-attend to the condition tokens (the middle block always
        does).
    layers_per_block
        ResNet layers per level.
    low_res
        Super-resolution stage: the input is the noisy image concatenated with the upsampled
        low-resolution image (6 channels), and the low-resolution image's noise-augmentation level
        is embedded beside the condition.
    n_tokens, token_dim, hidden
        :class:`ConditionEncoder` settings.
    head_dim
        Attention head size: a level with ``c`` channels has ``c // head_dim`` heads (its channels,
        and the last level's, which the middle block uses, must be multiples of it).
    norm_groups
        GroupNorm groups (every level's channels must be multiples of it); default
        :func:`default_norm_groups`: at least 4 channels a group. Models saved before 2026-11-24 used
        ``min(32, channels[0])``, one channel a group for narrow networks, and load with it.
    """

    def __init__(
        self,
        image_size: int,
        condition_dim: int,
        channels: Sequence[int] = (128, 256, 256, 512),
        attention: Sequence[bool] = (False, True, True, True),
        layers_per_block: int = 2,
        low_res: bool = False,
        n_tokens: int = 8,
        token_dim: int = 256,
        hidden: int = 512,
        head_dim: int = 32,
        norm_groups: int | None = None,
    ):
        require_diffusers()
        from diffusers import UNet2DConditionModel

        super().__init__()
        channels, attention = tuple(int(c) for c in channels), tuple(bool(a) for a in attention)
        if len(channels) != len(attention):
            raise ValueError(f"channels and attention need one entry per level, got {channels} and {attention}.")
        if image_size % 2 ** (len(channels) - 1):
            raise ValueError(
                f"image_size {image_size} is not divisible by 2^{len(channels) - 1} ({len(channels)} levels)."
            )
        groups = default_norm_groups(channels) if norm_groups is None else int(norm_groups)
        if groups < 1 or any(c % groups for c in channels):
            raise ValueError(f"every channel count must be a multiple of {groups} (GroupNorm groups).")
        if (
            head_dim < 1
            or any(c % head_dim for c, a in zip(channels, attention, strict=True) if a)
            or (channels[-1] % head_dim)
        ):
            raise ValueError(
                f"head_dim {head_dim} must divide the channels of every attention level and of the last "
                f"level (the middle block), got channels {channels} with attention {attention}."
            )
        self.low_res = bool(low_res)
        self.cond = ConditionEncoder(condition_dim, n_tokens, token_dim, hidden)
        self.unet = UNet2DConditionModel(
            sample_size=image_size,
            in_channels=6 if low_res else 3,
            out_channels=3,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
            block_out_channels=channels,
            layers_per_block=layers_per_block,
            norm_num_groups=groups,
            cross_attention_dim=token_dim,
            # diffusers reads attention_head_dim as the number of heads (a naming bug it keeps for
            # compatibility, diffusers#2011): pass heads per level so each head is head_dim wide.
            attention_head_dim=tuple(max(1, c // head_dim) for c in channels),
            class_embed_type="projection",
            projection_class_embeddings_input_dim=hidden + (AUG_EMBED_DIM if low_res else 0),
        )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        c: torch.Tensor,
        drop: torch.Tensor | None = None,
        low_res: torch.Tensor | None = None,
        aug_t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        tokens, pooled = self.cond(c, drop)
        if self.low_res:
            if low_res is None or aug_t is None:
                raise ValueError("The super-resolution stage needs low_res and aug_t.")
            x = torch.cat([x, low_res.to(x.dtype)], 1)
            aug = get_timestep_embedding(aug_t, AUG_EMBED_DIM, flip_sin_to_cos=True, downscale_freq_shift=0)
            pooled = torch.cat([pooled, aug.to(pooled.dtype)], 1)
        return self.unet(x, t, encoder_hidden_states=tokens, class_labels=pooled, return_dict=False)[0]
