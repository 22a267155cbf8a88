"""Condition fidelity and retrieval tell a generator that follows its condition from one that does not."""

from __future__ import annotations

import numpy as np
import pytest

import rnapaint as rp


def _labelled(n: int, seed: int, k: int = 3, d: int = 16, sep: float = 2.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((k, d)) * sep
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), np.array([f"c{v}" for v in y])


def test_fidelity_high_for_faithful_tiles_and_chance_for_shuffled_labels():
    xr, yr = _labelled(300, 0)
    xs, ys = _labelled(200, 1)
    good = rp.metrics.condition_fidelity(xr, yr, xs, ys)
    assert good.accuracy > 0.85 and good.ci_low <= good.accuracy <= good.ci_high
    assert good.shuffled_accuracy < 0.55  # 3 balanced classes: ~1/3
    bad = rp.metrics.condition_fidelity(xr, yr, xs, np.random.default_rng(2).permutation(ys))
    assert bad.accuracy < 0.5 < good.accuracy
    assert abs(bad.accuracy - 1 / 3) < 0.12
    # several tiles per unit, unit-major: labels repeat
    rep = rp.metrics.condition_fidelity(xr, yr, np.repeat(xs, 2, axis=0), ys)
    assert rep.n_test == 400 and rep.accuracy == pytest.approx(good.accuracy)
    # ... and the interval resamples the 200 units, not 400 tiles: a copy adds no evidence
    assert (rep.ci_low, rep.ci_high) == pytest.approx((good.ci_low, good.ci_high))


def test_fidelity_with_encoder_and_bad_input():
    class Mean:  # an "encoder": mean colour per tile
        def encode(self, tiles):
            return tiles.reshape(len(tiles), -1, 3).mean(1)

    rng = np.random.default_rng(0)
    lab = np.repeat(["dark", "light"], 40)
    tiles = np.where(lab[:, None, None, None] == "dark", 60, 200).astype(np.uint8) + rng.integers(
        0, 20, (80, 8, 8, 3), dtype=np.uint8
    )
    s = rp.metrics.condition_fidelity(tiles, lab, tiles[::-1], lab[::-1], encoder=Mean())
    assert s.accuracy == 1.0
    with pytest.raises(ValueError, match="encoder="):
        rp.metrics.condition_fidelity(tiles, lab, tiles, lab)
    with pytest.raises(ValueError, match="never occur"):
        rp.metrics.condition_fidelity(tiles, lab, tiles, np.repeat(["dark", "other"], 40), encoder=Mean())
    with pytest.raises(ValueError, match="NaN"):
        rp.metrics.condition_fidelity(np.full((4, 2), np.nan), ["a", "b"] * 2, np.zeros((2, 2)), ["a", "b"])
    # real tiles (n, k, H, W, 3) take one label per unit, as the docstring says
    five_d = np.stack([tiles, tiles], 1)
    s5 = rp.metrics.condition_fidelity(five_d, lab, tiles[::-1], lab[::-1], encoder=Mean())
    assert s5.n_train == 160 and s5.accuracy == 1.0
    d5 = rp.metrics.fidelity_difference(five_d, lab, tiles, tiles[::-1], lab, encoder=Mean(), n_boot=10)
    assert d5.difference == pytest.approx(1.0 - np.mean(lab == lab[::-1]))
    # ... but features (or 4-D tiles) need one label each: half as many labels is an error, not a repeat
    feats = Mean().encode(tiles)
    with pytest.raises(ValueError, match="80 real tiles but 40 real_labels"):
        rp.metrics.condition_fidelity(feats, lab[::2], feats, lab)
    with pytest.raises(ValueError, match="80 real tiles but 40 real_labels"):
        rp.metrics.fidelity_difference(feats, lab[::2], feats, feats, lab, n_boot=10)
    with pytest.raises(ValueError, match="synthetic_tiles is empty"):
        rp.metrics.condition_fidelity(feats, lab, feats[:0], lab[:0])
    with pytest.raises(ValueError, match="query_expression is empty"):
        rp.metrics.retrieval(feats, feats, feats[:0], feats[:0])
    # missing labels are refused, not scored as a class named "nan"
    holey = lab.astype(object)
    holey[5] = None
    with pytest.raises(ValueError, match="real_labels hold 1 missing"):
        rp.metrics.condition_fidelity(tiles, holey, tiles, lab, encoder=Mean())
    with pytest.raises(ValueError, match="synthetic_labels hold 1 missing"):
        rp.metrics.condition_fidelity(tiles, lab, tiles, [np.nan, *lab[1:]], encoder=Mean())
    for bad in ({"n_boot": -1}, {"ci": 95}):
        with pytest.raises(ValueError, match="ci must be in"):
            rp.metrics.condition_fidelity(tiles, lab, tiles, lab, encoder=Mean(), **bad)


def test_retrieval_finds_the_source_only_when_images_carry_it():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 12))
    ex_tr, ex_q = rng.standard_normal((300, 20)), rng.standard_normal((50, 20))
    im_tr = ex_tr @ w + 0.3 * rng.standard_normal((300, 12))
    im_q = ex_q @ w + 0.3 * rng.standard_normal((50, 12))
    good = rp.metrics.retrieval(ex_tr, im_tr, ex_q, im_q)
    assert good.top1 > 0.5 and good.top5 > 0.9 and good.chance_top1 == pytest.approx(1 / 50)
    blind = rp.metrics.retrieval(ex_tr, im_tr, ex_q, rng.standard_normal((100, 12)))  # 2 tiles a unit, no signal
    assert blind.n_queries == 100 and blind.top1 < 0.1 and blind.top5 < 0.3
    with pytest.raises(ValueError, match="multiple"):
        rp.metrics.retrieval(ex_tr, im_tr, ex_q, im_q[:49])


def test_fidelity_difference_is_paired_over_units():
    xr, yr = _labelled(300, 0, sep=0.6)  # overlapping classes: fidelity well below 1
    rng = np.random.default_rng(5)
    units = rng.integers(0, 3, 150)
    y_units = np.array([f"c{v}" for v in units])
    centres = np.random.default_rng(99).standard_normal((3, 16)) * 0.6

    def paint(faithful: float, seed: int, k: int = 2) -> np.ndarray:
        """k tiles per unit, unit-major; a share `faithful` of units painted from their own class."""
        r = np.random.default_rng(seed)
        cls = np.where(r.random(len(units)) < faithful, units, r.integers(0, 3, len(units)))
        return (np.repeat(centres[cls], k, axis=0) + r.standard_normal((len(units) * k, 16))).astype(np.float32)

    good, weak = paint(0.9, 1), paint(0.5, 2)
    d = rp.metrics.fidelity_difference(xr, yr, good, weak, y_units, seed=0)
    assert d.difference == pytest.approx(d.accuracy_a - d.accuracy_b)
    assert d.difference > 0 and d.ci_low > 0 and d.p_not_greater < 0.01 and d.n_units == 150
    # the accuracies agree with the unpaired metric on the same tiles
    assert d.accuracy_a == pytest.approx(rp.metrics.condition_fidelity(xr, yr, good, y_units).accuracy)
    # two draws of the same generator: no difference to find
    same = rp.metrics.fidelity_difference(xr, yr, good, paint(0.9, 3, k=4), y_units, seed=0)
    assert same.ci_low < 0 < same.ci_high and 0.05 < same.p_not_greater < 0.95
    flipped = rp.metrics.fidelity_difference(xr, yr, weak, good, y_units, seed=0)
    assert flipped.difference == pytest.approx(-d.difference) and flipped.p_not_greater > 0.99
    # B = A with 10 % of the units repainted from a wrong class: both share every other unit's
    # difficulty, so the paired interval finds the gap where the separate intervals overlap
    r = np.random.default_rng(1)
    b = good.copy()
    for u in r.choice(150, 15, replace=False):
        b[2 * u : 2 * u + 2] = centres[(units[u] + 1) % 3] + r.standard_normal((2, 16))
    paired = rp.metrics.fidelity_difference(xr, yr, good, b, y_units, seed=0)
    sa, sb = (rp.metrics.condition_fidelity(xr, yr, t, y_units, seed=0) for t in (good, b))
    assert paired.ci_low > 0 and sa.ci_low < sb.ci_high
    with pytest.raises(ValueError, match="whole number"):
        rp.metrics.fidelity_difference(xr, yr, good[:-1], weak, y_units)
    with pytest.raises(ValueError, match="ci must be"):
        rp.metrics.fidelity_difference(xr, yr, good, weak, y_units, ci=95)
    with pytest.raises(ValueError, match="empty"):
        rp.metrics.fidelity_difference(xr, yr, good, weak, [])
    with pytest.raises(ValueError, match="never occur"):
        rp.metrics.fidelity_difference(xr, yr, good, weak, np.full(150, "c9"))


def test_fidelity_chance_is_the_largest_scored_class_share():
    # the training labels favour "c0", the scored units are mostly "c2": always answering "c2" scores 0.7
    xr, yr = _labelled(300, 0)
    yr = np.where(np.arange(300) < 150, "c0", yr)
    xs, ys = _labelled(100, 1)
    ys = np.array(["c2"] * 70 + ["c1"] * 20 + ["c0"] * 10)
    s = rp.metrics.condition_fidelity(xr, yr, xs, ys)
    assert s.chance == pytest.approx(0.7)
