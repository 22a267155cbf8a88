"""A small ResNet for H&E tiles: BasicBlocks, a width and a depth, global average pooling.

Sized for 32–256 px tiles and for training from scratch on few tiles (self-supervised encoders,
classifiers on a few hundred labelled tiles), where a torchvision ResNet-18 (11M parameters, and
not loadable beside the CPU torch build) is far more than the data can fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("group", "batch")
STEMS = ("small", "large")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # Groups of 8 channels (as in many GroupNorm ResNets); one group when channels do not divide.
    groups = channels // 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (He et al. 2016).

    Parameters
    ----------
    in_channels, out_channels
        Channels in and out.
    stride
        Stride of the first convolution (2 halves the resolution).
    norm
        ``"group"`` (GroupNorm: no batch statistics, the same in training and evaluation) or ``"batch"``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "group"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(norm, out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` → ``(N, out_channels, H / stride, W / stride)``."""
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet feature extractor: stem, stages of :class:`BasicBlock`, global average pooling.

    Stage ``i`` has ``width · 2**i`` channels and ``blocks[i]`` blocks; every stage after the first
    halves the resolution. With ``width=64, blocks=(2, 2, 2, 2), stem="large"`` this is ResNet-18
    without its classifier.

    Parameters
    ----------
    width
        Channels of the first stage.
    blocks
        Blocks per stage; its length is the number of stages.
    in_channels
        Input channels (3 for RGB).
    norm
        ``"group"`` (default: per-tile statistics, so features of a tile do not depend on the
        other tiles of its batch) or ``"batch"``.
    stem
        ``"small"``: one 3×3 convolution at full resolution (CIFAR-style, for 32–64 px tiles);
        ``"large"``: 7×7 stride-2 convolution and 3×3 stride-2 max pooling (ImageNet-style, 16× fewer
        activations, for 128–256 px tiles).

    Attributes
    ----------
    num_features
        Width of the output, ``width · 2**(len(blocks) - 1)``.
    """

    def __init__(
        self,
        width: int = 32,
        blocks: Sequence[int] = (1, 1, 1, 1),
        in_channels: int = 3,
        norm: str = "group",
        stem: str = "small",
    ):
        super().__init__()
        blocks = [int(b) for b in blocks]
        if width < 1 or not blocks or any(b < 1 for b in blocks):
            raise ValueError(f"width and every entry of blocks must be ≥ 1, got width={width}, blocks={blocks}.")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}.")
        self.width, self.blocks, self.norm, self.stem_kind = int(width), tuple(blocks), norm, stem
        if stem == "small":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _norm(norm, width), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages = []
        channels = width
        for i, n in enumerate(blocks):
            out = width * 2**i
            layers = [BasicBlock(channels, out, stride=1 if i == 0 else 2, norm=norm)]
            layers += [BasicBlock(out, out, norm=norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation; the last norm of each block starts at zero, so every block starts as identity.

        Zero-initialised residual branches (Goyal et al. 2017) make small networks train stably
        with large learning rates.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.norm2.weight)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map ``(N, num_features, H', W')`` of images ``(N, C, H, W)``."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, num_features)`` of float images ``(N, C, H, W)``."""
        return self.forward_map(x).mean(dim=(-2, -1))
