"""The image prior: crops of all tissue, the tile autoencoder, pretrained VAEs, cached latents, shipped default."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import rnapaint as rp
from rnapaint.io import SlideError

TINY = {"tile_size": 32, "mpp": 1.0, "block_out_channels": (8, 16), "layers_per_block": 1}


def tissue_image(h: int = 240, w: int = 360, seed: int = 0, glass_cols: int = 120) -> np.ndarray:
    """Pink stroma with purple nuclei; the leftmost ``glass_cols`` columns are glass."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = (225, 160, 200)
    img += rng.normal(0, 12, img.shape)
    yy, xx = np.mgrid[:h, :w]
    for cy, cx in zip(rng.integers(0, h, 120), rng.integers(0, w, 120), strict=True):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (90, 50, 140)
    img[:, :glass_cols] = (246, 246, 246)
    return img.clip(0, 255).astype(np.uint8)


def spatial_adata(img: np.ndarray, mpp: float = 1.0) -> ad.AnnData:
    """Spots only in the top-left tissue corner; the image holds much more tissue than they cover."""
    xy = np.array([[130.0, 20.0], [150.0, 20.0], [130.0, 40.0]])
    a = ad.AnnData(np.ones((3, 2), np.float32), obs=pd.DataFrame(index=["s0", "s1", "s2"]))
    a.obsm["spatial"] = xy
    a.uns["spatial"] = {
        "lib": {"images": {"hires": img}, "scalefactors": {"tissue_hires_scalef": 1.0}, "metadata": {"mpp": mpp}}
    }
    return a


# ---------------------------------------------------------------------- crops
def test_crops_reach_off_spot_tissue_and_skip_glass():
    img = tissue_image()
    crops = rp.data.TileCrops(spatial_adata(img), size=32, mpp=1.0, seed=0)
    where = [crops.locate(i) for i in range(300)]
    xs = np.array([w[1] for w in where])
    assert all(w[3] == pytest.approx(32) for w in where)
    # no crop lies mostly on the glass third; many lie far from the three spots (x ≤ 150, y ≤ 40)
    assert (xs + 32 > 120 + 8).all()
    assert (xs > 200).mean() > 0.3
    x = crops.take(8)
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.uint8
    assert (x.mean(axis=(1, 2, 3)) < 235).all()  # tissue, not glass


def test_crops_are_seeded_and_worker_invariant():
    img = tissue_image()
    a = rp.data.TileCrops(img, size=32, mpp=1.0, source_mpp=1.0, seed=3, n_crops=16)
    b = rp.data.TileCrops(img, size=32, mpp=1.0, source_mpp=1.0, seed=3, n_crops=16)
    np.testing.assert_array_equal(a.take(6), b.take(6))
    assert not np.array_equal(a[0], a[1])
    serial = torch.cat(list(rp.data.crop_loader(a, batch_size=4)))
    parallel = torch.cat(list(rp.data.crop_loader(a, batch_size=4, num_workers=2)))
    assert serial.shape == (16, 3, 32, 32) and serial.dtype == torch.uint8
    torch.testing.assert_close(serial, parallel)
    # every epoch draws new crops
    loader = rp.data.crop_loader(a, batch_size=16)
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader)), serial)


def test_crops_resample_to_the_target_resolution():
    img = tissue_image(480, 720, glass_cols=0)
    crops = rp.data.TileCrops(img, size=32, mpp=1.0, source_mpp=0.5)
    src = crops.sources[0]
    # a plain image is held at the crops' resolution (half the pixels), so a crop is 32 of its pixels
    assert src.mpp == pytest.approx(1.0) and src.width == 360
    assert crops.locate(0)[3] == pytest.approx(32)


def test_crops_from_a_tile_store_and_a_slide(tmp_path, data_root):
    tiles = np.stack([tissue_image(64, 64, seed=s, glass_cols=0) for s in range(4)])
    store = rp.io.TileStore.create(tmp_path / "t.zarr", 64)
    store.append(tiles, pd.DataFrame({"unit": list("abcd"), "slide": "s", "x": 0, "y": 0, "mpp": 0.5}))
    store.close()
    crops = rp.data.TileCrops(tmp_path / "t.zarr", size=16, mpp=1.0)
    assert len(crops.sources) == 4 and crops[0].shape == (16, 16, 3)
    assert type(crops.sources[0]).__name__ == "StoreTileSource"  # read crop by crop, never held whole
    assert crops.locate(0)[3] == pytest.approx(32)  # 16 px at 1.0 µm/px = 32 of the store's 0.5 µm/px pixels
    wsi = rp.data.TileCrops(data_root / "wsi" / "CMU-1-Small-Region.svs", size=32, mpp=2.0)
    assert type(wsi.sources[0]).__name__ == "SlideSource"
    x = wsi.take(4)
    assert x.shape == (4, 32, 32, 3) and x.std() > 5


def test_crops_refuse_bad_images(tmp_path):
    grey = tissue_image()
    with pytest.raises(ValueError, match="greyscale"):
        rp.data.TileCrops(np.repeat(grey[..., :1], 3, axis=2), size=32, mpp=1.0, source_mpp=1.0)
    with pytest.raises(ValueError, match="RGB"):
        rp.data.TileCrops(grey[..., 0], size=32, mpp=1.0, source_mpp=1.0)
    Image.fromarray(grey[..., 0]).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match="greyscale"):
        rp.data.TileCrops(tmp_path / "grey.png", size=32, mpp=1.0, source_mpp=1.0)
    with pytest.raises(ValueError, match="smaller than a crop"):
        rp.data.TileCrops(grey, size=64, mpp=4.0, source_mpp=1.0)
    with pytest.raises(ValueError, match="no tissue"):
        rp.data.TileCrops(np.full((100, 100, 3), (245, 244, 246), np.uint8), size=32, mpp=1.0, source_mpp=1.0)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(SlideError, match="Cannot read"):
        rp.data.TileCrops(tmp_path / "bad.jpg", size=32, mpp=1.0, source_mpp=1.0)
    with pytest.raises(ValueError, match="µm/px"):
        rp.data.TileCrops(grey, size=32, mpp=1.0)  # an array says nothing of its resolution


# ---------------------------------------------------------------------- the autoencoder
@pytest.fixture(scope="module")
def trained_ae():
    crops = rp.data.TileCrops(tissue_image(), size=32, mpp=1.0, source_mpp=1.0, seed=0)
    ae = rp.models.TileAutoencoder(**TINY)
    ae.train(crops, max_steps=12, batch_size=4, disc_start=5, scale_crops=16, progress_bar=False, accelerator="cpu")
    return ae


def test_autoencoder_trains_with_the_adversarial_term(trained_ae):
    h = trained_ae.history
    assert h["step"] == [1.0, 10.0] and "adv" in h and len(h["adv"]) == 1  # the discriminator joined at step 5
    assert trained_ae.is_trained and trained_ae.train_info["steps"] == 12
    assert 0 < trained_ae.scaling_factor < 1e3
    tiles = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(3)])
    z = trained_ae.encode(tiles)
    # scaled latents of training-like crops have roughly unit spread
    assert z.shape == (3, 4, 16, 16) and z.dtype == np.float32 and 0.2 < z.std() < 5
    out = trained_ae.decode(z)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8


def test_autoencoder_refuses_settings_that_cannot_train(trained_ae):
    img = tissue_image()
    ae = rp.models.TileAutoencoder(**TINY)
    with pytest.raises(ValueError, match="too small for a 3-layer discriminator"):
        ae.train(rp.data.TileCrops(img, size=16, mpp=1.0, source_mpp=1.0), max_steps=2, progress_bar=False)
    with pytest.raises(ValueError, match="holds no batch"):
        ae.train(rp.data.TileCrops(img, size=32, mpp=1.0, source_mpp=1.0, n_crops=3), batch_size=4, max_steps=2)
    tiles = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(2)])
    a, b = trained_ae.reconstruct(tiles, sample=True, seed=1), trained_ae.reconstruct(tiles, sample=True, seed=2)
    assert a.shape == (2, 32, 32, 3) and not np.array_equal(a, b)  # posterior samples differ by seed


def test_autoencoder_resizes_to_its_native_size_and_resolution(trained_ae):
    tiles = np.stack([tissue_image(64, 64, seed=s, glass_cols=0) for s in range(2)])
    assert trained_ae.encode(tiles).shape == (2, 4, 16, 16)  # 64 px → native 32 px
    assert trained_ae.encode(tiles, mpp=0.5).shape == (2, 4, 16, 16)  # 64 px at 0.5 = 32 px at 1.0
    assert trained_ae.encode(tiles, mpp=1.0).shape == (2, 4, 32, 32)  # already at the native µm/px
    assert trained_ae.encode(tiles[:, None]).shape == (2, 1, 4, 16, 16)
    with pytest.raises(ValueError, match="uint8"):
        trained_ae.encode(tiles.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        trained_ae.decode(np.full((1, 4, 8, 8), np.nan, np.float32))


def test_autoencoder_save_load_round_trip(trained_ae, tmp_path):
    tiles = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(2)])
    trained_ae.save(tmp_path / "ae")
    back = rp.models.load_model(tmp_path / "ae")
    assert isinstance(back, rp.models.TileAutoencoder) and back.fingerprint == trained_ae.fingerprint
    z = trained_ae.encode(tiles)
    np.testing.assert_array_equal(back.encode(tiles), z)
    np.testing.assert_array_equal(back.decode(z), trained_ae.decode(z))
    assert back.scaling_factor == trained_ae.scaling_factor and back.history == trained_ae.history


def test_autoencoder_refuses_damaged_files(trained_ae, tmp_path):
    from rnapaint.io.model_files import config_digest

    path = trained_ae.save(tmp_path / "ae")
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["vae_config"]["block_out_channels"] = [10**6, 10**6]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="edited or corrupted"):  # the config's own checksum
        rp.models.TileAutoencoder.load(path)
    cfg["config_sha256"] = config_digest(cfg)  # a hostile file signs its edit: the width is refused
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="at most"):  # before any memory is allocated
        rp.models.TileAutoencoder.load(path)
    from test_store_integrity import poison

    poison(rp.models.TileAutoencoder(**TINY).save(tmp_path / "nan"), float("nan"))
    with pytest.raises(ValueError, match="diverged"):
        rp.models.TileAutoencoder.load(tmp_path / "nan")
    w = trained_ae.save(tmp_path / "cut") / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        rp.models.TileAutoencoder.load(tmp_path / "cut")


# ---------------------------------------------------------------------- pretrained diffusers VAEs
def _tiny_diffusers_vae(latent_channels: int = 16):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        norm_num_groups=4,
        scaling_factor=1.5305,
        shift_factor=0.0609,  # SD3's latent statistics
    )


def test_from_pretrained_loads_a_diffusers_vae_everywhere(tmp_path):
    vae = _tiny_diffusers_vae()
    vae.save_pretrained(tmp_path / "sd3-like")
    ae = rp.models.TileAutoencoder.from_pretrained(tmp_path / "sd3-like")
    assert ae.latent_channels == 16 and ae.scaling_factor == pytest.approx(1.5305)
    tiles = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(2)])
    z = ae.encode(tiles)
    assert z.shape == (2, 16, 16, 16)
    with torch.no_grad():  # the same latents diffusers gives, scaled as SD3 scales them
        ref = vae.encode(torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
    np.testing.assert_allclose(z, ((ref - 0.0609) * 1.5305).numpy(), rtol=1e-4, atol=1e-4)
    assert ae.decode(z).shape == (2, 32, 32, 3)
    ae.save(tmp_path / "as-rnapaint")
    back = rp.models.load_model(tmp_path / "as-rnapaint")
    np.testing.assert_array_equal(back.encode(tiles), z)
    a = ad.AnnData(np.zeros((2, 1), np.float32))
    a.obsm["tiles"] = tiles[:, None]
    rp.tl.encode_tiles(a, ae, progress_bar=False)
    assert a.obsm["latents"].shape == (2, 1, 16, 16, 16)


def test_from_pretrained_refuses_other_folders(tmp_path):
    from diffusers import UNet2DModel

    UNet2DModel(
        sample_size=8,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=4,
    ).save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="not an AutoencoderKL"):
        rp.models.TileAutoencoder.from_pretrained(tmp_path / "unet")
    vae = _tiny_diffusers_vae(4)
    vae.save_pretrained(tmp_path / "cut")
    w = tmp_path / "cut" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot load"):
        rp.models.TileAutoencoder.from_pretrained(tmp_path / "cut")
    vae.save_pretrained(tmp_path / "pickled", safe_serialization=False)  # a .bin: pickles are never loaded
    with pytest.raises(ValueError, match="cannot load"):
        rp.models.TileAutoencoder.from_pretrained(tmp_path / "pickled")


# ---------------------------------------------------------------------- cached latents
def test_encode_tiles_caches_in_obsm_and_refuses_stale(trained_ae):
    a = ad.AnnData(np.zeros((3, 1), np.float32))
    a.obsm["tiles"] = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(3)])[:, None]
    rp.tl.encode_tiles(a, trained_ae, progress_bar=False)
    assert a.obsm["latents"].shape == (3, 1, 4, 16, 16)
    assert a.uns["latents"]["autoencoder"] == trained_ae.fingerprint
    np.testing.assert_array_equal(rp.tl.cached_latents(a, trained_ae), a.obsm["latents"])
    other = rp.models.TileAutoencoder(**TINY)
    with pytest.raises(ValueError, match="another autoencoder"):
        rp.tl.cached_latents(a, other)
    with pytest.raises(ValueError, match="overwrite=True"):
        rp.tl.encode_tiles(a, other, progress_bar=False)
    a.obsm["tiles"][0, 0, 0, 0] += 1  # the tiles changed since
    with pytest.raises(ValueError, match="changed since"):
        rp.tl.cached_latents(a, trained_ae)
    rp.tl.encode_tiles(a, other, overwrite=True, progress_bar=False)
    assert rp.tl.cached_latents(a, other).shape == (3, 1, 4, 16, 16)


def test_encode_tiles_caches_in_a_store(trained_ae, tmp_path):
    from rnapaint.io.latent_cache import latent_writer

    tiles = np.stack([tissue_image(32, 32, seed=s, glass_cols=0) for s in range(5)])
    table = pd.DataFrame({"unit": list("aabbc"), "slide": "s", "x": 0, "y": 0, "mpp": 1.0})
    path = tmp_path / "t.zarr"
    store = rp.io.TileStore.create(path, 32)
    store.append(tiles, table)
    store.close()
    rp.tl.encode_tiles(path, trained_ae, batch_size=2, progress_bar=False)
    cached = rp.tl.cached_latents(path, trained_ae)
    np.testing.assert_allclose(cached[:], trained_ae.encode(tiles), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="another autoencoder"):
        rp.tl.cached_latents(path, rp.models.TileAutoencoder(**TINY))
    # a writer that fails part-way leaves the previous cache as it was
    with rp.io.TileStore.open(path, "a") as s, pytest.raises(RuntimeError, match="killed"):
        with latent_writer(s, (4, 16, 16), {"autoencoder": "x"}) as out:
            out[:1] = 0
            raise RuntimeError("killed")
    np.testing.assert_array_equal(rp.tl.cached_latents(path, trained_ae)[:], cached[:])
    with rp.io.TileStore.open(path, "a") as s:
        s.append(tiles[:1], table[:1])
    with pytest.raises(ValueError, match="tiles were added"):
        rp.tl.cached_latents(path, trained_ae)
    rp.tl.encode_tiles(path, trained_ae, overwrite=True, progress_bar=False)
    assert rp.tl.cached_latents(path, trained_ae).shape == (6, 4, 16, 16)


# ---------------------------------------------------------------------- the shipped default
def test_shipped_autoencoder_loads_and_round_trips(tmp_path):
    table = rp.models.pretrained()
    row = table.set_index("name").loc["he-autoencoder-small"]
    assert row["available"] and row["class"] == "TileAutoencoder" and row["mib"] <= 8
    ae = rp.models.pretrained("he-autoencoder-small")
    assert ae.is_trained and ae.tile_size == 128 and ae.mpp == pytest.approx(1.2)
    tiles = np.stack([tissue_image(128, 128, seed=s, glass_cols=0) for s in range(2)])
    z = ae.encode(tiles)
    assert z.shape == (2, 4, 32, 32)
    assert ae.decode(z).shape == (2, 128, 128, 3)
    ae.save(tmp_path / "copy")
    np.testing.assert_array_equal(rp.models.TileAutoencoder.load(tmp_path / "copy").encode(tiles), z)
    with pytest.raises(KeyError, match="no shipped model"):
        rp.models.pretrained("sd-vae")
