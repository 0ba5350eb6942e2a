"""Non-learned references behave as benchmarks.md says, and oracles are the memory's own ceilings."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from context_forcing.eval.cases import make_cases
from context_forcing.eval.metrics import RevisitSums, bootstrap_weights
from context_forcing.eval.references import (
    oracle_layout,
    oracle_plan,
    oracle_video,
    reference_videos,
    restorable_summary,
)
from context_forcing.eval.revisits import m1_sums, m2_sums
from context_forcing.eval.scoring import revisit_tables, score_videos
from context_forcing.memory.layout import parse_layout
from context_forcing.memory.plan import simulate

SEEDS = range(1_000_000, 1_000_004)


@pytest.fixture(scope="module")
def long_cases():
    return make_cases(SEEDS, seconds=64)  # 256 frames: P1 prefix 63, revisits up to 96-192 frames


@pytest.fixture(scope="module")
def longest_cases():
    return make_cases(range(1_000_002, 1_000_005), seconds=128)  # 512 frames; seed 1000004 was resampled


@pytest.fixture(scope="module")
def short_cases():
    return make_cases(SEEDS, seconds=24)  # 96 frames


_REPORTS: dict = {}


def report(spec, cases, protocols=("p1", "p2")):
    """Scores of a reference, computed once per module (several tests read the same reports)."""
    key = (spec, tuple(c.episode.seed for c in cases), cases[0].frames, protocols)
    if key not in _REPORTS:
        videos, extra = reference_videos(spec, cases, protocols)
        _REPORTS[key] = {**score_videos(cases, videos, draws=300), **extra}
    return _REPORTS[key]


def test_ground_truth_scores_one_and_its_ecl_is_a_lower_bound_of_at_least_20_s(long_cases):
    r = report("ground-truth", long_cases[:2])
    for metric in ("m1", "m2"):
        for name, splits in r["revisit_by_gap"][metric].items():
            assert splits["all"]["score"] == 1.0, (metric, name)
    assert r["ecl_lower_bound"] is True and r["ecl_seconds"] >= 20
    assert r["ecl_m2_lower_bound"] is True and r["ecl_seconds_m2"] >= 20
    assert r["retrieval_signal"]["score"] == 0.0  # new content is ground truth too
    assert r["fidelity"]["p1"]["passes"] and r["motion"]["passes"]
    assert r["resets"]["p1"]["count"] == 0 and r["cycles"]["p2"]["count"] == 0
    # 64 s episodes cannot hold gaps of 192-384 frames whole: that bin is left out, as before it existed
    assert list(r["revisit_by_gap"]["m1"]) == ["4-16", "16-48", "48-96", "96-192"]
    # drift: ground truth's first and last 16 s match the truth exactly, a reading of "no drift"
    assert r["drift_within_interval"] is True
    for protocol in ("p1", "p2"):
        summary = r["drift_summary"][protocol]
        assert summary["drift_within_interval"] and summary["last_seconds"] == [48.0, 64.0]
        assert summary["measures"]["sharpness_ratio"]["first_interval"] == [1.0, 1.0]


def test_128_s_episodes_measure_192_384_frame_gaps_in_every_episode(longest_cases):
    weights = bootstrap_weights(len(longest_cases), 100, 0)
    for sums_of in (lambda c: m1_sums(c, c.truth), lambda c: m2_sums(c, c.truth)):
        sums = RevisitSums.stack([sums_of(c) for c in longest_cases])
        assert (sums.count[:, sums.column("192-384/all")] > 0).all()  # the sampler's guarantee, in M1 and M2
        by_gap, ecl, _ = revisit_tables(sums, weights)
        assert list(by_gap)[-1] == "192-384" and by_gap["192-384"]["all"]["score"] == 1.0
        assert ecl["all"] == {"seconds": 72.0, "lower_bound": True}  # ground truth reaches the 72 s centre


def test_m1_splits_each_bin_by_where_the_column_was_last_visible(long_cases):
    # a model that restores what the prefill showed but forgets at t0 + 16: the truth until then, another
    # world after; revisits last seen in the prefill score 1, those last seen in its own rollout do not
    weights = bootstrap_weights(len(long_cases), 100, 0)
    parts = []
    for c in long_cases:
        video = c.truth.copy()
        video[c.t0 + 16:] = c.chance[0][c.t0 + 16:]
        parts.append(m1_sums(c, video))
    sums = RevisitSums.stack(parts)
    for name in ("4-16", "16-48", "48-96", "96-192"):  # the two splits partition the bin
        count = sums.count.sum(axis=0)
        split = count[sums.column(f"{name}/last_prefill")] + count[sums.column(f"{name}/last_rollout")]
        assert split == count[sums.column(f"{name}/all")] > 0, name
    _, _, cells = revisit_tables(sums, weights)
    assert cells["4-16/last_prefill"]["score"] == 1.0  # such frames precede t0 + 16
    assert cells["4-16/last_rollout"]["score"] < 0.5


def test_chance_scores_about_zero_on_m1_but_high_on_m2(long_cases):
    # the `chance` reference is another world than the normalising ones, so ~0 here is a calibration test
    r = report("chance", long_cases)
    critical = r["m1_memory_critical"]
    assert abs(critical["score"]) < 0.2
    assert critical["interval"][0] <= 0.0 <= critical["interval"][1]
    assert not r["ecl_lower_bound"] and r["ecl_seconds"] < 2.5  # below 0.5 already in the first bin
    # a different but self-consistent world is perfectly consistent with its own first visit
    assert r["m2_memory_critical"]["score"] > 0.99


def test_mean_fill_does_not_beat_a_wrong_world_unless_the_fidelity_gate_flags_it(long_cases):
    mean_fill, chance = report("mean-fill", long_cases), report("chance", long_cases)
    beats = mean_fill["m1_memory_critical"]["score"] > chance["m1_memory_critical"]["score"]
    assert not beats or not mean_fill["fidelity"]["p1"]["passes"]
    assert chance["fidelity"]["p1"]["passes"]
    # every M1 cell carries the mean-fill score on the same pixels
    blur = mean_fill["m1_memory_critical"]["score"]
    assert chance["m1_memory_critical"]["mean_fill"] == pytest.approx(blur)
    # the frozen P2 mean-fill is perfectly self-consistent, and the motion check exposes it (pitfall 4)
    assert mean_fill["m2_memory_critical"]["score"] > 0.9 and not mean_fill["motion"]["passes"]


def restorable(spec, cases):
    layout = oracle_layout(f"oracle:{spec}")
    return [oracle_plan(c, layout).restorable for c in cases]


@pytest.mark.parametrize("chain", [
    ("window-3", "window-6", "window-21", "full"),
    ("window-6", "sink3-window6", "sink3-slow3-fast6:uniform1", "sink3-slow12-fast6:uniform1", "full"),
    ("sink3-window6", "sink3-window18", "full"),
    ("sink3-window6", "sink3-slow6-fast6:uniform4", "sink3-slow12-fast6:uniform4", "full"),
    # similarity decisions depend only on the ground-truth candidates, so a larger slow part keeps a superset
    ("sink3-window6", "sink3-slow6-fast6", "sink3-slow12-fast6", "full"),
])
def test_an_oracle_is_at_least_as_good_as_any_layout_nested_in_it(short_cases, chain):
    masks = [restorable(spec, short_cases) for spec in chain]
    fractions = [restorable_summary(short_cases, mask)["restorable_fraction"] for mask in masks]
    for small, large in pairwise(masks):
        assert all((s <= b).all() for s, b in zip(small, large))  # nested memories restore nested columns
    assert fractions == sorted(fractions) and fractions[0] < fractions[-1]


def test_oracle_extremes(short_cases):
    assert report("oracle:window-3", short_cases, ("p1",))["restorable_fraction"] == 0.0
    full = report("oracle:full", short_cases, ("p1",))
    assert full["restorable_fraction"] == 1.0 and full["m1_memory_critical"]["score"] == 1.0


def test_the_full_oracle_free_rollout_is_ground_truth(short_cases):
    # P2: the oracle invents the truth on first sight and keeps it for the rest of the chunk (no flicker)
    for case in short_cases[:2]:
        video = oracle_video(case, oracle_plan(case, oracle_layout("oracle:full")), "p2")
        np.testing.assert_array_equal(video[:case.frames], case.truth[:case.frames])


def test_the_oracle_replays_the_memory_planner(short_cases):
    case = short_cases[0]
    layout = parse_layout("window-6", 3)  # each chunk attends to the previous chunk only
    plans = simulate(layout, case.padded // 3, lambda i, c: True)
    assert all(p.frames == tuple(range(3 * k - 3, 3 * k)) for k, p in enumerate(plans) if k)
    expected = np.zeros((case.padded, 32), bool)
    for t in range(3, case.padded):
        previous = range(t // 3 * 3 - 3, t // 3 * 3)
        seen = set().union(*(range(case.camera_x[s], case.camera_x[s] + 32) for s in previous))
        expected[t] = [case.camera_x[t] + j in seen for j in range(32)]
    np.testing.assert_array_equal(oracle_plan(case, layout).restorable, expected)


def test_oracle_scores_follow_restorable_content(long_cases):
    small = report("oracle:sink3-window18", long_cases, ("p1",))
    large = report("oracle:sink3-slow12-fast6:uniform4", long_cases, ("p1",))
    assert small["restorable_fraction"] < large["restorable_fraction"]
    assert small["m1_memory_critical"]["score"] < large["m1_memory_critical"]["score"]
    assert large["admission_rate"] == pytest.approx(0.25, abs=0.02)  # uniform4 admits every 4th candidate


def test_noise_on_the_truth_is_flagged_noisy_while_the_truth_is_not(short_cases):
    """The blur gate cannot see residual noise (it scores as sharp): the noise gate does, both ways."""
    from context_forcing.eval.scoring import fidelity
    from context_forcing.eval.table import markdown_table

    g = np.random.default_rng(0)
    truth = [c.truth for c in short_cases]
    noisy = [np.clip(t.astype(np.float32) + g.normal(0, 40, t.shape), 0, 255).astype(np.uint8) for t in truth]
    clean, flagged = fidelity(short_cases, truth, "p1"), fidelity(short_cases, noisy, "p1")
    assert not clean["noisy"] and clean["passes"]
    assert flagged["noisy"] and flagged["passes"] and flagged["sharpness_ratio"] > flagged["noise_gate"]
    rows = markdown_table([{"model": "n", "fidelity": {"p1": flagged}, "motion": {"p1": {}}}]).splitlines()
    assert " noisy" in rows[-1]
