"""Revisit-score arithmetic: ECL on hand-made curves, pooling by counts, bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from context_forcing.eval.metrics import (
    BIN_NAMES,
    RevisitSums,
    bootstrap_weights,
    column_errors,
    difference_interval,
    effective_context_length,
    measured_bins,
    pooled_score,
    score_table,
)


def curve(*scores):
    return dict(zip(("4-16", "16-48", "48-96", "96-192", "192-384"), scores))


@pytest.mark.parametrize("scores,expected", [
    # never below 0.5: the largest measured centre (96-192 frames -> 36 s), a lower bound
    (curve(0.9, 0.8, 0.7, 0.6), (36.0, True)),
    # exactly 0.5 is not below
    (curve(0.5, 0.5, 0.5, 0.5), (36.0, True)),
    # from 0.8 at 8 s to 0.2 at 18 s: below 0.5 half way, at 13 s
    (curve(0.9, 0.8, 0.2, 0.1), (13.0, False)),
    # the first bin already below: between (0 s, 1.0) and (2.5 s, 0.0) -> 1.25 s
    (curve(0.0, None, None, None), (1.25, False)),
    # the first crossing counts, even if a later bin recovers: (2.5, 0.9) -> (8, 0.4) at 2.5 + 0.8 * 5.5
    (curve(0.9, 0.4, 0.8, 0.9), (6.9, False)),
    # unmeasured bins are skipped: the lower bound is the largest measured centre (48-96 -> 18 s)
    (curve(0.9, None, 0.7, None), (18.0, True)),
    # and the line joins the measured neighbours: (2.5, 1.0) -> (18, 0.0) crosses at 10.25 s
    (curve(1.0, None, 0.0, None), (10.25, False)),
    # nothing measured: the curve is the single point (0 s, 1.0)
    (curve(None, None, None, None), (0.0, True)),
    # 128 s episodes add 192-384 frames (72 s): never below 0.5 -> 72 s, a lower bound
    (curve(0.9, 0.8, 0.7, 0.6, 0.5), (72.0, True)),
    # from 0.7 at 36 s to 0.3 at 72 s: below 0.5 half way, at 54 s
    (curve(1.0, 1.0, 0.9, 0.7, 0.3), (54.0, False)),
])
def test_ecl_on_hand_made_curves(scores, expected):
    seconds, lower = effective_context_length(scores)
    assert seconds == pytest.approx(expected[0]) and lower == expected[1]


@pytest.mark.parametrize("seconds, last", [(8, "4-16"), (24, "48-96"), (64, "96-192"), (95.75, "96-192"),
                                           (96, "192-384"), (128, "192-384")])
def test_episodes_measure_the_gap_bins_they_hold_whole(seconds, last):
    names = [f"{lo}-{hi}" for lo, hi in measured_bins(int(seconds * 4))]
    assert names == list(BIN_NAMES[:BIN_NAMES.index(last) + 1])  # 64 s keeps its four bins; 128 s adds one


def sums(model, chance, count):
    return RevisitSums(("g",), np.array(model, float)[:, None], np.array(chance, float)[:, None],
                       np.array(count, float)[:, None])


def test_scores_pool_errors_and_counts_before_dividing():
    # episode 1: many revisits, perfectly restored; episode 2: few revisits, no better than chance
    s = sums(model=[0.0, 10.0], chance=[100.0, 10.0], count=[300, 30])
    assert pooled_score(s.model, s.chance)[0] == pytest.approx(1 - 10 / 110)  # not the episode mean 0.5
    assert score_table(s, bootstrap_weights(2, 50, 0))["g"]["pixels"] == 110


def test_an_empty_group_has_no_score():
    s = sums(model=[0.0, 0.0], chance=[0.0, 0.0], count=[0, 0])
    cell = score_table(s, bootstrap_weights(2, 50, 0))["g"]
    assert cell["score"] is None and cell["interval"] is None


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    chance = rng.uniform(50, 150, 12)
    s = sums(model=chance * rng.uniform(0.1, 0.9, 12), chance=chance, count=rng.integers(30, 300, 12))
    cell = score_table(s, bootstrap_weights(12, 2000, 0))["g"]
    lo, hi = cell["interval"]
    assert lo < cell["score"] < hi and hi - lo < 0.6


def test_bootstrap_weights_resample_whole_episodes():
    weights = bootstrap_weights(5, 100, 1)
    assert weights.shape == (100, 5) and (weights.sum(axis=1) == 5).all()
    assert (weights == np.round(weights)).all() and weights.std(axis=0).min() > 0


def test_difference_interval_uses_the_same_resampled_episodes():
    groups = ("critical", "new")
    model = np.array([[1.0, 1.0], [5.0, 5.0], [2.0, 2.0]])  # both groups identical in every episode
    s = RevisitSums(groups, model, np.full((3, 2), 10.0), np.full((3, 2), 30.0))
    point, interval = difference_interval(s, "critical", "new", bootstrap_weights(3, 200, 0))
    assert point == 0.0 and interval == [0.0, 0.0]  # independent resampling would spread it


def test_column_errors_sum_masked_pixels_per_column():
    truth = np.zeros((1, 2, 3, 3), np.uint8)
    pred = truth.copy()
    pred[0, :, 1] = 2  # column 1 off by 2 in every channel
    mask = np.ones((1, 2, 3), bool)
    mask[0, 0, 1] = False  # one of its pixels is not static world
    errors, counts = column_errors(pred, truth, mask)
    np.testing.assert_array_equal(errors, [[0, 12, 0]])  # 1 pixel x 3 channels x 2**2
    np.testing.assert_array_equal(counts, [[6, 3, 6]])
