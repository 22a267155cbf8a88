"""Tiles: whole-slide tiling, spot patches, the TileStore and paired datasets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import rnapaint as rp
from rnapaint.data.augment import _dihedral
from rnapaint.io.slides import Slide
from rnapaint.io.writer_lock import StoreBusyError
from rnapaint.pp.tiling import TilingParams, background_fraction, contrast, read_tile

CMU = "wsi/CMU-1-Small-Region.svs"


def _units(paths: dict[str, str]) -> ad.AnnData:
    return ad.AnnData(obs=pd.DataFrame({"slide": list(paths.values())}, index=list(paths)))


# ---------------------------------------------------------------- TileStore
def test_tile_store_append_read_index_and_readonly(tmp_path):
    rng = np.random.default_rng(0)
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 16)
    imgs = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    table = pd.DataFrame({"unit": list("aabbbcc"), "slide": "s1", "x": np.arange(7), "y": 0, "mpp": 0.5})
    store.append(imgs[:4], table.iloc[:4])
    store.append(imgs[4:], table.iloc[4:].reset_index(drop=True), slide_done="s1")
    ro = rp.data.TileStore.open(tmp_path / "s.zarr")
    assert len(ro) == 7 and ro.units == ["a", "b", "c"]
    np.testing.assert_array_equal(ro[np.arange(7)], imgs)
    np.testing.assert_array_equal(ro.indices("b"), [2, 3, 4])
    assert ro.table["unit"].tolist() == list("aabbbcc") and ro.done_slides == {"s1": 3}
    with pytest.raises(ValueError, match="read-only"):
        ro.append(imgs[:1], table.iloc[:1])
    with pytest.raises(ValueError, match="uint8"):
        store.append(imgs[:1].astype(np.float32), table.iloc[:1])
    with pytest.raises(KeyError):
        ro.indices("zzz")
    with pytest.raises(IndexError):
        ro[7]


def test_uncommitted_rows_are_invisible(tmp_path):
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    img = np.full((3, 8, 8, 3), 7, np.uint8)
    t = pd.DataFrame({"unit": ["u"] * 3, "slide": "s", "x": [0, 1, 2], "y": 0, "mpp": 1.0})
    store.append(img, t, commit=False)  # a writer killed here...
    assert len(rp.data.TileStore.open(tmp_path / "s.zarr")) == 0  # ...leaves nothing half-visible
    store.mark_failed("other.svs", "unreadable")  # recording a failure does not commit pending rows
    reopened = rp.data.TileStore.open(tmp_path / "s.zarr")
    assert len(reopened) == 0 and reopened.failures["slide"].tolist() == ["other.svs"]
    with pytest.raises(ValueError, match="not a rnapaint TileStore"):
        rp.data.TileStore.open(tmp_path)


# ---------------------------------------------------------------- whole slides
@pytest.fixture(scope="module")
def cmu_store(data_root, tmp_path_factory):
    path = str(data_root / CMU)
    a = _units({"cmu": path})
    store = tmp_path_factory.mktemp("cmu") / "tiles.zarr"
    rp.pp.tile_slides(a, store=store, tile_size=256, mpp=0.5, progress_bar=False)
    return a, store, path


def test_cmu_kept_tiles_are_tissue_and_dropped_ones_are_not(cmu_store):
    a, store_path, path = cmu_store
    store = rp.data.TileStore.open(store_path)
    params = TilingParams(tile_size=256, mpp=0.5)
    assert len(store) == a.obs["n_tiles"].iloc[0] > 10
    with Slide(path) as slide:
        grid, info = rp.pp.plan_tiles(slide, params)
        kept = set(zip(store.table["x"], store.table["y"], strict=True))
        tiles = store[np.arange(len(store))]
        bg = background_fraction(tiles, info["grey_threshold"], info["sat_threshold"])
        assert (bg <= params.max_background).all() and (contrast(tiles) >= params.min_contrast).all()
        by_xy = grid.set_index(["x", "y"])
        assert (by_xy.loc[sorted(kept), "mask_tissue"] > 0.2).all()  # every kept tile has tissue by the mask
        dropped = [(x, y) for x, y in zip(grid["x"], grid["y"], strict=True) if (x, y) not in kept]
        assert len(dropped) > 10
        for x, y in dropped:
            t = read_tile(slide, x, y, info, 256)
            is_bg = background_fraction(t, info["grey_threshold"], info["sat_threshold"]) > params.max_background
            assert is_bg or contrast(t) < params.min_contrast, (x, y)
    assert store.table["mpp"].eq(0.5).all()


def test_max_tiles_is_a_seeded_draw(data_root, tmp_path):
    path = str(data_root / CMU)
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        rp.pp.tile_slides(
            _units({"cmu": path}), store=tmp_path / f"{name}.zarr", max_tiles=5, seed=seed, progress_bar=False
        )
        t = rp.data.TileStore.open(tmp_path / f"{name}.zarr").table
        runs.append(set(zip(t["x"], t["y"], strict=True)))
    assert len(runs[0]) == 5 and runs[0] == runs[1] and runs[0] != runs[2]
    units = _units({"cmu": path})
    copied = rp.pp.tile_slides(units, store=tmp_path / "a.zarr", max_tiles=5, seed=1, progress_bar=False, copy=True)
    assert "n_tiles" not in units.obs and copied.obs["n_tiles"].tolist() == [5]  # copy=True leaves the input alone
    with pytest.raises(ValueError, match="other settings"):  # resuming store "a" at another resolution
        rp.pp.tile_slides(
            _units({"cmu": path}), store=tmp_path / "a.zarr", max_tiles=5, seed=1, mpp=1.0, progress_bar=False
        )


def _pyramid(path: Path, base_mpp: float = 0.25) -> np.ndarray:
    """A 3-level tiled TIFF whose pixel values encode position; returns level 0."""
    tifffile = pytest.importorskip("tifffile")
    h, w = 1024, 1536
    yy, xx = np.mgrid[0:h, 0:w]
    lvl0 = np.stack([(xx // 3) % 251, (yy // 5) % 241, (xx + yy) % 239], -1).astype(np.uint8)
    levels = [lvl0]
    for _ in range(2):  # exact 2×2 block means, as a scanner's pyramid would hold
        p = levels[-1].astype(np.float64)
        levels.append(((p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4).round().astype(np.uint8))
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(levels):
            res = 1e4 / (base_mpp * 2**i)  # pixels per cm
            tw.write(
                lv,
                tile=(128, 128),
                photometric="rgb",
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
            )
    return levels


@pytest.mark.parametrize(("mpp", "level"), [(0.25, 0), (0.5, 1), (1.0, 2)])
def test_pyramid_tiles_hold_exact_pixels(tmp_path, mpp, level):
    levels = _pyramid(tmp_path / "p.tif")
    params = TilingParams(tile_size=128, mpp=mpp)
    with Slide(tmp_path / "p.tif") as slide:
        assert slide.mpp == pytest.approx(0.25)
        grid, info = rp.pp.plan_tiles(slide, params)
        assert info["level"] == level
        expect_cols, expect_rows = levels[level].shape[1] // 128, levels[level].shape[0] // 128
        assert len(grid) == expect_cols * expect_rows
        for i, j in [(0, 0), (1, 1), (expect_cols - 1, expect_rows - 1)]:
            r = grid[(grid["col"] == i) & (grid["row"] == j)].iloc[0]
            tile = read_tile(slide, int(r.x), int(r.y), info, 128)
            np.testing.assert_array_equal(tile, levels[level][j * 128 : (j + 1) * 128, i * 128 : (i + 1) * 128])


def test_resized_level_is_close(tmp_path):
    levels = _pyramid(tmp_path / "p.tif")
    with Slide(tmp_path / "p.tif") as slide:
        _, info = rp.pp.plan_tiles(slide, TilingParams(tile_size=64, mpp=0.75))
        assert info["level"] == 1  # 0.5 µm/px, the coarsest level still finer than 0.75
        tile = read_tile(slide, 0, 0, info, 64).astype(float)
        ref = levels[1][:96, :96].astype(float)  # 96 px at 0.5 µm/px = 64 px at 0.75 µm/px
        from PIL import Image

        expected = np.asarray(Image.fromarray(ref.astype(np.uint8)).resize((64, 64), Image.Resampling.BOX), float)
        assert np.abs(tile - expected).mean() < 12


def test_bad_slides_go_to_the_failure_table(data_root, tmp_path):
    good = tmp_path / "good.svs"
    shutil.copy(data_root / CMU, good)
    corrupt = tmp_path / "corrupt.svs"
    corrupt.write_bytes(b"II*\x00garbage" * 100)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (600, 600), (245, 245, 245)).save(blank)
    nompp = tmp_path / "nompp.png"
    Image.fromarray((np.random.default_rng(0).random((300, 300, 3)) * 255).astype(np.uint8)).save(nompp)
    a = _units(
        {
            "good": str(good),
            "missing": str(tmp_path / "missing.svs"),
            "corrupt": str(corrupt),
            "blank": str(blank),
            "nompp": str(nompp),
        }
    )
    rp.pp.tile_slides(a, store=tmp_path / "t.zarr", slide_mpp={"blank.png": 0.5}, progress_bar=False)
    fail = rp.data.TileStore.open(tmp_path / "t.zarr").failures.set_index("slide")["error"]
    assert "No slide" in fail[str(tmp_path / "missing.svs")]
    assert "OpenSlide cannot read" in fail[str(corrupt)]
    assert "no tissue" in fail[str(blank)]
    assert "slide_mpp=" in fail[str(nompp)]
    assert a.obs.loc["good", "n_tiles"] > 10 and a.obs.loc[["missing", "blank"], "n_tiles"].eq(0).all()
    assert len(a.uns["tiles"]["failures"]) == 4


def test_parallel_and_executor_match_serial(data_root, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = {}
    for i in range(3):
        p = tmp_path / f"s{i}.svs"
        shutil.copy(data_root / CMU, p)
        paths[f"u{i}"] = str(p)
    rp.pp.tile_slides(_units(paths), store=tmp_path / "serial.zarr", max_tiles=6, progress_bar=False)
    with ThreadPoolExecutor(2) as ex:  # stands in for a dask.distributed Client (same submit/result API)
        rp.pp.tile_slides(_units(paths), store=tmp_path / "client.zarr", max_tiles=6, client=ex, progress_bar=False)
    rp.pp.tile_slides(_units(paths), store=tmp_path / "procs.zarr", max_tiles=6, n_jobs=2, progress_bar=False)
    key = ["unit", "x", "y"]

    def rows(name):
        t = rp.data.TileStore.open(tmp_path / name).table.astype({"unit": str})
        return t.sort_values(key)[key].reset_index(drop=True)

    assert rows("serial.zarr").equals(rows("client.zarr")) and rows("serial.zarr").equals(rows("procs.zarr"))
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        rp.pp.tile_slides(_units(paths), store=tmp_path / "dask.zarr", max_tiles=6, client=c, progress_bar=False)
    assert rows("serial.zarr").equals(rows("dask.zarr"))


_KILL_SCRIPT = """
import sys, anndata as ad, pandas as pd, rnapaint as rp
paths = sys.argv[2:]
a = ad.AnnData(obs=pd.DataFrame({"slide": paths}, index=[f"u{i}" for i in range(len(paths))]))
rp.pp.tile_slides(a, store=sys.argv[1], max_tiles=40, progress_bar=False)
"""


def test_killed_run_resumes_without_duplicates(data_root, tmp_path):
    paths = []
    for i in range(6):
        p = tmp_path / f"slide{i}.svs"
        shutil.copy(data_root / CMU, p)
        paths.append(str(p))
    store = tmp_path / "t.zarr"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(store), *paths])
    commit = store / "rnapaint_commit.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill as soon as the first slide is committed
        if commit.is_file() and json.loads(commit.read_text())["done"]:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done_before = json.loads(commit.read_text())["done"]
    assert 1 <= len(done_before) < 6, "the kill came too late to test resuming"
    subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(store), *paths], check=True)
    s = rp.data.TileStore.open(store)
    t = s.table
    assert set(s.done_slides) == set(paths)
    assert not t.duplicated(["slide", "x", "y"]).any()
    counts = t["slide"].astype(str).value_counts()
    assert (counts == counts.iloc[0]).all() and len(counts) == 6  # identical slides, identical tile counts


# ---------------------------------------------------------------- spots
@pytest.fixture(scope="module")
def her2st_c(data_root):
    return rp.datasets.her2st(data_root, sections=["C2", "C3", "C4", "C5"], images=True)


def test_her2st_images_in_scanpy_convention(her2st_c):
    a = her2st_c
    assert set(a.uns["spatial"]) == {"C2", "C3", "C4", "C5"}
    entry = a.uns["spatial"]["C2"]
    assert entry["images"]["hires"].dtype == np.uint8 and max(entry["images"]["hires"].shape) == 2000
    assert 0.5 < entry["metadata"]["mpp"] < 1.0  # ST array pitch: 200 µm between spot centres
    assert 0 < entry["scalefactors"]["tissue_hires_scalef"] < 1


def test_spot_patches_are_centred_on_the_spots(her2st_c, data_root):
    from PIL import Image

    a = her2st_c.copy()
    rp.pp.spot_tiles(a, size=224, progress_bar=False)
    assert a.obsm["tiles"].shape == (a.n_obs, 1, 224, 224, 3) and not a.obs["tiles_outside"].any()
    assert a.n_obs == 732  # one patch per spot with counts (the spot files select 739; 7 have no counts)
    Image.MAX_IMAGE_PIXELS = None
    rng = np.random.default_rng(0)
    for sec in ["C2", "C5"]:
        spots = pd.read_csv(data_root / f"her2st/data/ST-spotfiles/{sec}_selection.tsv", sep="\t")
        img = np.asarray(Image.open(a.uns["spatial"][sec]["metadata"]["source_image_path"]).convert("RGB"))
        for _, s in spots.iloc[rng.choice(len(spots), 8, replace=False)].iterrows():
            name = f"{sec}_{int(s.x)}x{int(s.y)}"
            if name not in a.obs_names:
                continue
            cx, cy = int(np.floor(s.pixel_x - 112)), int(np.floor(s.pixel_y - 112))
            np.testing.assert_array_equal(a[name].obsm["tiles"][0, 0], img[cy : cy + 224, cx : cx + 224])


def test_spots_outside_the_image_are_flagged(her2st_c, tmp_path):
    a = her2st_c[her2st_c.obs["section"] == "C2"].copy()
    a.obsm["spatial"] = a.obsm["spatial"].copy()
    a.obsm["spatial"][:3] = [[5.0, 5.0], [1e6, 10.0], [100.0, -50.0]]
    rp.pp.spot_tiles(a, size=224, out_size=56, store=tmp_path / "spots.zarr", progress_bar=False)
    assert a.obs["tiles_outside"].sum() == 3 and a.obs["tiles_outside"].iloc[:3].all()
    s = rp.data.TileStore.open(tmp_path / "spots.zarr")
    assert len(s) == a.n_obs - 3 and not set(a.obs_names[:3]) & set(s.units)
    mpp = a.uns["spatial"]["C2"]["metadata"]["mpp"]
    np.testing.assert_allclose(s.table["mpp"], mpp * 4, rtol=1e-6)  # 224 source pixels in 56
    with pytest.raises(FileExistsError):
        rp.pp.spot_tiles(a, size=224, store=tmp_path / "spots.zarr", progress_bar=False)
    b = rp.pp.spot_tiles(a, size=64, progress_bar=False, copy=True)  # copy=True leaves `a` as it was
    assert "tiles" not in a.obsm and b.obsm["tiles"].shape == (a.n_obs, 1, 64, 64, 3)
    rp.pp.spot_tiles(a, size=64, progress_bar=False)  # in memory: flagged spots keep a black row...
    np.testing.assert_array_equal(a.obsm["tiles"], b.obsm["tiles"])
    pairs = rp.data.PairedTiles(a.obsm["tiles"], a)
    assert len(pairs) == a.n_obs - 3 and not set(pairs.obs_rows) & {0, 1, 2}  # ...that is never trained on
    no_img = a.copy()
    del no_img.uns["spatial"]
    with pytest.raises(ValueError, match="holds no image"):
        rp.pp.spot_tiles(no_img)


def test_hires_fallback_without_source_image(her2st_c):
    a = her2st_c[her2st_c.obs["section"] == "C3"].copy()
    a.uns["spatial"] = {"C3": {k: v for k, v in a.uns["spatial"]["C3"].items() if k != "metadata"}}
    full = a.copy()
    full.uns["spatial"] = her2st_c.uns["spatial"]
    rp.pp.spot_tiles(a, size=96, progress_bar=False)
    rp.pp.spot_tiles(full, size=96, library_key="section", progress_bar=False)
    diff = np.abs(a.obsm["tiles"].astype(float) - full.obsm["tiles"].astype(float)).mean()
    assert diff < 25  # upscaled hires vs full resolution: the same place, blurrier


# ---------------------------------------------------------------- paired data
def test_paired_tiles_pair_each_tile_with_its_unit(tmp_path):
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    units = ["u2", "u0", "u0", "u1"]
    imgs = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(4)])
    store.append(imgs, pd.DataFrame({"unit": units, "slide": "s", "x": range(4), "y": 0, "mpp": 1.0}))
    a = ad.AnnData(X=np.arange(3 * 2, dtype=np.float32).reshape(3, 2), obs=pd.DataFrame(index=["u0", "u1", "u2"]))
    ds = rp.data.PairedTiles(tmp_path / "s.zarr", a, value_range=(0, 1))
    for i, u in enumerate(units):
        item = ds[i]
        np.testing.assert_array_equal(item["condition"].numpy(), a[u].X[0])
        assert item["image"].shape == (3, 8, 8) and item["image"].max().item() == pytest.approx(10 * i / 255)
    train = rp.data.PairedTiles(tmp_path / "s.zarr", a, units=["u0"])
    assert len(train) == 2 and set(train.obs_rows) == {0}
    sub = rp.data.PairedTiles(tmp_path / "s.zarr", a[:2].copy())  # u2 is not in adata: its tile is left out
    assert len(sub) == 3 and [int(sub[i]["tile"]) for i in range(3)] == [1, 2, 3]


def test_loader_batches_are_seeded_and_augmented(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (6, 2, 16, 16, 3), dtype=np.uint8)
    a = ad.AnnData(X=rng.standard_normal((6, 3)).astype(np.float32))
    ds = rp.data.PairedTiles(arr, a, augment=True)

    def first_batch(workers):
        return next(iter(rp.data.tile_loader(ds, batch_size=4, num_workers=workers, seed=3)))

    # In worker processes the loader's seed fixes the augmentations too.
    b1, b2 = first_batch(1), first_batch(1)
    assert torch.equal(b1["image"], b2["image"]) and b1["image"].shape == (4, 3, 16, 16)
    torch.manual_seed(0)  # in the main process they follow torch's global seed
    b3 = first_batch(0)
    torch.manual_seed(0)
    assert torch.equal(b3["image"], first_batch(0)["image"])
    plain = rp.data.PairedTiles(arr, a, augment=None)
    changed = [not torch.equal(ds[i]["image"], plain[i]["image"]) for i in range(12)]
    assert sum(changed) >= 8  # colour jitter alone changes almost every tile
    # Dihedral transforms keep the multiset of pixels: flips/rotations without jitter.
    geo = rp.data.PairedTiles(arr, a, augment=rp.data.TileAugment(brightness=0, contrast=0, saturation=0, hue=0))
    for i in range(4):
        x, y = geo[i]["image"], plain[i]["image"]
        assert torch.equal(x.flatten().sort().values, y.flatten().sort().values)


def test_unit_sampler_balances_units():
    obs_rows = np.array([0] * 90 + [1] * 10)
    s = rp.data.UnitSampler(obs_rows, num_samples=2000, seed=0)
    drawn = obs_rows[list(s)]
    assert 0.4 < drawn.mean() < 0.6  # unit 1 is drawn as often as unit 0 despite 9× fewer tiles


def test_tile_grid_figure(tmp_path):
    arr = np.zeros((5, 8, 8, 3), np.uint8)
    fig = rp.pl.tiles(arr, labels=list("abcde"), ncols=3, save=tmp_path / "g.png", show=False)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and [ax.get_title() for ax in shown] == list("abcde")
    assert (tmp_path / "g.png").stat().st_size > 0


# ---------------------------------------------------------------- SpatialData
def test_spatialdata_round_trip(her2st_c, tmp_path):
    sd = pytest.importorskip("spatialdata")
    a = her2st_c[her2st_c.obs["section"].isin(["C2", "C3"])].copy()
    a.uns["spatial"] = {k: her2st_c.uns["spatial"][k] for k in ("C2", "C3")}
    sdata = rp.io.to_spatialdata(a, library_key="section")
    assert {"C2_image", "C3_image"} <= set(sdata.images) and {"C2_spots", "C3_spots"} <= set(sdata.shapes)
    sdata.write(tmp_path / "her2st.zarr")  # spatialdata's own writer and reader
    back = rp.io.from_spatialdata(sd.read_zarr(tmp_path / "her2st.zarr"))
    assert list(back.obs_names) == list(a.obs_names)
    np.testing.assert_allclose(back.obsm["spatial"], a.obsm["spatial"], atol=1e-6)
    np.testing.assert_array_equal(back.X.toarray(), a.X.toarray())
    assert (back.obs["library_id"].astype(str) == a.obs["section"].astype(str)).all()
    for lib in ("C2", "C3"):
        np.testing.assert_array_equal(
            back.uns["spatial"][lib]["images"]["hires"], a.uns["spatial"][lib]["images"]["hires"]
        )
        assert back.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"] == pytest.approx(
            a.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"]
        )
    # Patches cut from the round-tripped object are the same pixels.
    rp.pp.spot_tiles(a, size=64, library_key="section", progress_bar=False)
    rp.pp.spot_tiles(back, size=64, progress_bar=False)
    np.testing.assert_array_equal(a.obsm["tiles"], back.obsm["tiles"])


def test_from_spatialdata_built_by_spatialdata_itself():
    sd = pytest.importorskip("spatialdata")
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    img = np.random.default_rng(0).integers(0, 255, (3, 50, 60), dtype=np.uint8)
    xy = np.array([[40.0, 60.0], [100.0, 20.0], [200.0, 180.0]])
    table = ad.AnnData(
        np.ones((3, 2), np.float32),
        obs=pd.DataFrame({"region": pd.Categorical(["spots"] * 3), "cell": [2, 0, 1]}, index=["s2", "s0", "s1"]),
    )
    sdata = sd.SpatialData(
        images={
            "he": Image2DModel.parse(
                img, dims=("c", "y", "x"), transformations={"global": Scale([4.0, 4.0], axes=("y", "x"))}
            )
        },
        shapes={
            "spots": ShapesModel.parse(
                xy, geometry=0, radius=np.full(3, 5.0), index=np.arange(3), transformations={"global": Identity()}
            )
        },
        tables={"table": TableModel.parse(table, region="spots", region_key="region", instance_key="cell")},
    )
    a = rp.io.from_spatialdata(sdata)
    np.testing.assert_allclose(a.obsm["spatial"], xy[[2, 0, 1]])  # matched by instance id, not order
    assert a.uns["spatial"]["global"]["scalefactors"]["tissue_hires_scalef"] == pytest.approx(0.25)
    np.testing.assert_array_equal(a.uns["spatial"]["global"]["images"]["hires"], np.moveaxis(img, 0, -1))


def test_fast_uint8_path_equals_the_tensor_path():
    tile = (np.random.default_rng(1).random((32, 32, 3)) * 255).astype(np.uint8)
    aug = rp.data.TileAugment(hue=0.05, saturation=0.2)
    for seed in range(6):
        torch.manual_seed(seed)
        fast = aug.from_uint8(tile)
        torch.manual_seed(seed)
        ref = aug(torch.from_numpy(tile).permute(2, 0, 1).float() / 255)
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)
    # A pure hue rotation keeps luminance: the Y channel of every pixel is unchanged.
    hue_only = rp.data.TileAugment(flips=False, rot90=False, brightness=0, contrast=0, saturation=0, hue=0.1)
    x = torch.from_numpy(tile).permute(2, 0, 1).float() / 255
    y_weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    out = hue_only(x)
    inside = ((out > 0.001) & (out < 0.999)).all(0)  # clipping changes luminance; compare unclipped pixels
    torch.testing.assert_close((out * y_weights).sum(0)[inside], (x * y_weights).sum(0)[inside], atol=1e-4, rtol=0)


def test_batch_augmentation_matches_the_per_tile_transform():
    rng = np.random.default_rng(2)
    tiles = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    # Geometry alone: each tile gets exactly the flips and rotation drawn for it, in the per-tile order.
    geo = rp.data.TileAugment(brightness=0, contrast=0, saturation=0, hue=0)
    out = geo.batch(torch.from_numpy(tiles), torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    flip_w, flip_h = torch.rand(40, generator=g) < 0.5, torch.rand(40, generator=g) < 0.5
    k = torch.randint(0, 4, (40,), generator=g)
    for i in range(40):
        ref = x[i].flip(-1) if flip_w[i] else x[i]
        ref = ref.flip(-2) if flip_h[i] else ref
        assert torch.equal(out[i], torch.rot90(ref, int(k[i]), dims=(-2, -1)))
    assert len(set(zip(flip_w.tolist(), flip_h.tolist(), k.tolist(), strict=True))) > 8  # many transforms drawn
    # The grouped transform used on GPUs gives exactly what the CPU's per-tile loop gives.
    code = flip_w.long() * 8 + flip_h.long() * 4 + k
    assert torch.equal(_dihedral(torch.from_numpy(tiles), code, grouped=True), out)
    # Inside a bf16 autocast region (a GPU training step) the output stays float32 and exact.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        jittered = rp.data.TileAugment().batch(torch.from_numpy(tiles), torch.Generator().manual_seed(1))
    assert jittered.dtype == torch.float32
    torch.testing.assert_close(
        jittered, rp.data.TileAugment().batch(torch.from_numpy(tiles), torch.Generator().manual_seed(1))
    )
    # Colour alone: the per-tile colour matrix applied with the factors drawn for that tile.
    col = rp.data.TileAugment(flips=False, rot90=False, brightness=0.2, contrast=0.3, saturation=0.2, hue=0.05)
    out = col.batch(torch.from_numpy(tiles), torch.Generator().manual_seed(7), value_range=(-1, 1))
    g = torch.Generator().manual_seed(7)
    u = [1 + (2 * torch.rand(40, generator=g) - 1) * v for v in (0.2, 0.3, 0.2)]
    theta = (2 * torch.rand(40, generator=g) - 1) * 0.05 * 2 * np.pi
    for i in range(0, 40, 7):
        factors = iter([u[0][i].item(), u[1][i].item(), u[2][i].item(), theta[i].item() / (0.05 * 4 * np.pi) + 0.5])
        with pytest.MonkeyPatch.context() as mp:  # replay tile i's draws through the per-tile path
            mp.setattr(rp.data.TileAugment, "_factor", staticmethod(lambda v, f=factors: next(f)))
            mp.setattr(torch, "rand", lambda *a, f=factors, **k: torch.tensor(next(f)))
            ref = col(x[i])
        torch.testing.assert_close(out[i], ref * 2 - 1, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        col.batch(x)


def test_device_augmentation_items_are_raw_tiles_and_finish_on_the_batch(tmp_path):
    rng = np.random.default_rng(0)
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 16)
    imgs = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    store.append(imgs, pd.DataFrame({"unit": list("aabbcc"), "slide": "s", "x": range(6), "y": 0, "mpp": 1.0}))
    a = ad.AnnData(X=rng.standard_normal((3, 2)).astype(np.float32), obs=pd.DataFrame(index=list("abc")))
    ds = rp.data.PairedTiles(tmp_path / "s.zarr", a, augment=True, augment_on="device")
    assert ds.tile_size == 16
    batch = next(iter(rp.data.tile_loader(ds, batch_size=6, shuffle=False, num_workers=1)))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(batch["image"].numpy(), imgs)  # the stored tiles, untouched
    x1 = ds.finish(batch["image"], torch.Generator().manual_seed(1))
    x2 = ds.finish(batch["image"], torch.Generator().manual_seed(1))
    assert x1.shape == (6, 3, 16, 16) and torch.equal(x1, x2) and -1 <= x1.min() and x1.max() <= 1
    plain = rp.data.PairedTiles(tmp_path / "s.zarr", a, augment=None, augment_on="device")
    ref = torch.stack([rp.data.PairedTiles(tmp_path / "s.zarr", a)[i]["image"] for i in range(6)])
    torch.testing.assert_close(plain.finish(batch["image"]), ref)  # no augmentation: the worker path's values
    assert not torch.equal(x1, ref)
    with pytest.raises(ValueError, match="augment_on"):
        rp.data.PairedTiles(tmp_path / "s.zarr", a, augment_on="gpu")


def test_direct_chunk_reads_equal_zarr_reads(tmp_path):
    rng = np.random.default_rng(4)
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    imgs = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    imgs[2] = 0  # zarr skips writing chunks equal to the fill value
    store.append(imgs, pd.DataFrame({"unit": list("abcde"), "slide": "s", "x": range(5), "y": 0, "mpp": 1.0}))
    ro = rp.data.TileStore.open(tmp_path / "s.zarr")
    assert ro.reader.direct
    order = np.array([4, 2, 0, 0, 3])
    np.testing.assert_array_equal(ro[order], imgs[order])
    np.testing.assert_array_equal(ro[order], ro.images.get_orthogonal_selection((order,)))
    np.testing.assert_array_equal(ro[-1], imgs[4])
    # A damaged chunk is an error that names the file, not a wrong tile.
    chunk = next(p for p in (tmp_path / "s.zarr" / "images").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(ValueError, match="damaged"):
        rp.data.TileStore.open(tmp_path / "s.zarr")[np.arange(5)]


def test_a_deleted_chunk_is_damage_not_a_black_tile(tmp_path):
    rng = np.random.default_rng(5)
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    imgs = rng.integers(1, 256, (3, 8, 8, 3), dtype=np.uint8)
    imgs[1] = 0  # an all-black tile is stored too, so its file can be missed
    store.append(imgs, pd.DataFrame({"unit": list("abc"), "slide": "s", "x": range(3), "y": 0, "mpp": 1.0}))
    store.close()
    files = sorted(p for p in (tmp_path / "s.zarr" / "images").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(files) == 3
    np.testing.assert_array_equal(rp.data.TileStore.open(tmp_path / "s.zarr")[1], imgs[1])
    black = next(p for p in files if p.relative_to(tmp_path / "s.zarr" / "images").parts[1] == "1")
    black.unlink()
    with pytest.raises(ValueError, match=r"missing.*damaged"):
        rp.data.TileStore.open(tmp_path / "s.zarr")[1]
    np.testing.assert_array_equal(rp.data.TileStore.open(tmp_path / "s.zarr")[[0, 2]], imgs[[0, 2]])
    # A store written before the marker (zarr skipped black chunks) still reads them as black.
    del rp.data.TileStore.open(tmp_path / "s.zarr", "a").images.attrs["rnapaint_every_chunk_written"]
    np.testing.assert_array_equal(rp.data.TileStore.open(tmp_path / "s.zarr")[1], 0)


def test_scanpy_draws_the_attached_image(her2st_c):
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    a = her2st_c[her2st_c.obs["section"] == "C4"].copy()
    a.obs["total"] = np.asarray(a.X.sum(1)).ravel()
    axes = sc.pl.spatial(a, library_id="C4", color="total", img_key="hires", show=False)
    images = axes[0].get_images()
    assert len(images) == 1 and images[0].get_array().shape[:2] == a.uns["spatial"]["C4"]["images"]["hires"].shape[:2]


# ---------------------------------------------------------------- damaged and reused stores
def test_truncated_chunk_is_an_error_not_wrong_pixels(tmp_path):
    import zarr
    from zarr.codecs import BloscCodec

    from rnapaint.io.tile_chunks import TileChunkReader

    rng = np.random.default_rng(5)
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)  # random pixels: Blosc stores them verbatim
    imgs[2] = 200  # and a compressible tile
    imgs[2, :16] = 50
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 32)
    store.append(imgs, pd.DataFrame({"unit": list("abc"), "slide": "s", "x": range(3), "y": 0, "mpp": 1.0}))
    store.close()
    for i in (1, 2):  # cut 10 % off: Blosc itself decodes the verbatim frame into wrong pixels without a word
        chunk = tmp_path / "s.zarr" / "images" / "c" / str(i) / "0" / "0" / "0"
        raw = chunk.read_bytes()
        chunk.write_bytes(raw[: int(len(raw) * 0.9)])
    ro = rp.data.TileStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ro[0], imgs[0])
    for i in (1, 2):
        with pytest.raises(ValueError, match=rf"c/{i}/0/0/0 .*truncated or corrupted.*damaged"):
            ro[i]
    # The same layout in another zarr store (here in memory) is read and checked the same way.
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    arr = group.create_array(
        "images",
        shape=(3, 32, 32, 3),
        chunks=(1, 32, 32, 3),
        dtype="uint8",
        compressors=BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"),
    )
    arr[:] = imgs
    reader = TileChunkReader(arr)
    assert reader.direct
    np.testing.assert_array_equal(reader.read(np.arange(3)), imgs)
    key = "images/c/1/0/0/0"
    raw = group.store._store_dict[key]
    group.store._store_dict[key] = type(raw).from_bytes(raw.to_bytes()[:-300])
    with pytest.raises(ValueError, match="damaged"):
        reader.read([1])


def test_create_deletes_only_tile_stores_and_recovers_an_unfinished_one(tmp_path):
    user = tmp_path / "results"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a rnapaint TileStore"):
        rp.data.TileStore.create(user, 16, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(rp.data.TileStore.create(empty, 16)) == 0  # an empty folder is created into
    s = rp.data.TileStore.create(tmp_path / "s.zarr", 16)
    s.append(np.ones((1, 16, 16, 3), np.uint8), pd.DataFrame({"unit": ["a"], "slide": "s", "x": 0, "y": 0, "mpp": 1}))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rp.data.TileStore.create(tmp_path / "s.zarr", 16)
    with pytest.raises(StoreBusyError):  # never deleted under a writer that holds it
        rp.data.TileStore.create(tmp_path / "s.zarr", 16, overwrite=True)
    s.close()
    assert len(rp.data.TileStore.create(tmp_path / "s.zarr", 16, overwrite=True)) == 0  # a store is replaced
    # A run killed after the group was created and before the first commit: no tile, no commit file.
    (tmp_path / "s.zarr" / "rnapaint_commit.json").unlink()
    with pytest.raises(ValueError, match="creation was interrupted"):
        rp.data.TileStore.open(tmp_path / "s.zarr", "a")
    assert len(rp.data.TileStore.create(tmp_path / "s.zarr", 16)) == 0
    (tmp_path / "s.zarr" / "rnapaint_commit.json").unlink()
    a = _units({"u": str(tmp_path / "missing.svs")})
    rp.pp.tile_slides(a, store=tmp_path / "s.zarr", tile_size=16, progress_bar=False)  # tile_slides resumes it
    assert rp.data.TileStore.open(tmp_path / "s.zarr").failures["slide"].tolist() == [str(tmp_path / "missing.svs")]


_ROW = {"unit": ["a"], "slide": "s", "x": 0, "y": 0, "mpp": 1.0}


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "s.zarr"
    w = rp.data.TileStore.create(path, 8)
    w.append(np.full((1, 8, 8, 3), 7, np.uint8), pd.DataFrame(_ROW))
    with pytest.raises(StoreBusyError, match="another handle in this process"):
        rp.data.TileStore.open(path, "a")
    assert len(rp.data.TileStore.open(path)) == 1  # readers never wait
    # tile_slides on a store another writer holds refuses before touching it.
    with pytest.raises(StoreBusyError):
        rp.pp.tile_slides(_units({"u": str(tmp_path / "x.svs")}), store=path, tile_size=8, progress_bar=False)
    w.close()
    with pytest.raises(ValueError, match="read-only"):
        w.append(np.zeros((1, 8, 8, 3), np.uint8), pd.DataFrame(_ROW))
    # A check that fails inside tile_slides (wrong tile size) still lets the lock go.
    with pytest.raises(ValueError, match="8px tiles"):
        rp.pp.tile_slides(_units({"u": str(tmp_path / "x.svs")}), store=path, tile_size=16, progress_bar=False)
    with rp.data.TileStore.open(path, "a") as w2:
        w2.append(np.full((1, 8, 8, 3), 9, np.uint8), pd.DataFrame(_ROW))
    assert len(rp.data.TileStore.open(path)) == 2
    # Another process holds it: the error names that process; once it is killed, the lock is gone.
    code = (
        "import sys, time, rnapaint as rp\n"
        f"s = rp.data.TileStore.open({str(path)!r}, 'a')\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreBusyError, match=f"process {proc.pid}"):
            rp.data.TileStore.open(path, "a")
    finally:
        proc.kill()
        proc.wait()
    rp.data.TileStore.open(path, "a").close()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tile_size": 0}, "tile_size"),
        ({"mpp": 0.0}, "mpp must be"),
        ({"mpp": -1.0}, "mpp must be"),
        ({"max_background": 5.0}, "max_background"),
        ({"max_tiles": 0}, "max_tiles"),
        ({"slide_mpp": 0.0}, "slide_mpp"),
        ({"slide_mpp": {"x.svs": -0.25}}, "slide_mpp"),
    ],
)
def test_tile_slides_refuses_bad_settings_before_writing(tmp_path, kw, match):
    a = _units({"u": str(tmp_path / "x.svs")})
    with pytest.raises(ValueError, match=match):
        rp.pp.tile_slides(a, store=tmp_path / "t.zarr", progress_bar=False, **kw)
    assert not (tmp_path / "t.zarr").exists()


def test_resume_under_another_spelling_of_the_path_does_not_tile_twice(data_root, tmp_path, monkeypatch):
    shutil.copy(data_root / CMU, tmp_path / "cmu.svs")
    store = tmp_path / "t.zarr"
    monkeypatch.chdir(tmp_path)
    a = _units({"u1": "cmu.svs"})
    rp.pp.tile_slides(a, store="t.zarr", max_tiles=5, progress_bar=False)
    assert not (store / ".staging").exists() and not list(tmp_path.glob(".staging*"))
    # What a killed run leaves: a half-tiled slide in the store's staging folder; the next run clears it.
    (store / ".staging" / "s0.zarr").mkdir(parents=True)
    (store / ".staging" / "s0.zarr" / "junk").write_bytes(b"x" * 100)
    a.obs["slide"] = [str(tmp_path / "cmu.svs")]  # resumed from elsewhere: the absolute path
    rp.pp.tile_slides(a, store="t.zarr", max_tiles=5, progress_bar=False)
    assert not (store / ".staging").exists()
    (tmp_path / "link.svs").symlink_to(tmp_path / "cmu.svs")
    a.obs["slide"] = ["link.svs"]
    rp.pp.tile_slides(a, store="t.zarr", max_tiles=5, progress_bar=False)
    s = rp.data.TileStore.open(store)
    assert len(s) == 5 and s.done_slides == {str((tmp_path / "cmu.svs").resolve()): 5}
    assert a.obs["n_tiles"].tolist() == [5]
    # A unit whose tiles came from another file (a copy) is not tiled a second time either.
    shutil.copy(tmp_path / "cmu.svs", tmp_path / "copy.svs")
    a.obs["slide"] = ["copy.svs"]
    rp.pp.tile_slides(a, store="t.zarr", max_tiles=5, progress_bar=False)
    assert len(rp.data.TileStore.open(store)) == 5 and a.obs["n_tiles"].tolist() == [5]


def test_whole_slide_formats_without_openslide_ask_for_the_extra(data_root, tmp_path, monkeypatch):
    from PIL import Image

    from rnapaint.io.slides import SlideError

    monkeypatch.setitem(sys.modules, "openslide", None)  # `import openslide` now raises ImportError
    with pytest.raises(SlideError, match=r"rnapaint\[wsi\]"):
        Slide(data_root / CMU)
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "plain.png")
    with Slide(tmp_path / "plain.png", mpp=0.5) as s:  # plain images keep the PIL path
        assert s.dimensions == (40, 30) and s._osr is None


def test_paired_tiles_take_a_subset_of_the_units(tmp_path):
    store = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    imgs = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(6)])
    store.append(imgs, pd.DataFrame({"unit": list("aabbcc"), "slide": "s", "x": range(6), "y": 0, "mpp": 1.0}))
    a = ad.AnnData(X=np.arange(6, dtype=np.float32).reshape(3, 2), obs=pd.DataFrame(index=list("abc")))
    train = a[["a", "b"]].copy()  # e.g. the training split
    ds = rp.data.PairedTiles(tmp_path / "s.zarr", train, units=["a", "b"])
    assert len(ds) == 4 and [int(ds[i]["tile"]) for i in range(4)] == [0, 1, 2, 3]
    np.testing.assert_array_equal(ds[3]["condition"].numpy(), train["b"].X[0])
    assert len(rp.data.PairedTiles(tmp_path / "s.zarr", train[["b"]].copy())) == 2
    other = ad.AnnData(X=np.zeros((1, 2), np.float32), obs=pd.DataFrame(index=["z"]))
    with pytest.raises(ValueError, match="None of the 3 units"):
        rp.data.PairedTiles(tmp_path / "s.zarr", other)


def test_loader_refuses_a_dataset_smaller_than_a_batch_with_drop_last():
    arr = np.ones((6, 1, 8, 8, 3), np.uint8)
    ds = rp.data.PairedTiles(arr, ad.AnnData(X=np.zeros((6, 2), np.float32)))
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        rp.data.tile_loader(ds, batch_size=64, num_workers=0)
    loader = rp.data.tile_loader(ds, batch_size=64, num_workers=0, drop_last=False)
    assert [len(b["image"]) for b in loader] == [6]
    assert len(rp.data.tile_loader(ds, batch_size=6, num_workers=0)) == 1


def test_her2st_sections_without_an_image_are_flagged(data_root):
    a = rp.datasets.her2st(data_root, sections=["C1", "C2"], images=True, hires_max=200)
    assert list(a.uns["spatial"]) == ["C2"]  # C1 has no H&E image
    rp.pp.spot_tiles(a, size=64, out_size=8, progress_bar=False)
    c1 = (a.obs["section"] == "C1").to_numpy()
    assert a.obs["tiles_no_image"].to_numpy().tolist() == c1.tolist()
    assert a.obs["tiles_outside"][c1].all() and a.uns["tiles"]["no_image"] == ["C1"]
    assert not a.obsm["tiles"][c1].any() and a.obsm["tiles"][~c1].reshape((~c1).sum(), -1).max(1).min() > 0
    pairs = rp.data.PairedTiles(a.obsm["tiles"], a)
    assert len(pairs) == (~c1).sum()
    rp.pp.spot_tiles(a, size=64, out_size=8, library_key="section", progress_bar=False)
    assert a.obs["tiles_no_image"][c1].all()


def _sdata_with_image_transform(transform):
    sd = pytest.importorskip("spatialdata")
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity

    table = ad.AnnData(
        np.ones((2, 2), np.float32), obs=pd.DataFrame({"region": pd.Categorical(["spots"] * 2), "cell": [0, 1]})
    )
    return sd.SpatialData(
        images={
            "he": Image2DModel.parse(
                np.zeros((3, 20, 30), np.uint8), dims=("c", "y", "x"), transformations={"global": transform}
            )
        },
        shapes={
            "spots": ShapesModel.parse(
                np.array([[10.0, 20.0], [30.0, 40.0]]),
                geometry=0,
                radius=np.full(2, 5.0),
                index=np.arange(2),
                transformations={"global": Identity()},
            )
        },
        tables={"table": TableModel.parse(table, region="spots", region_key="region", instance_key="cell")},
    )


def test_from_spatialdata_refuses_image_transforms_that_scalefactors_cannot_hold():
    pytest.importorskip("spatialdata")
    from spatialdata.transformations import Affine, Scale, Sequence, Translation

    scale = Scale([2.0, 2.0], axes=("y", "x"))
    ok = rp.io.from_spatialdata(_sdata_with_image_transform(scale))
    assert ok.uns["spatial"]["global"]["scalefactors"]["tissue_hires_scalef"] == pytest.approx(0.5)
    c, s = np.cos(0.3), np.sin(0.3)
    for transform, match in [
        (Sequence([scale, Translation([100.0, 50.0], axes=("x", "y"))]), "translation"),
        (Scale([2.0, 3.0], axes=("y", "x")), "unequal x/y scales"),
        (
            Affine(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), input_axes=("x", "y"), output_axes=("x", "y")),
            "rotation",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            rp.io.from_spatialdata(_sdata_with_image_transform(transform))


def test_from_spatialdata_keeps_sections_that_also_share_a_global_system_apart():
    sd = pytest.importorskip("spatialdata")
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity

    def section(name, value, own_system=True):
        systems = {"global": Identity(), **({name: Identity()} if own_system else {})}
        img = Image2DModel.parse(np.full((3, 20, 30), value, np.uint8), dims=("c", "y", "x"), transformations=systems)
        xy = np.array([[10.0, 8.0], [20.0, 12.0]])
        spots = ShapesModel.parse(xy, geometry=0, radius=np.full(2, 3.0), index=np.arange(2), transformations=systems)
        return img, spots

    def sdata(own_system):
        (ia, sa), (ib, sb) = section("A", 10, own_system), section("B", 200, own_system)
        table = ad.AnnData(
            np.ones((4, 2), np.float32),
            obs=pd.DataFrame(
                {"region": pd.Categorical(["spots_a"] * 2 + ["spots_b"] * 2), "cell": [0, 1, 0, 1]},
                index=["a0", "a1", "b0", "b1"],
            ),
        )
        return sd.SpatialData(
            images={"he_a": ia, "he_b": ib},
            shapes={"spots_a": sa, "spots_b": sb},
            tables={
                "table": TableModel.parse(
                    table, region=["spots_a", "spots_b"], region_key="region", instance_key="cell"
                )
            },
        )

    # Each section is also in "global" (as readers write it): its own system, holding its own image, wins.
    a = rp.io.from_spatialdata(sdata(own_system=True))
    assert a.obs["library_id"].astype(str).tolist() == ["A", "A", "B", "B"]
    assert (
        a.uns["spatial"]["A"]["images"]["hires"].max() == 10 and a.uns["spatial"]["B"]["images"]["hires"].min() == 200
    )
    # Only "global", with two images in it: which image is whose cannot be told, so it is refused.
    with pytest.raises(ValueError, match="cannot be told"):
        rp.io.from_spatialdata(sdata(own_system=False))


# ---------------------------------------------------------------- refusals found by an audit
def test_tile_store_refuses_non_finite_origins_and_non_integer_tile_size(tmp_path):
    s = rp.data.TileStore.create(tmp_path / "s.zarr", 8)
    for bad in (np.nan, np.inf):
        row = {"unit": ["u", "v"], "slide": "s", "x": [bad, 5.0], "y": 0, "mpp": 0.5}
        with pytest.raises(ValueError, match="'x' holds 1 NaN or infinite"):
            s.append(np.zeros((2, 8, 8, 3), np.uint8), pd.DataFrame(row))
    assert len(s) == 0
    # Generated tiles have no µm/px: NaN mpp is fine.
    s.append(np.zeros((1, 8, 8, 3), np.uint8), pd.DataFrame({**_ROW, "x": 3.0, "mpp": np.nan}))
    assert s.table["x"].tolist() == [3]
    s.close()
    for size in (16.7, "16", 16.0, True):
        with pytest.raises(ValueError, match="tile_size must be a positive integer"):
            rp.data.TileStore.create(tmp_path / "f.zarr", size)
        assert not (tmp_path / "f.zarr").exists()  # nothing written


def _damage_commit(p):
    (p / "rnapaint_commit.json").write_bytes(b"\xff\xfe")


def _drop_commit_key(p):
    c = json.loads((p / "rnapaint_commit.json").read_text())
    del c["slides"]
    (p / "rnapaint_commit.json").write_text(json.dumps(c))


def _fewer_units(p):
    c = json.loads((p / "rnapaint_commit.json").read_text())
    c["units"] = c["units"][:1]
    (p / "rnapaint_commit.json").write_text(json.dumps(c))


@pytest.mark.parametrize(
    "damage",
    [
        _damage_commit,
        _drop_commit_key,
        _fewer_units,
        lambda p: (p / "images" / "zarr.json").write_text("{garbage"),
        lambda p: (p / "zarr.json").unlink(),
    ],
    ids=["commit-not-utf8", "commit-key-missing", "codes-past-units", "images-meta-corrupt", "root-meta-missing"],
)
def test_open_names_a_damaged_store(tmp_path, damage):
    p = tmp_path / "s.zarr"
    with rp.data.TileStore.create(p, 8) as s:
        s.append(np.ones((3, 8, 8, 3), np.uint8), pd.DataFrame({**_ROW, "unit": ["a", "b", "c"], "x": [0, 1, 2]}))
    damage(p)
    for mode in ("r", "a"):
        with pytest.raises(ValueError, match=r"s.zarr is a damaged rnapaint TileStore"):
            rp.data.TileStore.open(p, mode)
    if damage is _fewer_units:
        # Loader workers skip the code check their parent already made, and still read the tiles.
        tiles = rp.data.TileStore(p, check_codes=False).reader.read([0, 2])
        np.testing.assert_array_equal(tiles, np.ones((2, 8, 8, 3), np.uint8))


def _spots_adata(n=6, libs=("L1",)):
    """Spots in the middle of a 100 px RGB image per library (full resolution = hires)."""
    rng = np.random.default_rng(0)
    a = ad.AnnData(
        X=np.ones((n * len(libs), 2), np.float32),
        obs=pd.DataFrame({"library_id": np.repeat(libs, n)}, index=[f"s{i}" for i in range(n * len(libs))]),
    )
    a.obsm["spatial"] = rng.uniform(30, 70, (a.n_obs, 2))
    a.uns["spatial"] = {
        lib: {
            "images": {"hires": rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)},
            "scalefactors": {"tissue_hires_scalef": 1.0, "spot_diameter_fullres": 10.0},
        }
        for lib in libs
    }
    return a


def test_spot_tiles_store_is_moved_into_place_only_when_complete(tmp_path):
    a = _spots_adata(libs=("L1", "L2"))
    (tmp_path / "bad.jpg").write_bytes(b"xx")
    a.uns["spatial"]["L2"]["metadata"] = {"source_image_path": str(tmp_path / "bad.jpg")}
    store = tmp_path / "out" / "p.zarr"
    store.parent.mkdir()
    with pytest.raises(ValueError, match=r"bad\.jpg"):  # the second library cannot be read
        rp.pp.spot_tiles(a, size=16, store=store, progress_bar=False)
    assert list(store.parent.iterdir()) == []  # no half store, no hidden leftovers
    a.uns["spatial"]["L2"]["metadata"] = {}
    rp.pp.spot_tiles(a, size=16, store=store, progress_bar=False)  # the rerun is not blocked
    assert len(rp.data.TileStore.open(store)) == a.n_obs
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rp.pp.spot_tiles(a, size=16, store=store, progress_bar=False)
    rp.pp.spot_tiles(a, size=16, out_size=8, store=store, overwrite=True, progress_bar=False)
    assert rp.data.TileStore.open(store).tile_size == 8 and [p.name for p in store.parent.iterdir()] == ["p.zarr"]
    user = tmp_path / "results"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a rnapaint TileStore"):
        rp.pp.spot_tiles(a, size=16, store=user, overwrite=True, progress_bar=False)
    assert (user / "keep.txt").is_file()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"size": 0}, "size must be a positive integer"),
        ({"size": -8}, "size must be a positive integer"),
        ({"size": 32.5}, "size must be a positive integer"),
        ({"size": 16, "out_size": 0}, "out_size must be a positive integer"),
        ({"size": 16, "key_added": "spatial"}, "key_added='spatial' is the obsm key of the spot coordinates"),
    ],
)
def test_spot_tiles_refuses_bad_settings(kw, match):
    a = _spots_adata()
    with pytest.raises(ValueError, match=match):
        rp.pp.spot_tiles(a, progress_bar=False, **kw)
    assert a.obsm["spatial"].shape == (a.n_obs, 2) and "tiles" not in a.obsm


@pytest.mark.parametrize("shape", [(100, 100), (100, 100, 1)], ids=["HxW", "HxWx1"])
def test_spot_tiles_refuses_a_greyscale_image(shape):
    a = _spots_adata()
    a.uns["spatial"]["L1"]["images"]["hires"] = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="must be RGB"):
        rp.pp.spot_tiles(a, size=16, progress_bar=False)


def test_duplicated_obs_names_are_refused_where_they_name_tiles(tmp_path):
    a = _spots_adata()
    a.obs_names = ["x"] * a.n_obs
    with pytest.raises(ValueError, match="obs names are the tiles' units and must be unique"):
        rp.pp.spot_tiles(a, size=16, store=tmp_path / "s.zarr", progress_bar=False)
    assert not (tmp_path / "s.zarr").exists()
    b = _spots_adata()
    rp.pp.spot_tiles(b, size=16, store=tmp_path / "s.zarr", progress_bar=False)
    b.obs_names = ["u"] * b.n_obs
    with pytest.raises(ValueError, match="obs names are the tiles' units and must be unique"):
        rp.data.PairedTiles(tmp_path / "s.zarr", b)
    with pytest.raises(ValueError, match="obs names are the tiles' units and must be unique"):
        rp.data.PairedTiles(np.ones((b.n_obs, 1, 8, 8, 3), np.uint8), b)


@pytest.mark.parametrize(
    "layout",
    [(0, 1, 4, 2, 3), "rgba", "non-square", "grey"],
    ids=["channels-first", "rgba", "non-square", "one-channel"],
)
def test_paired_tiles_refuse_arrays_that_are_not_square_rgb(layout):
    t = np.ones((4, 1, 8, 8, 3), np.uint8)
    x = (
        {
            "rgba": np.concatenate([t, t[..., :1]], -1),
            "non-square": t[:, :, :, :4],
            "grey": t[..., :1],
        }.get(layout)
        if isinstance(layout, str)
        else t.transpose(layout)
    )
    a = ad.AnnData(X=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"tiles must be uint8 \(n_obs=4, k, H, W, 3\) with H == W"):
        rp.data.PairedTiles(np.ascontiguousarray(x), a)


def test_to_spatialdata_refuses_to_drop_obs_columns_it_would_replace():
    pytest.importorskip("spatialdata")
    for col in ("region", "instance_id"):
        a = _spots_adata()
        a.obs[col] = "cortex"
        with pytest.raises(ValueError, match=f"adata.obs has a column '{col}'.*Rename it first"):
            rp.io.to_spatialdata(a)
