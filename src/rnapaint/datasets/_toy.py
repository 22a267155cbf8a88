"""A procedural paired expression ↔ H&E-like tile data set with known ground truth.

:func:`toy` draws three latent tissue "programs" per observation (nucleus density, nucleus size,
stain hue), makes gene counts that load on them and renders H&E-like tiles that show them.
:func:`toy_tile_properties` measures the same three properties back from pixels alone, so tests
can check that a generator's tiles follow the expression without any files or trained models.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = ["toy", "toy_tile_properties"]

PROGRAMS = ("density", "nucleus_size", "hue")
_PREFIX = {"density": "DEN", "nucleus_size": "SIZE", "hue": "HUE"}
GENES_PER_PROGRAM = 20
GROUPS = ["sparse", "medium", "dense"]

# Stain colours (RGB, 0–255) at hue = 0 (blue-purple) and hue = 1 (pink-magenta). Nuclei and
# background keep about the same brightness across hues, so one darkness threshold separates
# them whatever the hue, and only the R − B balance moves with it.
_NUC_RGB = np.array([[68.0, 52.0, 142.0], [128.0, 44.0, 116.0]], dtype=np.float32)
_BG_RGB = np.array([[214.0, 182.0, 232.0], [242.0, 160.0, 204.0]], dtype=np.float32)
_WHITE = np.array([246.0, 240.0, 246.0], dtype=np.float32)
# Nuclei are ~90 grey, background ~190–230: a threshold halfway sits on the soft edge (alpha ≈ .5).
_DARK_THRESHOLD = 150.0
# Components smaller than this (at 64 px, scaled with area) are specks, not nuclei: the
# smallest rendered nucleus covers ~5 px.
_MIN_COMPONENT_PX = 3

# Rendering constants at the 64 px reference size; lengths scale with tile_size, counts do not.
_REF = 64
_COUNT_RANGE = (3.0, 45.0)  # nuclei per tile from density 0 to 1
# Mean nucleus radius (px at 64 px) from nucleus_size 0 to 1. Up to 5 px, 45 nuclei would cover
# ~85% of a tile and fuse into blobs that connected components can no longer count.
_RADIUS_RANGE = (1.5, 4.0)
_AXIS_RATIO = (0.7, 1.0)  # minor/major axis: mildly eccentric ellipses
_EDGE_PX = 1.2  # width of the soft nucleus edge
_CHUNK = 256  # tiles rendered at once: bounds the float32 scratch memory
_CANDIDATES = 10  # spots tried per nucleus in best-candidate placement


def toy(
    n: int = 512,
    n_genes: int = 120,
    tile_size: int = 64,
    tiles_per_obs: int = 1,
    seed: int = 0,
) -> ad.AnnData:
    """Make a procedural paired expression ↔ H&E-like tile data set (no files needed).

    Each observation has three latent programs, each drawn U(0, 1) independently: ``density``
    (how many nuclei), ``nucleus_size`` (how large) and ``hue`` (stain colour, blue-purple at 0 to
    pink-magenta at 1). Twenty genes load on each program; the rest are background genes that
    carry no signal. The tiles render the same programs, and :func:`toy_tile_properties` measures
    them back, so the data set has a known ground truth for expression → image models.

    Parameters
    ----------
    n
        Number of observations (spots).
    n_genes
        Number of genes, at least 61: 3 × 20 program genes ``DEN1..DEN20``, ``SIZE1..SIZE20``,
        ``HUE1..HUE20``, then background genes ``BG1..``.
    tile_size
        Side of the square tiles in pixels, at least 16. Every tile shows the same field of view:
        the size sets the resolution, so nucleus radii scale with it (1.5–4 px at 64 px) while
        nucleus counts (~3–45 per tile) and the covered fraction do not change.
    tiles_per_obs
        Number of tiles ``k`` per observation, each a different random rendering of the same
        programs.
    seed
        Seed of :func:`numpy.random.default_rng`; the output is identical for equal arguments.

    Returns
    -------
    AnnData of shape ``(n, n_genes)`` with

    - ``.X``: raw counts as float32 ``(n, n_genes)``; ``layers['counts']``: the same as int32.
    - ``obs``: ``density``, ``nucleus_size``, ``hue`` (float, in [0, 1]) and ``group``
      (categorical density tertile: ``'sparse'``, ``'medium'``, ``'dense'``), plus the
      ``size_factor`` used for the counts.
    - ``var``: ``program`` (``'density'``, ``'nucleus_size'``, ``'hue'`` or ``'background'``),
      ``base`` and ``loading`` (the log-rate intercept and slope of each gene).
    - ``obsm['tiles']``: uint8 ``(n, tiles_per_obs, tile_size, tile_size, 3)`` RGB tiles.
    - ``uns['rnapaint']['dataset']``: the name and every argument.

    Raises
    ------
    ValueError
        If ``n_genes < 61`` or another argument is out of range.

    Notes
    -----
    Counts are ``Poisson(s_i · exp(base_g + w_g · a_ig))`` with ``a_ig`` the program of gene
    ``g`` for observation ``i``, ``base_g ~ U(0.5, 2.5)``, ``w_g ~ U(1.5, 2.5)`` for program genes
    and 0 for background genes, and size factors ``s_i ~ LogNormal(0, 0.2)``.
    """
    n_program_genes = len(PROGRAMS) * GENES_PER_PROGRAM
    if n_genes < n_program_genes + 1:
        raise ValueError(
            f"n_genes must be ≥ {n_program_genes + 1} ({n_program_genes} program genes and at least "
            f"one background gene), got {n_genes}."
        )
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}.")
    if tiles_per_obs < 1:
        raise ValueError(f"tiles_per_obs must be ≥ 1, got {tiles_per_obs}.")
    if tile_size < 16:
        raise ValueError(f"tile_size must be ≥ 16 pixels for nuclei to be visible, got {tile_size}.")

    rng = np.random.default_rng(seed)

    # Latent programs first, so they do not change with n_genes or tile_size for a given seed.
    programs = rng.uniform(0.0, 1.0, size=(n, len(PROGRAMS)))
    size_factor = rng.lognormal(0.0, 0.2, size=n)

    # Genes: 20 per program, then background.
    n_bg = n_genes - n_program_genes
    names = [f"{_PREFIX[p]}{j + 1}" for p in PROGRAMS for j in range(GENES_PER_PROGRAM)]
    names += [f"BG{j + 1}" for j in range(n_bg)]
    program_of_gene = np.repeat(np.arange(len(PROGRAMS) + 1), [GENES_PER_PROGRAM] * len(PROGRAMS) + [n_bg])
    base = rng.uniform(0.5, 2.5, size=n_genes)
    loading = rng.uniform(1.5, 2.5, size=n_genes)
    loading[n_program_genes:] = 0.0
    # Background genes get activity 0 (their loading is 0 anyway); padding keeps one gather.
    activity = np.concatenate([programs, np.zeros((n, 1))], axis=1)[:, program_of_gene]
    rate = size_factor[:, None] * np.exp(base[None, :] + loading[None, :] * activity)
    counts = rng.poisson(rate).astype(np.int32)

    tiles = _render_tiles(programs, tiles_per_obs, tile_size, rng)

    density = programs[:, 0]
    # Tertiles by rank rather than pd.qcut, which fails on ties and very small n.
    ranks = np.argsort(np.argsort(density, kind="stable"), kind="stable")
    group = pd.Categorical.from_codes(np.minimum(ranks * 3 // n, 2), categories=GROUPS)

    obs_names = [f"toy{i}" for i in range(n)]
    obs = pd.DataFrame(
        {
            "density": density,
            "nucleus_size": programs[:, 1],
            "hue": programs[:, 2],
            "group": group,
            "size_factor": size_factor,
        },
        index=pd.Index(obs_names),
    )
    var = pd.DataFrame(
        {
            "program": pd.Categorical(
                np.array([*PROGRAMS, "background"])[program_of_gene],
                categories=[*PROGRAMS, "background"],
            ),
            "base": base,
            "loading": loading,
        },
        index=pd.Index(names),
    )
    adata = ad.AnnData(
        X=counts.astype(np.float32),
        obs=obs,
        var=var,
        layers={"counts": counts},
        obsm={"tiles": tiles},
    )
    adata.uns["rnapaint"] = {
        "dataset": {
            "name": "toy",
            "seed": seed,
            "n": n,
            "n_genes": n_genes,
            "tile_size": tile_size,
            "tiles_per_obs": tiles_per_obs,
            "programs": list(PROGRAMS),
            "genes_per_program": GENES_PER_PROGRAM,
        }
    }
    return adata


def _smooth_field(rng: np.random.Generator, m: int, size: int, cells: int) -> np.ndarray:
    """``m`` smooth random fields in [0, 1] of shape ``(m, size, size)``.

    A coarse ``cells × cells`` grid of uniform noise is upsampled with separable linear
    interpolation (one matrix product per axis), which gives low-frequency texture without any
    image library.
    """
    coarse = rng.uniform(0.0, 1.0, size=(m, cells, cells)).astype(np.float32)
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    lo = np.minimum(np.floor(pos).astype(int), cells - 2)
    frac = (pos - lo).astype(np.float32)
    interp = np.zeros((size, cells), dtype=np.float32)
    interp[np.arange(size), lo] = 1.0 - frac
    interp[np.arange(size), lo + 1] = frac
    return np.einsum("hc,mcd,wd->mhw", interp, coarse, interp, optimize=True)


def _render_tiles(programs: np.ndarray, k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render ``k`` tiles per row of ``programs`` (density, nucleus_size, hue) → uint8 (n, k, s, s, 3)."""
    n = programs.shape[0]
    flat = np.repeat(programs, k, axis=0)  # one row per tile; tiles of one obs share programs
    out = np.empty((n * k, size, size, 3), dtype=np.uint8)
    for start in range(0, n * k, _CHUNK):
        out[start : start + _CHUNK] = _render_chunk(flat[start : start + _CHUNK], size, rng)
    return out.reshape(n, k, size, size, 3)


def _render_chunk(programs: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    m = programs.shape[0]
    density, nsize, hue = programs[:, 0], programs[:, 1], programs[:, 2]
    # Every tile shows the same field of view whatever its size: tile_size sets the resolution,
    # so radii scale with it and nucleus counts (and the covered fraction) do not change.
    scale = size / _REF

    # --- how many nuclei, and their shapes: mean radius from nucleus_size, a per-nucleus spread,
    # mild eccentricity and a random orientation.
    expected = _COUNT_RANGE[0] + (_COUNT_RANGE[1] - _COUNT_RANGE[0]) * density
    count = np.maximum(np.rint(expected + rng.normal(0.0, 0.5, m)), 1).astype(int)
    slots = int(count.max())
    r_mean = (_RADIUS_RANGE[0] + (_RADIUS_RANGE[1] - _RADIUS_RANGE[0]) * nsize) * scale
    r_all = r_mean[:, None] * rng.uniform(0.85, 1.15, size=(m, slots))
    ratio_all = rng.uniform(*_AXIS_RATIO, size=(m, slots))
    theta_all = rng.uniform(0.0, np.pi, size=(m, slots))
    reach = r_all / np.sqrt(ratio_all)  # major semi-axis: how far a nucleus reaches

    # Positions by best-candidate sampling (Mitchell): each nucleus takes the best of a few random
    # spots, the one with most clearance from those already placed. This looks random like tissue
    # but rarely lets nuclei fuse, so connected components still count nuclei when dense.
    pos = np.empty((m, slots, 2))
    rows_m = np.arange(m)
    for j in range(slots):
        cand = rng.uniform(0.0, size, size=(m, _CANDIDATES, 2))
        if j == 0:
            pos[:, 0] = cand[:, 0]
            continue
        gap = np.sqrt(((cand[:, :, None, :] - pos[:, None, :j, :]) ** 2).sum(-1))
        gap -= reach[:, None, :j] + reach[:, j, None, None]
        pos[:, j] = cand[rows_m, gap.min(axis=2).argmax(axis=1)]

    tile_idx, slot = np.nonzero(np.arange(slots)[None, :] < count[:, None])
    cy, cx = pos[tile_idx, slot, 0], pos[tile_idx, slot, 1]
    r, ratio, theta = r_all[tile_idx, slot], ratio_all[tile_idx, slot], theta_all[tile_idx, slot]
    a = r / np.sqrt(ratio)  # semi-axes keep the area π r² whatever the eccentricity
    b = r * np.sqrt(ratio)

    # Each nucleus is drawn in its own small patch, then scattered into a padded canvas: the
    # work scales with the nuclei's area, not with (nuclei × tile pixels).
    half = int(np.ceil(_RADIUS_RANGE[1] * scale * 1.15 / np.sqrt(_AXIS_RATIO[0]) + _EDGE_PX)) + 1
    off = np.arange(-half, half + 1)
    oy0 = np.floor(cy).astype(int)
    ox0 = np.floor(cx).astype(int)
    py = (oy0[:, None] + off[None, :]).astype(np.float32)  # (nuc, P) pixel rows
    px = (ox0[:, None] + off[None, :]).astype(np.float32)
    dy = (py + 0.5 - cy[:, None].astype(np.float32))[:, :, None]  # distances to pixel centres
    dx = (px + 0.5 - cx[:, None].astype(np.float32))[:, None, :]
    cos = np.cos(theta).astype(np.float32)[:, None, None]
    sin = np.sin(theta).astype(np.float32)[:, None, None]
    u = (dx * cos + dy * sin) / a.astype(np.float32)[:, None, None]
    v = (-dx * sin + dy * cos) / b.astype(np.float32)[:, None, None]
    # Approximate signed distance to the ellipse edge in pixels → soft anti-aliased coverage.
    dist = (np.sqrt(u * u + v * v) - 1.0) * r.astype(np.float32)[:, None, None]
    alpha = np.clip(0.5 - dist / _EDGE_PX, 0.0, 1.0)

    padded = size + 2 * half
    rows = oy0[:, None] + off[None, :] + half  # canvas coordinates, always inside the padding
    cols = ox0[:, None] + off[None, :] + half
    flat_idx = (tile_idx[:, None, None] * padded + rows[:, :, None]) * padded + cols[:, None, :]
    keep = alpha > 0
    canvas = np.bincount(flat_idx[keep], weights=alpha[keep], minlength=m * padded * padded)
    cover = np.minimum(canvas.reshape(m, padded, padded)[:, half:-half, half:-half], 1.0)
    cover = cover.astype(np.float32)[..., None]

    # --- colours: hue moves both stains between blue-purple and pink-magenta.
    h = hue.astype(np.float32)[:, None]
    nuc_rgb = (_NUC_RGB[0] + (_NUC_RGB[1] - _NUC_RGB[0]) * h)[:, None, None, :]
    bg_rgb = (_BG_RGB[0] + (_BG_RGB[1] - _BG_RGB[0]) * h)[:, None, None, :]

    # Eosin background: smooth patches paler towards white (loose stroma), gently shaded, with
    # some finer fibre-like mottling. Grids are fixed in cells, so the texture keeps its scale
    # relative to the field of view whatever the tile size.
    pale = _smooth_field(rng, m, size, 5)[..., None] ** 2 * 0.6
    shade = 0.92 + 0.06 * _smooth_field(rng, m, size, 5) + 0.05 * _smooth_field(rng, m, size, 14)
    shade = shade[..., None]
    background = (bg_rgb * (1.0 - pale) + _WHITE * pale) * shade

    # Haematoxylin nuclei with grainy chromatin, kept dark enough to stay under the threshold.
    chromatin = 1.0 + 0.08 * rng.standard_normal((m, size, size, 1), dtype=np.float32)
    nuclei = nuc_rgb * chromatin

    img = background * (1.0 - cover) + nuclei * cover
    img += rng.normal(0.0, 3.0, size=img.shape).astype(np.float32)  # a little pixel noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def toy_tile_properties(tiles: np.ndarray) -> pd.DataFrame:
    """Measure the three rendered programs of tiles from pixels alone.

    This is the ground-truth ruler for :func:`toy`: it works on any RGB tiles (e.g. a generator's
    output), and its columns increase with the programs the tiles were rendered from.

    Parameters
    ----------
    tiles
        RGB tiles of shape ``(n, H, W, 3)``, or ``(n, k, H, W, 3)`` in which case each property is
        averaged over the ``k`` tiles of an observation. uint8 (0–255) or float in [0, 1].

    Returns
    -------
    DataFrame with ``n`` rows and columns

    - ``nuclei_fraction``: fraction of nucleus pixels (mean RGB darker than a fixed threshold
      that separates haematoxylin nuclei from eosin background).
    - ``nuclei_count``: connected components (4-connected) of the nucleus mask with at least 3
      pixels; follows ``density``.
    - ``mean_nucleus_area``: nucleus pixels per component (0 when there is none); follows
      ``nucleus_size``.
    - ``hue``: mean ``(R − B) / 255`` of nucleus pixels and of background pixels, averaged with
      equal weights so the nucleus fraction does not shift it; follows ``hue``.
    """
    x = np.asarray(tiles)
    shape = x.shape
    if x.ndim == 4:
        x = x[:, None]
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"tiles must have shape (n, H, W, 3) or (n, k, H, W, 3), got {shape}.")
    if np.issubdtype(x.dtype, np.floating) and x.max(initial=0.0) <= 1.0:
        x = x * 255.0  # float tiles in [0, 1]
    n, k, hgt, wid, _ = x.shape
    x = x.reshape(n * k, hgt, wid, 3).astype(np.float32)

    mask = x.mean(axis=-1) < _DARK_THRESHOLD

    # Label all tiles at once; the structure has no links across the stack axis, so components
    # never join two tiles.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, n_labels = ndimage.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)
    tile_of_label = np.zeros(n_labels + 1, dtype=np.int64)
    tile_of_label[labels.ravel()] = np.repeat(np.arange(n * k), hgt * wid)
    real = sizes >= max(1, round(_MIN_COMPONENT_PX * hgt * wid / _REF**2))
    real[0] = False  # label 0 is the background
    count = np.bincount(tile_of_label[real], minlength=n * k).astype(np.float64)
    nuc_px = np.bincount(tile_of_label[real], weights=sizes[real], minlength=n * k)
    mean_area = np.divide(nuc_px, count, out=np.zeros(n * k), where=count > 0)
    fraction = mask.mean(axis=(1, 2))

    # Hue from R − B within each class: a tile's stain colour, not its mix of nuclei and background.
    rb = (x[..., 0] - x[..., 2]) / 255.0
    n_nuc = mask.sum(axis=(1, 2))
    n_bg = hgt * wid - n_nuc
    rb_nuc = np.where(mask, rb, 0.0).sum(axis=(1, 2))
    rb_bg = np.where(mask, 0.0, rb).sum(axis=(1, 2))
    mean_nuc = np.divide(rb_nuc, n_nuc, out=np.full(n * k, np.nan), where=n_nuc > 0)
    mean_bg = np.divide(rb_bg, n_bg, out=np.full(n * k, np.nan), where=n_bg > 0)
    hue = np.nanmean(np.stack([mean_nuc, mean_bg]), axis=0)  # one class may be absent

    per_tile = pd.DataFrame(
        {
            "nuclei_fraction": fraction,
            "nuclei_count": count,
            "mean_nucleus_area": mean_area,
            "hue": hue,
        }
    )
    return per_tile.groupby(np.repeat(np.arange(n), k)).mean().reset_index(drop=True)
