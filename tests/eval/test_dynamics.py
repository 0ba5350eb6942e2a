"""Motion (action following), resets, cycles and drift expose what revisit scores cannot."""

from __future__ import annotations

import numpy as np
import pytest

from context_forcing.eval import dynamics
from context_forcing.eval.cases import make_cases
from context_forcing.eval.scoring import score_videos


@pytest.fixture(scope="module")
def cases():
    return make_cases(range(1_000_000, 1_000_003), seconds=24)


@pytest.fixture(scope="module")
def long_cases():
    return make_cases(range(1_000_000, 1_000_003), seconds=40)  # 160 frames: 16 s segments apart


def frozen(case, protocol):
    """P1: the last prefix frame held; P2: the first frame held."""
    video = case.truth.copy()
    hold = case.t0 - 1 if protocol == "p1" else 0
    video[hold + 1:] = video[hold]
    return video


def test_a_frozen_video_fails_the_motion_check_but_ground_truth_passes(cases):
    still = score_videos(cases, {p: [frozen(c, p) for c in cases] for p in ("p1", "p2")}, draws=100)
    assert not still["motion"]["passes"] and not still["motion"]["p1"]["passes"]
    assert still["motion"]["p1"]["accuracy_moving"] == 0.0
    assert still["cycles"]["p2"]["count"] > 0  # frames repeat at camera positions that share no column
    truth = score_videos(cases, {p: [c.truth for c in cases] for p in ("p1", "p2")}, draws=100)
    assert truth["motion"]["passes"] and truth["motion"]["p2"]["accuracy_moving"] == 1.0


def test_estimated_moves_recover_the_camera(cases):
    case = cases[0]
    moves = dynamics.estimated_moves(case.truth[:case.frames], case.episode.cfg)
    np.testing.assert_array_equal(moves, np.diff(case.camera_x[:case.frames]))


def test_a_video_moving_the_wrong_way_fails(cases):
    case = cases[0]
    mirrored = case.truth[:, :, ::-1].copy()  # the world scrolls the other way; the subject box stays put
    counts = dynamics.motion_counts(mirrored, case.camera_x, case.episode.cfg, 0, case.frames)
    assert not dynamics.pool_motion([counts])["passes"]


def test_a_cut_to_another_world_is_a_reset(cases):
    case = cases[0]
    difference = np.abs(case.truth.astype(float) - case.wrong).mean(axis=(1, 2, 3))  # (padded,)
    at = 20 + int(difference[20:80].argmax())  # a cut between views that look different
    cut = case.truth.copy()
    cut[at:] = case.wrong[at:]
    counts = dynamics.reset_counts(cut, case.camera_x, case.episode.cfg, 0, case.frames)
    assert counts["resets"] == 1
    assert dynamics.reset_counts(case.truth, case.camera_x, case.episode.cfg, 0, case.frames)["resets"] == 0


def test_drift_grows_when_frames_degrade(cases):
    case = cases[0]
    noisy = case.truth.astype(np.float64)
    ramp = np.linspace(0, 60, len(noisy))[:, None, None, None]
    rng = np.random.default_rng(0)
    noisy = np.clip(noisy + ramp * rng.standard_normal(noisy.shape), 0, 255).astype(np.uint8)
    windows = dynamics.drift_windows(noisy, case.truth, 0, case.frames)
    assert [w["start_seconds"] for w in windows] == [4 * i for i in range(len(windows))]
    mae = [w["mae"] for w in windows]
    assert mae == sorted(mae) and mae[-1] > 5 * mae[0]
    same = dynamics.drift_windows(case.truth, case.truth, 0, 96)
    assert all(w["mae"] == 0 and w["histogram"] == 0 for w in same)


def test_a_rollout_whose_last_16_s_fade_to_grey_reads_as_drift(long_cases):
    videos = []
    for case in long_cases:
        video = case.truth.astype(np.float64)
        fade = np.zeros(len(video))
        fade[case.frames - 64:case.frames] = np.linspace(0.0, 1.0, 64)  # the last 16 s fade to grey
        videos.append(np.round(video * (1 - fade[:, None, None, None]) + 128 * fade[:, None, None, None])
                      .astype(np.uint8))
    report = score_videos(long_cases, {"p2": videos}, draws=200)
    summary = report["drift_summary"]["p2"]
    assert report["drift_within_interval"] is False and not summary["drift_within_interval"]
    assert summary["first_seconds"] == [0.0, 16.0] and summary["last_seconds"] == [24.0, 40.0]
    sharp = summary["measures"]["sharpness_ratio"]
    assert sharp["first"] == 1.0 and sharp["last"] < 0.6 and not sharp["within_interval"]
    assert not summary["measures"]["colour"]["within_interval"]


def test_drift_segments_never_overlap():
    assert dynamics.drift_segments(63, 256) == ((63, 127), (192, 256))
    assert dynamics.drift_segments(0, 40) == ((0, 20), (20, 40))  # shorter than 32 s: halves
    assert dynamics.drift_segments(5, 6) is None
