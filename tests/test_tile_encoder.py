"""TileEncoder (SimCLR), its ResNet, its augmentation and loss, and the LC25000 reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rnapaint as rp
from model_edits import signed
from rnapaint.data.augment import TileAugment
from rnapaint.datasets._lc25000 import lc25000
from rnapaint.models.tile_encoder import TileEncoder, _Views, nt_xent
from rnapaint.nn.resnet import ResNetEncoder

# Tiny on purpose (2-core CI): 8 → 32 channels over 3 stages, 32 px toy tiles.
ARCH = {"width": 8, "blocks": (1, 1, 1), "blur_prob": 0.0, "crop_scale": (0.5, 1.0)}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def train_tiles() -> np.ndarray:
    return rp.datasets.toy(n=256, tile_size=32, seed=0).obsm["tiles"][:, 0]


@pytest.fixture(scope="module")
def held_out():
    return rp.datasets.toy(n=240, tile_size=32, seed=1)


@pytest.fixture(scope="module")
def trained(train_tiles) -> TileEncoder:
    torch.set_num_threads(1)
    return TileEncoder(**ARCH).fit(
        train_tiles, epochs=8, batch_size=32, lr=2e-3, warmup_epochs=1, progress_bar=False, device="cpu"
    )


def _views_loss(enc: TileEncoder, tiles: np.ndarray) -> float:
    """NT-Xent of fixed random views of tiles the encoder never saw."""
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    gen = torch.Generator().manual_seed(7)
    views = enc._views()
    with torch.no_grad():
        return float(nt_xent(enc.module.eval()(torch.cat([views(x, gen), views(x, gen)])), 0.2))


def test_simclr_learns_the_toy_tissue(trained, held_out):
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    loss = trained.history["loss"]
    assert len(loss) == 8 and trained.train_info["steps"] == 64
    # Measured 4.12 → 3.43–3.57 (three seed / data combinations); ln(63) ≈ 4.14 is chance at batch 32.
    assert loss[-1] < loss[0] - 0.3
    tiles = held_out.obsm["tiles"][:64, 0]
    untrained = TileEncoder(**ARCH)
    # On held-out tiles the trained encoder matches views better than its random initialisation:
    # measured 4.26–4.32 vs 4.85 (chance ln(127) ≈ 4.84).
    assert _views_loss(trained, tiles) < _views_loss(untrained, tiles) - 0.3

    # kNN (cosine) probe of the density tertile on held-out tiles, chance 1/3: measured 0.667–0.679
    # trained vs 0.61–0.63 at random init. Random conv features already carry density (dark pixel
    # fraction), so this gap is too small to assert; the held-out loss above tells training apart.
    f = trained.encode(held_out.obsm["tiles"][:, 0])
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    y = held_out.obs["group"].cat.codes.to_numpy()
    acc = cross_val_score(KNeighborsClassifier(10), f, y, cv=5).mean()
    assert acc > 0.55, acc


def test_encode_and_feature_module_agree(trained, held_out):
    tiles = held_out.obsm["tiles"][:20]  # (20, 1, 32, 32, 3)
    f = trained.encode(tiles[:, 0], batch_size=7)
    assert f.shape == (20, trained.feature_dim) == (20, 32) and f.dtype == np.float32
    assert np.array_equal(f, trained.encode(tiles[:, 0], batch_size=7))  # deterministic
    np.testing.assert_allclose(trained.encode(tiles[:, 0], batch_size=20), f, rtol=1e-5, atol=1e-5)
    assert trained.encode(tiles).shape == (20, 1, 32)  # (n, k, ...) keeps k
    fm = trained.feature_module()
    assert fm.num_features == 32 and not fm.training
    assert not any(p.requires_grad for p in fm.parameters())
    x = torch.from_numpy(tiles[:, 0]).permute(0, 3, 1, 2)
    with torch.no_grad():
        out_uint8, out_float = fm(x), fm(x.float() / 255)
    np.testing.assert_allclose(out_uint8.numpy(), f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_float.numpy(), f, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out_uint8[0], out_uint8[1])  # not a constant map
    with pytest.raises(ValueError, match="N, 3, H, W"):
        fm(torch.from_numpy(tiles[:, 0]))


def test_feature_module_plugs_into_torchmetrics_fid(trained, held_out, train_tiles):
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    a = torch.from_numpy(train_tiles[:64]).permute(0, 3, 1, 2)
    b = torch.from_numpy(held_out.obsm["tiles"][:64, 0]).permute(0, 3, 1, 2)
    restained = b.flip(1)  # channels reversed: the same kind of tiles in another stain
    fid = fid_mod.FrechetInceptionDistance(feature=trained.feature_module())
    fid.update(a, real=True)
    fid.update(b, real=False)
    same_kind = float(fid.compute())
    fid.reset()
    fid.update(a, real=True)
    fid.update(restained, real=False)
    # Measured 0.026–0.064 (toy vs toy) against 0.20–0.26 (toy vs restained toy).
    assert float(fid.compute()) > 2 * same_kind


def test_same_seed_same_weights(train_tiles):
    kw = {"epochs": 1, "batch_size": 16, "max_steps": 2, "progress_bar": False, "device": "cpu"}  # CPU: bit-exact
    a = TileEncoder(**ARCH).fit(train_tiles[:64], seed=3, **kw)
    b = TileEncoder(**ARCH).fit(train_tiles[:64], seed=3, **kw)
    c = TileEncoder(**ARCH).fit(train_tiles[:64], seed=4, **kw)
    assert a.train_info["steps"] == 2 and len(a.history["loss"]) == 1
    sa, sb, sc = (m.module.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_save_load_roundtrip_and_corruption(trained, held_out, tmp_path):
    tiles = held_out.obsm["tiles"][:16, 0]
    path = trained.save(tmp_path / "enc")
    loaded = TileEncoder.load(path)
    assert np.array_equal(loaded.encode(tiles), trained.encode(tiles))
    assert loaded.config == trained.config and loaded.history == trained.history and loaded.is_trained
    assert loaded._views().augment.hue == trained._views().augment.hue
    with pytest.raises(FileExistsError):
        trained.save(path)
    trained.save(path, overwrite=True)

    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        TileEncoder.load(path)

    other = trained.save(tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(signed(dict(cfg, **{"class": "BetaVAE"}))))
    with pytest.raises(ValueError, match="BetaVAE"):
        TileEncoder.load(other)
    (other / "config.json").write_text(json.dumps(signed(dict(cfg, model=dict(cfg["model"], width=16)))))
    with pytest.raises(ValueError, match="do not fit"):
        TileEncoder.load(other)


def test_bad_input_says_what_is_wrong(train_tiles):
    enc = TileEncoder(**ARCH)
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(train_tiles.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\)"):
        enc.encode(train_tiles.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="at least 8 px"):
        enc.encode(train_tiles[:, :4, :4])
    with pytest.raises(ValueError, match="at least 2 tiles"):
        enc.fit(train_tiles[:1], progress_bar=False)
    with pytest.raises(ValueError, match="batch_size"):
        enc.fit(train_tiles[:8], batch_size=1, progress_bar=False)
    with pytest.raises(ValueError, match="temperature"):
        TileEncoder(temperature=0)
    with pytest.raises(ValueError, match="crop_scale"):
        TileEncoder(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="norm"):
        TileEncoder(norm="layer")


@pytest.mark.parametrize(("stem", "size", "blocks"), [("small", 32, (1, 2)), ("large", 128, (1, 1, 1))])
def test_resnet_shapes(stem, size, blocks):
    net = ResNetEncoder(width=4, blocks=blocks, stem=stem, norm="batch")
    out = net(torch.rand(2, 3, size, size))
    assert net.num_features == 4 * 2 ** (len(blocks) - 1) == out.shape[1] and out.shape == (2, net.num_features)
    # 'large' downsamples 4× in the stem, then 2× per later stage.
    side = size // (4 if stem == "large" else 1) // 2 ** (len(blocks) - 1)
    assert net.forward_map(torch.rand(1, 3, size, size)).shape[-2:] == (side, side)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) > 0
    enc = TileEncoder(width=4, blocks=blocks, stem=stem, feature_dim=10)
    assert enc.feature_dim == 10 and enc.encode(np.zeros((3, size, size, 3), np.uint8)).shape == (3, 10)


def test_views_geometry_and_colour(train_tiles):
    x = torch.from_numpy(train_tiles[:8]).permute(0, 3, 1, 2).float() / 255
    gen = torch.Generator().manual_seed(0)
    plain = TileAugment(flips=False, rot90=False, brightness=0, contrast=0, saturation=0, hue=0)
    # Whole tile, square crop, no symmetry: the sampling grid hits pixel centres exactly.
    assert torch.allclose(_Views(plain, (1.0, 1.0), 0.0, 0.0, (0.1, 2.0), (1.0, 1.0))(x, gen), x, atol=1e-5)
    dihedral = TileAugment(brightness=0, contrast=0, saturation=0, hue=0)
    y = _Views(dihedral, (1.0, 1.0), 0.0, 0.0, (0.1, 2.0), (1.0, 1.0))(x, gen)
    for i in range(len(x)):  # each view is one of the 8 symmetries of its tile
        options = [torch.rot90(x[i].flip(-1) if f else x[i], k, dims=(-2, -1)) for k in range(4) for f in (0, 1)]
        assert min(float((y[i] - o).abs().max()) for o in options) < 1e-5
    views = TileEncoder()._views()
    v1, v2 = views(x, gen), views(x, gen)
    assert v1.shape == x.shape and 0 <= float(v1.min()) and float(v1.max()) <= 1
    assert not torch.allclose(v1, v2)
    # Colour jitter changes the colour balance: mean chroma (R − B) moves for some tiles.
    jitter_only = _Views(TileEncoder()._views().augment, (1.0, 1.0), 1.0, 0.0, (0.1, 2.0), (1.0, 1.0))
    rb = lambda t: (t[:, 0] - t[:, 2]).mean(dim=(1, 2))  # noqa: E731
    assert float((rb(jitter_only(x, gen)) - rb(x)).abs().max()) > 0.01


def test_nt_xent_matches_definition():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=gen)
    t = 0.5
    zn = torch.nn.functional.normalize(z, dim=1)
    sim = zn @ zn.T / t
    manual = []
    for i in range(6):
        j = (i + 3) % 6
        others = torch.cat([sim[i, :i], sim[i, i + 1 :]])
        manual.append(-(sim[i, j] - torch.logsumexp(others, 0)))
    assert torch.allclose(nt_xent(z, t), torch.stack(manual).mean(), atol=1e-6)
    pairs = torch.eye(3).repeat(2, 1)  # each view identical to its partner, orthogonal to the rest
    assert float(nt_xent(pairs, 0.1)) < 1e-3 < float(nt_xent(z, 0.1))
    with pytest.raises(ValueError, match="even"):
        nt_xent(z[:5], t)


def test_lc25000(data_root):
    d = lc25000(data_root, size=32)
    assert d.tiles.shape == (300, 32, 32, 3) and d.tiles.dtype == np.uint8
    assert d.classes == ("lung_aca", "lung_n", "lung_scc")
    assert [int((d.codes == k).sum()) for k in range(3)] == [100, 100, 100]
    assert np.array_equal(np.asarray(d.classes)[d.codes], d.labels)
    assert d.files[0].startswith("lung_aca/") and len(set(d.files)) == 300
    # Benign lung is pinker (eosin-rich alveoli) than both carcinomas: a colour sanity check of the labels.
    rb = (d.tiles[..., 0].astype(float) - d.tiles[..., 2]).mean(axis=(1, 2))
    assert rb[d.codes == 1].mean() > max(rb[d.codes == 0].mean(), rb[d.codes == 2].mean())
    full = lc25000(data_root)
    assert full.tiles.shape == (300, 224, 224, 3)


def test_lc25000_missing_root(monkeypatch, tmp_path):
    monkeypatch.delenv("RNAPAINT_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="RNAPAINT_DATA"):
        lc25000()
    (tmp_path / "lc25000_lung" / "lung_aca").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        lc25000(tmp_path)
    with pytest.raises(ValueError, match="size"):
        lc25000(tmp_path, size=0)
