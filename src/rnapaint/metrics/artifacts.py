"""Generator artifacts that realism scores average away: the checkerboard of strided upsampling.

A transposed convolution with stride 2 paints a periodic pattern (Odena et al. 2016, "Deconvolution and
checkerboard artifacts"); RNA-GAN blames it for part of its tiles' look. Stacked, ``k`` such layers leave
peaks in the power spectrum at the frequencies of periods 2, 4, …, 2^k pixels. Natural tiles have a smooth
spectrum there, so the height of those peaks above their neighbourhood measures the artifact directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CheckerboardScore:
    """How far the spectrum at the upsampling grid's frequencies stands above its neighbourhood, in dB.

    Attributes
    ----------
    value
        Mean over ``periods`` of the prominence of their frequencies (dB; ≈ 0 for natural images, > 0
        with a checkerboard).
    ci_low, ci_high
        Bootstrap interval over tiles (NaN when ``n_boot == 0``).
    per_period
        Mean prominence of the frequencies first reached at each period (period 2: the finest pattern).
    n_tiles
        Tiles measured.
    """

    value: float
    ci_low: float
    ci_high: float
    per_period: dict[int, float] = field(default_factory=dict)
    n_tiles: int = 0

    def __float__(self) -> float:
        return self.value


def _grid_bins(h: int, w: int, periods: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
    """For each period, the FFT bins ``(u, v)`` of its pattern not already listed for a shorter period."""
    seen: set[tuple[int, int]] = {(0, 0)}
    out: dict[int, list[tuple[int, int]]] = {}
    for p in sorted(periods):
        bins = [(a * h // p, b * w // p) for a in range(p) for b in range(p)]
        out[p] = [b for b in dict.fromkeys(bins) if b not in seen]
        seen.update(out[p])
    return out


def _prominence(power: np.ndarray, bins: dict[int, list[tuple[int, int]]], ring: np.ndarray) -> dict[int, float]:
    """Mean ``10 log10(P(bin) / median P(ring around bin))`` over each period's bins (ring: other bins)."""
    h, w = power.shape
    grid = {b for bs in bins.values() for b in bs}
    out = {}
    for p, bs in bins.items():
        vals = []
        for u, v in bs:
            around = [((u + du) % h, (v + dv) % w) for du, dv in ring]
            around = [x for x in around if x not in grid]
            ref = np.median([power[x] for x in around])
            vals.append(10 * np.log10(power[u, v] / ref))
        out[p] = float(np.mean(vals))
    return out


def checkerboard(
    tiles: np.ndarray,
    periods: Sequence[int] = (2, 4, 8),
    *,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
) -> CheckerboardScore:
    """Checkerboard artifacts of a set of tiles: spectral peaks at the upsampling grid's frequencies.

    Each tile's luminance (mean of the channels, its own mean removed) is windowed (Hann, so the tile's
    edges do not leak along the axes) and Fourier-transformed; the power spectra are averaged over the
    tiles. At every frequency of a pattern repeating every ``p`` pixels (``p`` in ``periods``), the
    power is compared with the median power of the ring of frequencies two bins away (other grid
    frequencies excluded): the prominence in dB. Real tiles score about 0 dB (below 32 px, period 2
    reads a little negative even for them: compare tiles of the same size); a generator upsampling by
    stride-2 transposed convolutions scores well above (compare with the real tiles' own score, which
    resizing or JPEG can move a little). Below 0 means notches instead of peaks: nearest-neighbour
    upsampling (resize-convolution) has zeros at those frequencies and leaves them too weak.

    Parameters
    ----------
    tiles
        uint8 RGB tiles ``(n, H, W, 3)`` or ``(n, k, H, W, 3)``; ``H`` and ``W`` divisible by every period.
    periods
        Periods (px) of the patterns to look for; a DCGAN with ``k`` stride-2 upsamplings can leave
        2, 4, …, 2^k. They must divide the tile size and one another's frequencies must lie at least 4
        bins apart (periods that divide one another do).
    n_boot, ci, seed
        Bootstrap for the interval: over tiles, or over units (with all their tiles) for 5-D input.

    Returns
    -------
    :class:`CheckerboardScore`.
    """
    x = np.asarray(tiles)
    k = x.shape[1] if x.ndim == 5 else 1  # tiles per unit: the bootstrap resamples units
    if x.ndim == 5:
        x = x.reshape(-1, *x.shape[2:])
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8 (n, H, W, 3) or (n, k, H, W, 3), got {x.dtype} {np.shape(tiles)}.")
    n, h, w = x.shape[:3]
    if n == 0:
        raise ValueError("tiles holds no tiles.")
    if not periods or any(isinstance(p, bool) or not float(p).is_integer() for p in periods):
        raise ValueError(f"periods must be whole numbers of pixels, got {list(periods)}.")
    periods = sorted({int(p) for p in periods})
    if min(periods) < 2 or any(h % p or w % p for p in periods) or max(periods) > min(h, w) // 4:
        raise ValueError(
            f"periods must be ≥ 2, divide the tile size ({h} × {w}) and be at most a quarter of it, got {periods}."
        )
    for size in (h, w):  # every peak needs its ring clear of the next one's
        pos = np.unique([a * size // p for p in periods for a in range(p)])
        if np.diff(np.append(pos, size)).min() < 4:
            raise ValueError(
                f"periods {periods} put two of their frequencies fewer than 4 bins apart on a {size}-px side; "
                "use periods that divide one another (e.g. 2, 4, 8)."
            )
    if not 0 < ci < 1 or n_boot < 0:
        raise ValueError(f"ci must be in (0, 1) and n_boot ≥ 0, got ci={ci}, n_boot={n_boot}.")
    lum = x.astype(np.float32).mean(-1)
    lum -= lum.mean((1, 2), keepdims=True)
    # periodic Hann: its spectrum is exactly zero two bins from a peak, where the ring is measured
    hann = [0.5 - 0.5 * np.cos(2 * np.pi * np.arange(m) / m) for m in (h, w)]
    window = np.outer(*hann).astype(np.float32)
    power = np.abs(np.fft.fft2(lum * window)) ** 2 + 1e-12  # (n, H, W); the floor keeps flat tiles finite
    power = power.reshape(n // k, k, h, w).mean(1)  # one spectrum per unit
    bins = _grid_bins(h, w, periods)
    ring = np.array([(du, dv) for du in range(-2, 3) for dv in range(-2, 3) if max(abs(du), abs(dv)) == 2])

    def score(p: np.ndarray) -> tuple[float, dict[int, float]]:
        per = _prominence(p.mean(0), bins, ring)
        # each period counts once: period 2 has 3 frequencies, period 8 has 48, and either can carry the artifact
        return float(np.mean(list(per.values()))), per

    value, per_period = score(power)
    rng = np.random.default_rng(seed)
    units = len(power)
    boots = [score(power[rng.integers(0, units, units)])[0] for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2]) if n_boot else (np.nan, np.nan)
    return CheckerboardScore(float(value), float(lo), float(hi), per_period, n)
