"""The checkerboard measure sees stride-2 transposed-convolution artifacts and not natural texture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import rnapaint as rp
from rnapaint.nn.dcgan import DCGANGenerator


def _smooth_tiles(n: int = 48, size: int = 64, seed: int = 0) -> np.ndarray:
    """Texture with a smooth spectrum: blurred noise (no periodic structure)."""
    rng = np.random.default_rng(seed)
    x = np.stack([gaussian_filter(rng.normal(size=(size, size, 3)), (2, 2, 0)) for _ in range(n)])
    return np.clip(128 + x / x.std() * 30, 0, 255).astype(np.uint8)


def _generated(upsample: str, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    g = DCGANGenerator(latent_dim=16, image_size=64, width=16, upsample=upsample).eval()
    with torch.no_grad():
        y = g(torch.randn(48, 16))
    return ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def test_checkerboard_sees_a_periodic_pattern_and_not_texture():
    smooth = _smooth_tiles()
    s = rp.metrics.checkerboard(smooth, n_boot=50)
    assert abs(s.value) < 1.0 and s.ci_low <= s.value <= s.ci_high and s.n_tiles == 48
    # a faint period-2 checkerboard (±3 grey levels on a spread of 30)
    cb = (np.indices((64, 64)).sum(0) % 2)[None, :, :, None] * 6
    marked = rp.metrics.checkerboard(np.clip(smooth.astype(int) + cb, 0, 255).astype(np.uint8), n_boot=50)
    assert marked.per_period[2] > 10 and abs(marked.per_period[8]) < 1.0
    assert marked.ci_low > s.ci_high
    # (n, k, H, W, 3): the value of all n·k tiles, the interval over the n units — two copies of each
    # tile in a unit add no evidence, the same copies as separate tiles would narrow the interval
    units = rp.metrics.checkerboard(np.repeat(smooth[:, None], 2, axis=1), n_boot=50)
    assert units.value == pytest.approx(s.value, abs=1e-5) and units.n_tiles == 96
    assert (units.ci_low, units.ci_high) == pytest.approx((s.ci_low, s.ci_high), abs=1e-5)
    flat = rp.metrics.checkerboard(np.repeat(smooth, 2, axis=0), n_boot=50)
    assert flat.ci_high - flat.ci_low < units.ci_high - units.ci_low


def test_checkerboard_ignores_tile_edges():
    # strong brightness ramps: unwindowed, the jump at the tile's wrap-around edge floods the axis
    # frequencies (grid frequencies too) with power; the window keeps the score near the texture's
    rng = np.random.default_rng(3)
    ramp = np.linspace(-60, 60, 64)
    ramps = np.stack([ramp[:, None] * rng.uniform(-1, 1) + ramp[None, :] * rng.uniform(-1, 1) for _ in range(48)])
    tiles = np.clip(_smooth_tiles().astype(float) + ramps[..., None], 0, 255).astype(np.uint8)
    assert abs(rp.metrics.checkerboard(tiles, n_boot=0).value) < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_transposed_convolutions_leave_a_checkerboard_that_resize_convolutions_do_not(seed):
    # untrained DCGAN generators, 48 tiles (measured: transpose 7.9–11.8 dB, resize −0.8 to −0.1 dB, seeds 0–2)
    t = rp.metrics.checkerboard(_generated("transpose", seed), n_boot=0)
    r = rp.metrics.checkerboard(_generated("resize", seed), n_boot=0)
    assert t.value > 4.0 and r.value < 1.5


def test_checkerboard_bad_input():
    tiles = _smooth_tiles(4, 32)
    with pytest.raises(ValueError, match="uint8"):
        rp.metrics.checkerboard(tiles.astype(np.float32))
    with pytest.raises(ValueError, match="periods"):
        rp.metrics.checkerboard(tiles, periods=(3,))
    with pytest.raises(ValueError, match="periods"):
        rp.metrics.checkerboard(tiles, periods=(16,))  # more than a quarter of 32 px
    with pytest.raises(ValueError, match="no tiles"):
        rp.metrics.checkerboard(tiles[:0])
    with pytest.raises(ValueError, match="whole numbers"):
        rp.metrics.checkerboard(tiles, periods=(2.5,))
    with pytest.raises(ValueError, match="fewer than 4 bins apart"):
        rp.metrics.checkerboard(_smooth_tiles(2, 40), periods=(4, 5))  # peaks at bins 8 and 10 of 40
