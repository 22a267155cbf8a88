"""rp.tl.virtual_he: patches placed at their spots on the physical scale, for ST and Visium grids."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import rnapaint as rp

PALETTE = np.random.default_rng(0).integers(20, 200, (64, 3)).astype(np.uint8)


class SpotColours:
    """A stand-in generator: each spot's tile is its own colour (draws differ by ±``jitter`` in red)."""

    is_trained = True

    def __init__(self, jitter: int = 0):
        self.jitter, self.config = jitter, {"image_size": 8}

    def generate(self, adata, n_per_obs=1, seed=0, batch_size=64, **kwargs):
        col = PALETTE[adata.obs["colour"].to_numpy()]
        tiles = np.broadcast_to(col[:, None, None, None, :], (len(col), n_per_obs, 8, 8, 3)).astype(np.int16)
        tiles = tiles.copy()
        tiles[:, :, :, :, 0] += (np.arange(n_per_obs) % 2 * 2 - 1)[None, :, None, None] * self.jitter
        return np.clip(tiles, 0, 255).astype(np.uint8)


def section(grid: str, pitch_units: float = 50.0, n: int = 5) -> ad.AnnData:
    """An ``n × n`` grid of spots (square for ST, hexagonal for Visium) in coordinate units."""
    xy = []
    for r in range(n):
        for c in range(n):
            if grid == "st":
                xy.append((100 + c * pitch_units, 80 + r * pitch_units))
            else:
                xy.append((100 + c * pitch_units + (r % 2) * pitch_units / 2, 80 + r * pitch_units * np.sqrt(3) / 2))
    a = ad.AnnData(np.zeros((len(xy), 3), np.float32), obs=pd.DataFrame(index=[f"s{i}" for i in range(len(xy))]))
    a.obsm["spatial"] = np.asarray(xy)
    a.obs["colour"] = np.arange(len(xy))
    a.obs["section"] = "S1"
    return a


@pytest.mark.parametrize("grid,pitch_um", [("st", 200.0), ("visium", 100.0)])
def test_each_spot_centre_holds_its_own_colour_at_the_physical_scale(grid, pitch_um):
    a = section(grid)
    rp.tl.virtual_he(a, SpotColours(), mpp=4.0, progress_bar=False)
    entry = a.uns["spatial"]["S1"]
    img, scalef = entry["images"]["virtual_he"], entry["scalefactors"]["tissue_virtual_he_scalef"]
    assert a.uns["virtual_he"]["grid"] == grid  # detected from the neighbours
    um_per_unit = pitch_um / 50.0
    assert scalef == pytest.approx(um_per_unit / 4.0)  # coordinate units → pixels at 4 µm/px
    px = np.round(a.obsm["spatial"] * scalef).astype(int)
    np.testing.assert_array_equal(img[px[:, 1], px[:, 0]], PALETTE[a.obs["colour"].to_numpy()])
    # neighbouring centres lie one pitch apart on the image: pitch_um / mpp pixels
    assert px[1, 0] - px[0, 0] == pytest.approx(pitch_um / 4.0, abs=1)
    assert (img[0, 0] == rp.tl.virtual_he.__globals__["GLASS"]).all()  # off the section: glass
    assert a.obsm["tiles_virtual_he"].shape == (a.n_obs, 1, 8, 8, 3)


def test_scanpy_and_spatialdata_read_the_virtual_section(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc
    import spatialdata as sd

    a = section("st")
    rp.tl.virtual_he(a, SpotColours(jitter=10), mpp=4.0, n_draws=2, progress_bar=False)
    images = a.uns["spatial"]["S1"]["images"]
    # two draws ±10 in red: a spread of 10 (× 2, mean over channels: 20 / 3 → 7) where painted
    px = np.round(a.obsm["spatial"] * a.uns["spatial"]["S1"]["scalefactors"]["tissue_virtual_he_scalef"]).astype(int)
    assert (images["virtual_he_spread"][px[:, 1], px[:, 0], 0] == 7).all()
    axes = sc.pl.spatial(a, img_key="virtual_he", library_id="S1", color="colour", show=False)
    assert axes[0].images and axes[0].images[0].get_array().shape[:2] == images["virtual_he"].shape[:2]
    sdata = rp.io.to_spatialdata(a, library_key="section")
    assert {"S1_virtual_he", "S1_virtual_he_spread"} <= set(sdata.images)
    sdata.write(tmp_path / "section.zarr")
    back = rp.io.from_spatialdata(sd.read_zarr(tmp_path / "section.zarr"))
    np.testing.assert_array_equal(back.uns["spatial"]["S1"]["images"]["virtual_he"], images["virtual_he"])
    assert back.uns["spatial"]["S1"]["scalefactors"]["tissue_virtual_he_scalef"] == pytest.approx(
        a.uns["spatial"]["S1"]["scalefactors"]["tissue_virtual_he_scalef"]
    )


def test_the_visium_fixture_paints_and_stitches(data_root):
    a = ad.read_h5ad(data_root / "visium_fixture" / "test_data.h5ad")
    lib = next(iter(a.uns["spatial"]))
    a.obs["colour"] = np.arange(a.n_obs) % len(PALETTE)
    rp.tl.virtual_he(a, SpotColours(), library_id=lib, grid="visium", mpp=2.0, progress_bar=False)
    entry = a.uns["spatial"][lib]
    img = entry["images"]["virtual_he"]
    px = np.round(a.obsm["spatial"] * entry["scalefactors"]["tissue_virtual_he_scalef"]).astype(int)
    np.testing.assert_array_equal(img[px[:, 1], px[:, 0]], PALETTE[a.obs["colour"].to_numpy()])
    assert "hires" in entry["images"]  # the real image stays


def test_virtual_he_refuses_bad_input():
    a = section("st")
    with pytest.raises(ValueError, match="not in obs"):
        rp.tl.virtual_he(a, SpotColours(), library_id="C9", progress_bar=False)
    with pytest.raises(ValueError, match="trained tile generator"):
        rp.tl.virtual_he(a, rp.models.TileEncoder(width=8, blocks=(1,)), progress_bar=False)
    b = a.copy()
    del b.obsm["spatial"]
    with pytest.raises(ValueError, match="no coordinates"):
        rp.tl.virtual_he(b, SpotColours(), progress_bar=False)
    b = a.copy()
    b.obsm["spatial"][3] = np.nan
    with pytest.raises(ValueError, match="1 spots of 'S1' have no coordinates"):
        rp.tl.virtual_he(b, SpotColours(), progress_bar=False)
    rp.tl.virtual_he(a, SpotColours(), progress_bar=False)
    with pytest.raises(ValueError, match="overwrite=True"):
        rp.tl.virtual_he(a, SpotColours(), progress_bar=False)
    with pytest.raises(ValueError, match="n_draws must be a whole number"):
        rp.tl.virtual_he(a, SpotColours(), n_draws=1.5, overwrite=True, progress_bar=False)


def test_the_figure_shows_virtual_real_and_spread(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    a = section("st")
    a.uns["spatial"] = {"S1": {"images": {"hires": np.full((300, 400, 3), 200, np.uint8)}, "scalefactors": {}}}
    a.uns["spatial"]["S1"]["scalefactors"]["tissue_hires_scalef"] = 1.0
    a.obs["label"] = pd.Categorical(np.where(a.obs["colour"] % 2, "tumour", "stroma"))
    rp.tl.virtual_he(a, SpotColours(jitter=5), n_draws=2, mpp=4.0, progress_bar=False)
    fig = rp.pl.virtual_he(a, color="label", spread=True, save=tmp_path / "v.png")
    panels = [ax for ax in fig.axes if ax.get_title()]  # (the spread's colour bar has none)
    assert [ax.get_title() for ax in panels] == ["virtual H&E", "real H&E", "spread over draws"]
    assert all(len(ax.collections) == 2 for ax in panels)  # the two labels drawn on every panel
    assert (tmp_path / "v.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match=r"run rp\.tl\.virtual_he first"):
        rp.pl.virtual_he(a, library_id="S2")
