"""A damaged TileStore is an error naming what is damaged, never zeros or wrong pixels."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import rnapaint as rp


def _store(path, n: int = 5):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    table = pd.DataFrame({"unit": [f"u{i}" for i in range(n)], "slide": "s", "x": range(n), "y": 1, "mpp": 0.5})
    s = rp.io.TileStore.create(path, 16)
    s.append(imgs, table)
    s.close()
    return imgs


def _flip(path, at: int = -10) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_a_lost_column_chunk_is_damage_not_unit_zero(tmp_path):
    _store(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "unit_code" / "c" / "0").unlink()
    with pytest.raises(ValueError, match=r"damaged rnapaint TileStore.*'unit_code' column is missing"):
        rp.io.TileStore.open(tmp_path / "s.zarr")
    _store(tmp_path / "t.zarr")
    (tmp_path / "t.zarr" / "x" / "c" / "0").unlink()
    with pytest.raises(ValueError, match=r"chunk 0 of its 'x' column is missing"):
        rp.io.TileStore.open(tmp_path / "t.zarr")


def test_a_corrupted_column_chunk_raises_the_stores_own_message(tmp_path):
    _store(tmp_path / "s.zarr")
    _flip(tmp_path / "s.zarr" / "unit_code" / "c" / "0")
    with pytest.raises(ValueError, match=r"damaged rnapaint TileStore: its 'unit_code' column cannot be read"):
        rp.io.TileStore.open(tmp_path / "s.zarr")
    _store(tmp_path / "t.zarr")
    _flip(tmp_path / "t.zarr" / "mpp" / "c" / "0")
    store = rp.io.TileStore.open(tmp_path / "t.zarr")  # codes are intact: it opens
    with pytest.raises(ValueError, match=r"damaged rnapaint TileStore: its 'mpp' column cannot be read"):
        _ = store.table


def test_a_flipped_byte_in_a_tile_is_caught_by_rnapaint_and_by_zarr(tmp_path):
    import zarr

    imgs = _store(tmp_path / "s.zarr")
    chunk = tmp_path / "s.zarr" / "images" / "c" / "2" / "0" / "0" / "0"
    _flip(chunk, at=len(chunk.read_bytes()) // 2)  # inside the pixels, where Blosc itself checks nothing
    store = rp.io.TileStore.open(tmp_path / "s.zarr")
    assert store.reader.direct and store.reader.checksummed
    np.testing.assert_array_equal(store[[0, 1, 3]], imgs[[0, 1, 3]])
    with pytest.raises(ValueError, match=r"c/2/0/0/0 does not match its checksum.*damaged"):
        store[2]
    with pytest.raises(ValueError, match="checksum"):  # any zarr reader: the codec is zarr's own
        zarr.open_array(str(tmp_path / "s.zarr" / "images"), mode="r")[2]


def test_a_store_without_checksums_opens_and_says_so_once(tmp_path, caplog):
    import zarr
    from zarr.codecs import BloscCodec

    imgs = _store(tmp_path / "old.zarr")
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="r+")
    del g["images"]
    arr = g.create_array(
        "images", shape=imgs.shape, chunks=(1, 16, 16, 3), dtype="uint8", compressors=BloscCodec(cname="lz4")
    )
    arr[:] = imgs
    log = logging.getLogger("rnapaint")
    log.addHandler(caplog.handler)
    try:
        for _ in range(2):
            store = rp.io.TileStore.open(tmp_path / "old.zarr")
            np.testing.assert_array_equal(store[np.arange(5)], imgs)
    finally:
        log.removeHandler(caplog.handler)
    said = [r for r in caplog.records if "without chunk checksums" in r.getMessage()]
    assert len(said) == 1


# ---------------------------------------------------------------------- model files
def _saved_encoder(tmp_path):
    enc = rp.models.TileEncoder(width=8, blocks=(1,), projection_dim=8)
    return enc.save(tmp_path / "enc")


def test_an_edited_config_is_refused_like_damaged_weights(tmp_path, small_adata):
    import json

    m = rp.models.BetaVAE(small_adata, hidden=(8,), latent_dim=2)
    path = m.save(tmp_path / "vae")
    cfg = json.loads((path / "config.json").read_text())
    text = json.dumps(cfg)
    names = json.dumps(list(small_adata.var_names))
    swapped = json.dumps([small_adata.var_names[1], small_adata.var_names[0], *small_adata.var_names[2:]])
    assert names in text  # the gene list is in the config
    (path / "config.json").write_text(text.replace(names, swapped))
    with pytest.raises(ValueError, match="edited or corrupted"):
        rp.models.BetaVAE.load(path)


def test_non_finite_settings_and_weights_are_refused(tmp_path):
    import json

    import torch

    from rnapaint.io.model_files import config_digest

    path = _saved_encoder(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["temperature"] = float("nan")
    cfg["config_sha256"] = config_digest(cfg)  # even with a matching checksum
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\['model'\]\['temperature'\] is not a finite number"):
        rp.models.TileEncoder.load(path)
    enc = rp.models.TileEncoder(width=8, blocks=(1,), projection_dim=8)
    with torch.no_grad():
        next(enc.module.parameters())[0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or infinite values: the model diverged; it is not saved"):
        enc.save(tmp_path / "inf")
    assert not (tmp_path / "inf").exists()
    poison(_saved_encoder(tmp_path / "p"), float("inf"))  # a file made elsewhere, checksums and all
    with pytest.raises(ValueError, match=r"NaN or infinite values: the model diverged before it was saved"):
        rp.models.TileEncoder.load(tmp_path / "p" / "enc")


def poison(path, value: float) -> None:
    """Put ``value`` into a saved model's first float tensor and re-sign both checksums, as a hostile copy would."""
    import hashlib
    import json

    from safetensors.numpy import load_file, save_file

    from rnapaint.io.model_files import config_digest

    tensors = load_file(str(path / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.dtype.kind == "f")
    tensors[name].flat[0] = value
    save_file(tensors, str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    cfg["config_sha256"] = config_digest(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def test_training_that_diverges_stops_naming_the_step_and_saves_nothing(tmp_path, small_adata):
    a = small_adata.copy()
    a.X[:5] = 1e30  # finite in float32, but its square overflows: the loss is infinite at once
    with pytest.raises(FloatingPointError, match=r"BetaVAE training diverged at step \d+: its loss"):
        rp.tl.vae(a, hidden=(8,), latent_dim=2, max_epochs=2, save_path=tmp_path / "vae", progress_bar=False)
    assert not (tmp_path / "vae").exists() and "vae" not in a.uns and "X_vae" not in a.obsm


def test_expression_checks_see_what_the_model_sees():
    import anndata as ad

    from rnapaint._validation import check_expression

    for x, match in (
        (np.array([[1.0, 1e39]]), "beyond float32's range"),
        (np.array([[1 + 2j, 0]]), "complex"),
        (np.array([[True, False]]), "boolean"),
    ):
        with pytest.raises(ValueError, match=match):
            check_expression(ad.AnnData(x))


# ---------------------------------------------------------------------- rough edges
def test_counts_paths_and_inputs_get_clear_messages(tmp_path, small_adata):
    import anndata as ad

    gan = rp.models.TileGAN.__new__(rp.models.TileGAN)  # the count checks come before anything else is read
    gan.config = {"condition": None, "condition_dim": 0}
    for bad in (1.5, "2", True, 0):
        with pytest.raises(ValueError, match="n_per_obs must be a whole number"):
            rp.models.TileGAN.generate(gan, np.zeros((2, 0), np.float32), n_per_obs=bad)
    m = rp.models.BetaVAE(small_adata, hidden=(4,), latent_dim=2)
    for bad in ("", "."):
        with pytest.raises(ValueError, match="names no folder"):
            m.save(bad)
    with pytest.raises(ValueError, match="names no folder"):
        rp.models.GeneratedTileWriter(".", 16, ["a"])
    with pytest.raises(ValueError, match="adata has no X"):
        rp.pp.align_genes(ad.AnnData(obs=small_adata.obs, var=small_adata.var), list(small_adata.var_names))
    with pytest.warns(UserWarning, match="single sample: every value becomes 0"):
        rp.pp.zscore(small_adata[:1].copy(), split_key=None)
    a = small_adata[:3].copy()
    a.obs["slide"] = [str(tmp_path / "a.svs"), None, None]
    with pytest.raises(ValueError, match="2 observations have no slide path"):
        rp.pp.tile_slides(a, store=tmp_path / "t.zarr")


def test_a_damaged_gene_statistic_and_an_absurd_width_name_the_folder(tmp_path, small_adata):
    import json

    from rnapaint.io.model_files import config_digest

    rp.pp.zscore(small_adata)
    m = rp.models.BetaVAE(small_adata, hidden=(4,), latent_dim=2)
    path = m.save(tmp_path / "vae")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path / "model.safetensors"))
    key = next(k for k in tensors if k.startswith("var."))
    tensors[key] = tensors[key][:-1]
    save_file(tensors, str(path / "model.safetensors"))
    cfg = json.loads((path / "config.json").read_text())
    import hashlib

    cfg["weights_sha256"] = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    cfg["config_sha256"] = config_digest(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"{path}: the gene statistic .* has 40 genes"):
        rp.models.BetaVAE.load(path)
    path = m.save(tmp_path / "wide")
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["hidden"] = [10**9]
    cfg["config_sha256"] = config_digest(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"\['hidden'\] = \[1000000000\], beyond what rnapaint builds"):
        rp.models.BetaVAE.load(path)


def test_a_killed_runs_partial_store_is_cleaned_by_the_next_write_beside_it(tmp_path):
    dead = tmp_path / ".other.zarr.partial-999999"  # no such process
    (dead / "images").mkdir(parents=True)
    tiles = np.zeros((1, 1, 16, 16, 3), np.uint8)
    w = rp.models.GeneratedTileWriter(tmp_path / "painted.zarr", 16, ["a"])
    w(np.array([0]), np.array([0]), tiles[0])
    w.commit()
    assert not dead.exists() and (tmp_path / "painted.zarr").is_dir()
