"""Algorithm 1 (level weights from WF1 gaps) and the per-epoch draw (SPEC section 5)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.weights import (
    LEVEL_FLOOR, EpochDraw, algorithm1, largest_remainder, plan_epoch_draw,
)

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "algorithm1_vectors.json"


def golden_cases():
    if not GOLDEN.is_file():
        pytest.skip(f"needs the authors' Algorithm 1 vectors at {GOLDEN} (not shipped to users)")
    return json.loads(GOLDEN.read_text())["cases"]


# ---------------------------------------------------------------- Algorithm 1

def test_golden_vectors():
    cases = golden_cases()
    checked = 0
    for i, case in enumerate(cases):
        ref = case["reference_weights"]
        w = algorithm1(case["gaps"])
        if ref == "no_termination":
            # the authors' loop never ends (no positive gap): the toolkit keeps uniform weights
            assert max(case["gaps"]) <= 0, i
            np.testing.assert_allclose(w, 1 / len(w), atol=0, rtol=1e-15)
            continue
        np.testing.assert_allclose(w, ref, atol=1e-9, rtol=0, err_msg=f"case {i}")
        checked += 1
    assert checked >= 20


def test_floored_level_stays_floored():
    # From the golden vectors: -0.01 and 0.01 are floored in the first pass; after rescaling,
    # 0.01 would get 0.01/0.19*0.9 > 0.05 but it stays at the floor.
    w = algorithm1([-0.02, -0.01, 0.01, 0.03, 0.15])
    np.testing.assert_allclose(w, [0.05, 0.05, 0.05, 0.14166666666666675, 0.7083333333333333], atol=1e-12)


def test_no_floor_needed_is_plain_normalisation():
    g = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    np.testing.assert_allclose(algorithm1(g), g / g.sum(), atol=1e-15)


@pytest.mark.parametrize("K", [2, 3, 5, 8, 20])
def test_random_properties(K):
    rng = np.random.default_rng(1234 + K)
    for _ in range(300):
        # mostly positive gaps, some negative, some exactly zero, some tiny
        g = rng.normal(0.1, 0.12, size=K)
        g[rng.random(K) < 0.1] = 0.0
        g[rng.random(K) < 0.05] *= 1e-6
        w = algorithm1(g)
        assert w.shape == (K,)
        assert abs(w.sum() - 1) < 1e-12, g
        assert w.min() >= LEVEL_FLOOR - 1e-12, g
        order = np.argsort(g, kind="stable")
        assert np.all(np.diff(w[order]) >= -1e-12), (g, w)  # larger gap, never smaller weight


def test_nonpositive_gaps_give_uniform():
    np.testing.assert_array_equal(algorithm1([0.0] * 5), [0.2] * 5)
    np.testing.assert_array_equal(algorithm1([-0.1, -0.2, 0.0, -0.01]), [0.25] * 4)


def test_every_level_floored_in_first_pass_gives_uniform():
    # sum g < 0 and the one positive gap is below floor*|sum g|: the first pass floors every
    # level and the authors' loop would never end, as with no positive gap at all
    np.testing.assert_array_equal(algorithm1([-0.1, -0.2, 0.001]), np.full(3, 1 / 3))
    # a positive gap above floor*|sum g| keeps the loop going normally
    np.testing.assert_allclose(algorithm1([-0.1, -0.2, 0.1]), [0.05, 0.05, 0.9], atol=1e-12)


def test_zero_sum_with_a_positive_gap():
    # the authors would divide by zero; the limit floors every non-positive level
    w = algorithm1([0.1, -0.1, 0.0, 0.05, -0.05])
    np.testing.assert_allclose(w, [0.85 * 2 / 3, 0.05, 0.05, 0.85 / 3, 0.05], atol=1e-12)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="finite"):
        algorithm1([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="finite"):
        algorithm1([0.1, float("inf")])
    with pytest.raises(ValueError):
        algorithm1([0.1] * 21)  # 21 * 0.05 > 1
    with pytest.raises(ValueError):
        algorithm1([0.1, 0.2, 0.3], floor=0.4)
    with pytest.raises(ValueError):
        algorithm1([])


def test_k_times_floor_equal_one():
    w = algorithm1(np.linspace(0.01, 0.3, 20))
    np.testing.assert_allclose(w, 0.05, atol=1e-12)


# ---------------------------------------------------------------- largest remainder

@pytest.mark.parametrize("total,weights,expected", [
    (10, [0.25] * 4, [3, 3, 2, 2]),
    (10, [0.5, 0.5], [5, 5]),
    (7, [1, 1, 1], [3, 2, 2]),
    (100, [0.05, 0.07539682539682531, 0.15079365079365079, 0.27142857142857146, 0.45238095238095244],
     [5, 8, 15, 27, 45]),
    (0, [0.3, 0.7], [0, 0]),
    (5, [0.0, 1.0], [0, 5]),
    (3, [2, 1, 1], [1, 1, 1]),  # normalised first; remainders .5 < .75 = .75
    (4, [2, 1, 1], [2, 1, 1]),
])
def test_largest_remainder_cases(total, weights, expected):
    counts = largest_remainder(total, weights)
    assert counts.tolist() == expected
    assert counts.sum() == total


def test_largest_remainder_random():
    rng = np.random.default_rng(7)
    for _ in range(300):
        K = int(rng.integers(1, 9))
        w = rng.random(K)
        total = int(rng.integers(0, 5000))
        counts = largest_remainder(total, w)
        assert counts.sum() == total
        share = total * w / w.sum()
        assert np.all(np.abs(counts - share) < 1)


def test_largest_remainder_invalid():
    for bad in ([], [0, 0], [0.5, -0.1], [np.nan, 1]):
        with pytest.raises(ValueError):
            largest_remainder(10, bad)
    with pytest.raises(ValueError):
        largest_remainder(-1, [1.0])


# ---------------------------------------------------------------- epoch draw

def test_draw_counts_and_no_duplicates():
    sizes = [500, 400, 300, 200, 100]
    w = algorithm1([0.02, 0.05, 0.1, 0.18, 0.3])
    draw = plan_epoch_draw(sizes, 200, w, np.random.default_rng(0))
    assert isinstance(draw, EpochDraw)
    assert draw.counts == largest_remainder(200, w).tolist()
    assert sum(draw.counts) == 200
    assert draw.with_replacement == [False] * 5
    assert draw.messages == []
    np.testing.assert_allclose(draw.weights_used, w)
    for idx, count, size in zip(draw.indices, draw.counts, sizes):
        assert len(idx) == count
        assert len(set(idx.tolist())) == count
        assert idx.min() >= 0 and idx.max() < size


def test_draw_small_level_uses_replacement():
    draw = plan_epoch_draw([100, 3], 20, [0.5, 0.5], np.random.default_rng(1))
    assert draw.counts == [10, 10]
    assert draw.with_replacement == [False, True]
    assert len(draw.indices[1]) == 10 and draw.indices[1].max() < 3
    assert len(draw.messages) == 1
    assert "level 1" in draw.messages[0] and "3" in draw.messages[0] and "10" in draw.messages[0]


def test_draw_empty_level_redistributed():
    w = [0.1, 0.2, 0.3, 0.4]
    draw = plan_epoch_draw([50, 0, 50, 50], 80, w, np.random.default_rng(2))
    np.testing.assert_allclose(draw.weights_used, [0.125, 0.0, 0.375, 0.5])
    assert draw.counts == [10, 0, 30, 40]
    assert len(draw.indices[1]) == 0 and not draw.with_replacement[1]
    assert any("[1]" in m and "redistributed" in m for m in draw.messages)


def test_draw_all_empty_rejected():
    with pytest.raises(ValueError, match="empty"):
        plan_epoch_draw([0, 0, 0], 10, [0.3, 0.3, 0.4], np.random.default_rng(0))


def test_draw_mismatched_lengths_rejected():
    with pytest.raises(ValueError):
        plan_epoch_draw([10, 10], 10, [0.3, 0.3, 0.4], np.random.default_rng(0))


def test_draw_deterministic_for_a_seed():
    sizes, w = [30, 5, 60], [0.2, 0.5, 0.3]
    a = plan_epoch_draw(sizes, 50, w, np.random.default_rng(42))
    b = plan_epoch_draw(sizes, 50, w, np.random.default_rng(42))
    c = plan_epoch_draw(sizes, 50, w, np.random.default_rng(43))
    assert a.counts == b.counts and a.messages == b.messages
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(np.array_equal(x, y) for x, y in zip(a.indices, c.indices))
