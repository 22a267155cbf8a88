"""The procedural toy data set and its pixel ruler (rnapaint.datasets.toy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from rnapaint.datasets import toy, toy_tile_properties

PAIRS = [("density", "nuclei_count"), ("nucleus_size", "mean_nucleus_area"), ("hue", "hue")]


def _rho(a, b) -> float:
    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)


@pytest.fixture(scope="module")
def toy300():
    adata = toy(n=300, seed=0)
    return adata, toy_tile_properties(adata.obsm["tiles"])


def test_shapes_dtypes_and_columns():
    adata = toy(n=40, n_genes=70, tile_size=64, tiles_per_obs=2, seed=0)
    assert adata.shape == (40, 70)
    assert adata.X.dtype == np.float32
    assert adata.layers["counts"].dtype in (np.int32, np.int64)
    np.testing.assert_array_equal(adata.X, adata.layers["counts"].astype(np.float32))
    assert (adata.layers["counts"] >= 0).all() and adata.X.sum() > 0

    tiles = adata.obsm["tiles"]
    assert tiles.dtype == np.uint8
    assert tiles.shape == (40, 2, 64, 64, 3)
    # The k tiles of one observation are different renderings, not copies.
    assert not np.array_equal(tiles[:, 0], tiles[:, 1])

    for col in ("density", "nucleus_size", "hue"):
        assert adata.obs[col].between(0, 1).all()
    assert list(adata.obs["group"].cat.categories) == ["sparse", "medium", "dense"]

    names = list(adata.var_names)
    assert names[:2] == ["DEN1", "DEN2"] and names[19] == "DEN20"
    assert names[20] == "SIZE1" and names[40] == "HUE1" and names[59] == "HUE20"
    assert names[60:] == [f"BG{i}" for i in range(1, 11)]
    assert adata.var["program"].value_counts().to_dict() == {
        "density": 20,
        "nucleus_size": 20,
        "hue": 20,
        "background": 10,
    }
    assert (adata.var.loc[adata.var["program"] == "background", "loading"] == 0).all()

    meta = adata.uns["rnapaint"]["dataset"]
    assert meta["name"] == "toy" and meta["seed"] == 0 and meta["n"] == 40


def test_groups_are_density_tertiles():
    adata = toy(n=90, seed=3)
    dens = adata.obs.groupby("group", observed=True)["density"]
    assert dens.size().tolist() == [30, 30, 30]
    assert dens.max()["sparse"] < dens.min()["medium"]
    assert dens.max()["medium"] < dens.min()["dense"]


def test_deterministic_given_seed():
    a, b, c = toy(n=20, seed=1), toy(n=20, seed=1), toy(n=20, seed=2)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obsm["tiles"], b.obsm["tiles"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert not np.array_equal(a.X, c.X)
    assert not np.array_equal(a.obsm["tiles"], c.obsm["tiles"])
    assert not np.allclose(a.obs["density"], c.obs["density"])


def test_rendered_tiles_follow_programs(toy300):
    adata, props = toy300
    assert list(props.columns) == ["nuclei_fraction", "nuclei_count", "mean_nucleus_area", "hue"]
    assert len(props) == adata.n_obs
    # The renderer gives ρ ≈ 0.96, 0.98 and 0.999 here; thresholds leave margin.
    assert _rho(adata.obs["density"], props["nuclei_count"]) >= 0.9
    assert _rho(adata.obs["nucleus_size"], props["mean_nucleus_area"]) >= 0.9
    assert _rho(adata.obs["hue"], props["hue"]) >= 0.95
    assert _rho(adata.obs["density"], props["nuclei_fraction"]) >= 0.5
    # The measured counts stay near the rendered range (~3 to ~45 nuclei per tile).
    assert props["nuclei_count"].min() >= 1 and props["nuclei_count"].max() <= 50


def test_tiles_look_like_he(toy300):
    adata, props = toy300
    tiles = adata.obsm["tiles"][:, 0].astype(float)
    dark = tiles.mean(-1) < 150
    nuclei, background = tiles[dark], tiles[~dark]
    # Pink/lilac eosin background: bright, with more red than green.
    assert background.mean() > 180
    assert background[:, 0].mean() > background[:, 1].mean()
    # Haematoxylin-purple nuclei: dark, blue above green.
    assert nuclei.mean() < 120
    assert nuclei[:, 2].mean() > nuclei[:, 1].mean()
    # Sparse tiles are mostly background, dense ones hold many nuclei.
    assert props["nuclei_fraction"].between(0, 0.7).all()


def test_program_genes_follow_their_program(toy300):
    adata, _ = toy300
    logc = np.log1p(adata.layers["counts"])
    program = adata.var["program"].to_numpy()
    for prog in ("density", "nucleus_size", "hue"):
        rhos = [_rho(logc[:, j], adata.obs[prog]) for j in np.flatnonzero(program == prog)]
        assert np.mean(rhos) >= 0.5, prog
    bg = np.flatnonzero(program == "background")
    for prog in ("density", "nucleus_size", "hue"):
        assert np.mean([abs(_rho(logc[:, j], adata.obs[prog])) for j in bg]) < 0.2
    # A density gene does not follow the hue program.
    den = np.flatnonzero(program == "density")
    assert abs(np.mean([_rho(logc[:, j], adata.obs["hue"]) for j in den])) < 0.2


def test_too_few_genes_raises():
    with pytest.raises(ValueError, match="61"):
        toy(n=10, n_genes=60)
    assert toy(n=5, n_genes=61).n_vars == 61


@pytest.mark.parametrize("tile_size", [32, 128])
def test_other_tile_sizes(tile_size):
    adata = toy(n=60, tile_size=tile_size, seed=1)
    assert adata.obsm["tiles"].shape == (60, 1, tile_size, tile_size, 3)
    props = toy_tile_properties(adata.obsm["tiles"])
    for prog, col in PAIRS:
        assert _rho(adata.obs[prog], props[col]) >= 0.8, (prog, col)


def test_properties_average_over_k_and_accept_4d_and_float():
    adata = toy(n=40, tiles_per_obs=3, seed=4)
    tiles = adata.obsm["tiles"]
    both = toy_tile_properties(tiles)
    per_k = [toy_tile_properties(tiles[:, i]) for i in range(3)]
    pd.testing.assert_frame_equal(both, sum(per_k) / 3)
    # Every one of the k renderings shows its own observation's programs.
    for props in per_k:
        for prog, col in PAIRS:
            assert _rho(adata.obs[prog], props[col]) >= 0.8, (prog, col)
    # Float tiles in [0, 1] measure the same as uint8 tiles.
    pd.testing.assert_frame_equal(toy_tile_properties(tiles[:, 0] / 255.0), per_k[0], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        toy_tile_properties(tiles[0, 0])


def test_ruler_on_hand_made_tiles():
    # A known picture: pink background, two separate dark squares of 4×4 and 6×6 pixels.
    img = np.empty((2, 32, 32, 3), dtype=np.uint8)
    img[:] = (240, 170, 210)
    img[1, 2:6, 2:6] = (70, 50, 140)
    img[1, 20:26, 10:16] = (70, 50, 140)
    props = toy_tile_properties(img)
    assert props.loc[0, "nuclei_count"] == 0 and props.loc[0, "nuclei_fraction"] == 0
    assert props.loc[0, "mean_nucleus_area"] == 0
    assert props.loc[1, "nuclei_count"] == 2
    assert props.loc[1, "mean_nucleus_area"] == pytest.approx((16 + 36) / 2)
    assert props.loc[1, "nuclei_fraction"] == pytest.approx(52 / 1024)
    # Pinker stain (larger R − B) reads as a larger hue.
    bluer = img.copy()
    bluer[..., 0] -= 40
    assert (toy_tile_properties(bluer)["hue"] < props["hue"]).all()
