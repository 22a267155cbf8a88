"""Nuclei composition of H&E tiles: drawn nuclei of known number and size, and real HER2ST patches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

import rnapaint as rp
from rnapaint.metrics.nuclei import FEATURES, _shapes, _stains, compare_nuclei, nuclei, segment_nuclei

# Median colours of the nuclei and of the (non-white) rest found on HER2ST spot patches.
NUCLEUS = np.array([57, 62, 117], float)
STROMA = np.array([158, 136, 179], float)
MPP = 0.5
SIZE = 256


def _draw(centres, radius=8.0, size=SIZE, axes=None, seed=0) -> np.ndarray:
    """A pink tile ``(size, size, 3)`` uint8 with dark-purple discs (or ellipses) at ``centres`` (px)."""
    rr, cc = np.mgrid[:size, :size]
    ink = np.zeros((size, size))
    a, b = axes if axes is not None else (radius, radius)
    for r, c in centres:
        ink[((rr - r) / a) ** 2 + ((cc - c) / b) ** 2 <= 1] = 1.0
    ink = gaussian_filter(ink, 0.8)  # optics blur the edges a little
    img = STROMA + ink[..., None] * (NUCLEUS - STROMA)
    img += np.random.default_rng(seed).normal(0, 4, img.shape)  # scanner noise
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _scatter(n, radius=8.0, gap=6.0, size=SIZE, seed=0) -> list[tuple[float, float]]:
    """``n`` disc centres that neither touch each other nor the tile's edge."""
    rng = np.random.default_rng(seed)
    pts: list[tuple[float, float]] = []
    while len(pts) < n:
        p = rng.uniform(radius + 2, size - radius - 2, 2)
        if all(np.hypot(*(p - q)) > 2 * radius + gap for q in pts):
            pts.append(tuple(p))
    return pts


def _touching_pairs(n_pairs, radius=8.0) -> list[tuple[float, float]]:
    """Pairs of discs whose centres are ``1.8 radius`` apart (overlapping a little), along a grid."""
    out = []
    for i in range(n_pairs):
        r, c = 30 + 48 * (i % 5), 40 + 120 * (i // 5)
        out += [(r, c), (r, c + 1.8 * radius)]
    return out


def test_drawn_nuclei_are_counted_and_measured():
    isolated = _scatter(20, seed=1)
    df = nuclei(np.stack([_draw(isolated)]), mpp=MPP)
    assert list(df.columns) == ["unit", "tile", *FEATURES]
    row = df.iloc[0]
    assert row["count"] == 20
    true_area = np.pi * (8 * MPP) ** 2  # µm²
    # measured 0.84 of the drawn area: the edge is found ~0.7 px inside the blurred boundary
    assert 0.75 < row["mean_area"] / true_area < 1.05
    assert row["mean_eccentricity"] < 0.3  # discs are round
    np.testing.assert_allclose(row["density"], 20 / (SIZE**2 * MPP**2) * 10_000)
    # the nuclei mask covers exactly the nuclei counted
    np.testing.assert_allclose(row["hematoxylin_fraction"], 20 * row["mean_area"] / (SIZE**2 * MPP**2))


def test_touching_nuclei_are_split():
    pairs = _touching_pairs(8)
    lab = segment_nuclei(_draw(pairs), mpp=MPP)
    assert lab.max() == 16 and set(np.unique(lab)) == set(range(17))  # labels numbered 1..n
    # each disc's centre falls in a different nucleus
    ids = {int(lab[round(r), round(c)]) for r, c in pairs}
    assert len(ids) == 16 and 0 not in ids


def test_blank_and_stroma_tiles_have_no_nuclei():
    rng = np.random.default_rng(3)
    blank = _draw([])
    # stroma: eosin of varying strength, nothing blue; a per-tile Otsu threshold would cut it in two
    texture = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 4)
    stroma = np.clip(STROMA + 25 * texture[..., None] * np.array([-0.3, -1, -0.4]), 0, 255).astype(np.uint8)
    df = nuclei(np.stack([blank, stroma]), mpp=MPP)
    assert (df["count"] == 0).all() and (df["hematoxylin_fraction"] == 0).all()
    assert df["mean_area"].isna().all() and df["small_round_fraction"].isna().all()
    assert nuclei(stroma[None], mpp=MPP, threshold="otsu")["count"].iloc[0] > 0


def test_counts_grow_with_the_nuclei_drawn():
    drawn = [0, 5, 10, 20, 40]
    tiles = np.stack([_draw(_scatter(n, seed=n), seed=n) for n in drawn])
    counts = nuclei(tiles, mpp=MPP)["count"].to_numpy()
    assert (np.diff(counts) > 0).all()
    np.testing.assert_allclose(counts, drawn, atol=1)


def test_small_round_nuclei_are_told_from_large_and_elongated():
    small = _draw(_scatter(12, radius=6, seed=4), radius=6)  # 28 µm², lymphocyte-like
    large = _draw(_scatter(6, radius=14, seed=5), radius=14)  # 154 µm²
    long = _draw(_scatter(10, radius=12, seed=6), axes=(4, 12))  # 3:1 ellipses of 38 µm²
    f = nuclei(np.stack([small, large, long]), mpp=MPP)["small_round_fraction"].to_numpy()
    np.testing.assert_array_equal(f, [1.0, 0.0, 0.0])


def test_units_layout_and_input_forms():
    tiles = np.stack([_draw(_scatter(n, seed=n), seed=n) for n in (3, 6, 9, 12)])
    flat = nuclei(tiles, mpp=MPP)
    grouped = nuclei(tiles.reshape(2, 2, SIZE, SIZE, 3), mpp=MPP)
    assert grouped["unit"].tolist() == [0, 0, 1, 1] and grouped["tile"].tolist() == [0, 1, 0, 1]
    pd.testing.assert_frame_equal(flat[list(FEATURES)], grouped[list(FEATURES)])
    as_float = nuclei(tiles / 255.0, mpp=MPP)
    pd.testing.assert_frame_equal(flat, as_float)
    # Without mpp the same (default nominal 0.5 µm/px) segmentation is reported in pixels.
    px = nuclei(tiles)
    np.testing.assert_array_equal(px["count"], flat["count"])
    np.testing.assert_allclose(px["mean_area"] * MPP**2, flat["mean_area"])
    np.testing.assert_allclose(px["density"] / MPP**2, flat["density"])


def test_fast_stains_and_shapes_match_skimage():
    from skimage.color import rgb2hed
    from skimage.measure import regionprops_table

    tile = _draw(_scatter(5, seed=8))
    h, dab = _stains(tile)
    np.testing.assert_allclose(np.stack([h, dab], -1), rgb2hed(tile)[..., [0, 2]], atol=1e-6)

    lab = segment_nuclei(_draw([*_scatter(6, seed=7), (200, 40)], axes=(5, 11)), mpp=MPP)
    area, ecc = _shapes(lab)
    ref = regionprops_table(lab, properties=("area", "eccentricity"))
    np.testing.assert_allclose(area, ref["area"])
    np.testing.assert_allclose(ecc, ref["eccentricity"], atol=1e-9)


def test_compare_nuclei():
    few = np.stack([_draw(_scatter(n, seed=n), seed=n) for n in (4, 6, 8, 10)])
    many = np.stack([_draw(_scatter(n, seed=n), seed=n) for n in (20, 24, 28, 32)])
    a, b = nuclei(few, mpp=MPP), nuclei(many, mpp=MPP)
    same = compare_nuclei(a, a)
    assert set(same["feature"]) == set(FEATURES) and (same["group"] == "all").all()
    assert np.allclose(same["wasserstein"], 0) and np.allclose(same["ks"], 0)
    diff = compare_nuclei(a, b).set_index("feature")
    assert diff.loc["count", "synthetic_mean"] > diff.loc["count", "real_mean"]
    assert diff.loc["count", "ks"] == 1.0 and diff.loc["count", "wasserstein"] > 10
    both = pd.concat([a, b], ignore_index=True)
    groups = ["few"] * 4 + ["many"] * 4
    per = compare_nuclei(both, both, real_groups=groups, synthetic_groups=groups)
    assert len(per) == 2 * len(FEATURES) and (per["n_real"] == 4).all()
    assert np.allclose(per["ks"], 0)


@pytest.mark.parametrize(
    ("tiles", "match"),
    [
        (np.zeros((2, 32, 32), np.uint8), "shape"),
        (np.zeros((2, 32, 32, 4), np.uint8), "shape"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty"),
        (np.zeros((2, 32, 32, 3), np.int16), "dtype"),
        (np.full((2, 32, 32, 3), 2.0), r"\[0, 1\]"),
        (np.where(np.eye(32)[None, ..., None], np.nan, 0.5).repeat(3, -1), "NaN"),
    ],
)
def test_bad_tiles(tiles, match):
    with pytest.raises(ValueError, match=match):
        nuclei(tiles)


def test_bad_arguments():
    tile = _draw([])[None]
    with pytest.raises(ValueError, match="mpp"):
        nuclei(tile, mpp=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        nuclei(tile, threshold="li")
    with pytest.raises(ValueError, match="threshold"):
        nuclei(tile, threshold=0.0)
    with pytest.raises(ValueError, match="min_area"):
        nuclei(tile, min_area=-5.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        segment_nuclei(tile)
    df = nuclei(tile)
    with pytest.raises(ValueError, match="both"):
        compare_nuclei(df, df, real_groups=["a"])
    with pytest.raises(ValueError, match="one label per row"):
        compare_nuclei(df, df, real_groups=["a", "b"], synthetic_groups=["a"])
    with pytest.raises(ValueError, match="lacks the columns"):
        compare_nuclei(df.drop(columns="count"), df)


@pytest.fixture(scope="module")
def her2st_patches(data_root):
    a = rp.datasets.her2st(data_root, sections=["C2", "C3", "C4", "C5"], images=True)
    rp.pp.spot_tiles(a, size=224, library_key="section", progress_bar=False)
    return a


def test_nuclei_follow_the_deconvolved_cell_mix(her2st_patches, data_root):
    """Segmentation tuned on C2–C4 only (threshold = pooled Otsu of C2–C4); C5 is held out."""
    a = her2st_patches
    props = a.obsm["cell_type_proportions"]
    # Every spot of C2–C5 has its stereoscope proportions, read from the row of its own array position.
    assert props.notna().all().all()
    ref = pd.read_csv(data_root / "her2st/res/ST-deconv/props/major/C5-proportion.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(props.loc["C5_" + ref.index[0]], ref.iloc[0], rtol=1e-6)

    mpp = a.uns["spatial"]["C2"]["metadata"]["mpp"]
    df = nuclei(a.obsm["tiles"], mpp=mpp, progress_bar=False)
    assert len(df) == a.n_obs and (df["count"] > 0).all()
    held_out = (a.obs["section"] == "C5").to_numpy()

    def rho(feature, cell_type, rows):
        r, p = spearmanr(df[feature][rows], props[cell_type][rows])
        return r, p

    # Measured ρ C2–C5 (n=732): 0.45 (p 1e-37); C5 alone (n=181): 0.42 (p 4e-9). Tumour nests are nuclei-dense.
    for rows in (np.ones(a.n_obs, bool), held_out):
        r, p = rho("hematoxylin_fraction", "Epithelial", rows)
        assert r > 0.3 and p < 1e-3
    # Measured ρ C5: 0.51 (p 2e-13). Tumour nuclei are larger than stromal and immune ones.
    r, p = rho("mean_area", "Epithelial", held_out)
    assert r > 0.3 and p < 1e-3
    # Nuclei density against the epithelial + immune share (B, T, myeloid, plasma cells): the cells whose
    # nuclei crowd a spot. Measured ρ C2–C5: 0.47 (p 1e-41); C5: 0.43 (p 1e-9). (Immune alone: −0.13;
    # immune-rich spots are stroma-rich and sparser overall.)
    epi_immune = pd.Series(props[["Epithelial", "B-cells", "T-cells", "Myeloid", "Plasma Cells"]].sum(1).to_numpy())
    for rows in (np.ones(a.n_obs, bool), held_out):
        r, p = spearmanr(df["density"][rows], epi_immune[rows])
        assert r > 0.3 and p < 1e-3
    # Measured ρ C5: 0.34 (p 3e-6); C2–C4 (n=551): 0.36 (p 3e-18). Lymphocytes have small round nuclei.
    r, p = rho("small_round_fraction", "T-cells", held_out)
    assert r > 0.2 and p < 1e-3
    r, p = rho("small_round_fraction", "T-cells", ~held_out)
    assert r > 0.2 and p < 1e-3


def test_nuclei_features_encoder():
    tiles = np.stack([_draw([]), _draw(_scatter(5, seed=1)), _draw(_scatter(12, seed=2))])
    enc = rp.metrics.NucleiFeatures(mpp=MPP)
    x = enc.encode(tiles)
    ref = nuclei(tiles, mpp=MPP)
    assert x.shape == (3, len(enc.COLUMNS)) and x.dtype == np.float32
    np.testing.assert_allclose(x[1:], ref[list(enc.COLUMNS)].to_numpy()[1:], rtol=1e-6)
    assert (x[0] == 0).all()  # no nuclei: zeros, not NaN (classifiers and KID need finite features)
    assert x[2, 0] > x[1, 0] > 0  # density
    assert enc.encode(tiles[:, None]).shape == (3, len(enc.COLUMNS))
    assert rp.metrics.NucleiFeatures(MPP, columns=["count"]).encode(tiles)[:, 0].tolist() == [0, 5, 12]
    with pytest.raises(ValueError, match="subset"):
        rp.metrics.NucleiFeatures(MPP, columns=["nope"])


# ---- rp.metrics.composition_agreement: drawn tiles whose nuclei follow a known cell share
COMP_UNITS, COMP_SIZE = 30, 128


@pytest.fixture(scope="module")
def drawn():
    """Units whose "Epithelial" share sets how many nuclei their tiles hold; a shifted copy (two more
    nuclei everywhere); and tiles whose counts ignore the share."""
    rng = np.random.default_rng(0)
    share = rng.uniform(0, 1, COMP_UNITS)
    n = 1 + np.round(7 * share).astype(int)

    def tiles(counts, seed):
        return np.stack(
            [[_draw(_scatter(c, size=COMP_SIZE, seed=seed + i), size=COMP_SIZE, seed=i)] for i, c in enumerate(counts)]
        )

    props = pd.DataFrame({"Epithelial": share, "Stroma": 1 - share, "Immune": rng.uniform(0, 0.2, COMP_UNITS)})
    return props, {
        "faithful": tiles(n, 0),
        "shifted": tiles(n + 2, 100),
        "noise": tiles(rng.permutation(n), 200),
    }


def test_nuclei_following_the_share_are_told_from_noise(drawn):
    props, tiles = drawn
    report = rp.metrics.composition_agreement(
        tiles,
        props,
        {"count": "Epithelial", "density": ["Epithelial", "Immune"]},
        mpp=0.5,
        contrasts=[("faithful", "noise")],
        n_boot=300,
    )
    rho = report.set_index(["method", "metric"])
    f = rho.loc[("faithful", "ρ(count, Epithelial)")]
    assert f["value"] > 0.9 and f["ci_low"] > 0.7 and f["n_units"] == COMP_UNITS
    assert abs(rho.loc[("noise", "ρ(count, Epithelial)"), "value"]) < 0.4
    # a shift of every tile (two more nuclei each) leaves the ranks, and so ρ, where they were
    assert abs(rho.loc[("shifted", "ρ(count, Epithelial)"), "value"] - f["value"]) < 0.05
    d = rho.loc[("faithful − noise", "ρ(count, Epithelial)")]
    assert d["ci_low"] > 0.3 and d["p_value"] < 0.01
    assert "ρ(density, Epithelial + Immune)" in set(report["metric"])


def test_composition_agreement_bad_arguments(drawn):
    props, tiles = drawn
    one = {"faithful": tiles["faithful"]}
    with pytest.raises(ValueError, match="not a nuclei feature"):
        rp.metrics.composition_agreement(one, props, {"nuclei": "Epithelial"})
    with pytest.raises(ValueError, match=r"no column \['T-cells'\]"):
        rp.metrics.composition_agreement(one, props, {"count": "T-cells"})
    with pytest.raises(ValueError, match="must be \\(m, k, H, W, 3\\)"):
        rp.metrics.composition_agreement({"x": tiles["faithful"][:5]}, props, {"count": "Epithelial"})
    with pytest.raises(ValueError, match="names a source not in tiles"):
        rp.metrics.composition_agreement(one, props, {"count": "Epithelial"}, contrasts=[("faithful", "gan")])
    with pytest.raises(TypeError, match="DataFrame"):
        rp.metrics.composition_agreement(one, props.to_numpy(), {"count": "Epithelial"})
    measured = rp.metrics.nuclei(tiles["faithful"], mpp=0.5)
    with pytest.raises(ValueError, match="without the nuclei columns \\['count'\\]"):
        rp.metrics.composition_agreement({"x": measured.drop(columns="count")}, props, {"count": "Epithelial"})
    with pytest.raises(ValueError, match="must index the 30 units"):
        rp.metrics.composition_agreement(
            {"x": measured.assign(unit=measured["unit"] + 1)}, props, {"count": "Epithelial"}
        )
    # a measured DataFrame gives what its tiles give
    kw = {"mpp": 0.5, "n_boot": 20}
    assert rp.metrics.composition_agreement({"x": measured}, props, {"count": "Epithelial"}, **kw).equals(
        rp.metrics.composition_agreement({"x": tiles["faithful"]}, props, {"count": "Epithelial"}, **kw)
    )
