"""PanWorld metrics: references behave as the definitions say; oracles nest; decoders and ECL are right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from context_forcing.cli import main
from context_forcing.data.panworld import PanWorldConfig, sample_episode
from context_forcing.eval.evaluate import (make_cases, reference_videos, restorable_fraction, score_p1, score_p2)
from context_forcing.eval.identity import identity_scores
from context_forcing.eval.scores import BinSums, EpisodeSums, bootstrap, effective_context_length, pooled


@pytest.fixture(scope="module")
def cases():
    return make_cases(2, 64, 1_000_000)


def test_ground_truth_scores_one_and_its_ecl_is_a_lower_bound_of_at_least_20_s(cases):
    p1 = score_p1(cases, reference_videos("ground-truth", cases, "p1"))
    scores = [v["all"]["score"] for v in p1["revisit_by_gap"].values()]
    assert all(s == 1.0 for s in scores) and len(scores) == 4
    assert p1["ecl_lower_bound"] and p1["ecl_seconds"] >= 20
    assert p1["identity"]["after_state_change"]["accuracy"] == 1.0
    assert p1["motion"]["ok"] and p1["resets"]["count"] == 0 and p1["cycles"]["frames"] == 0
    p2 = score_p2(cases, reference_videos("ground-truth", cases, "p2"))
    assert p2["m2_memory_critical"]["score"] == pytest.approx(1.0) and p2["ecl_lower_bound"]


def test_chance_scores_zero_on_m1(cases):
    p1 = score_p1(cases, reference_videos("chance", cases, "p1"))
    assert p1["m1_memory_critical"]["score"] == pytest.approx(0.0, abs=1e-9)
    assert p1["ecl_seconds"] < 2.5 and not p1["ecl_lower_bound"]


def test_a_frozen_video_fails_the_motion_check(cases):
    frozen = [np.repeat(c.truth[c.t0 - 1:c.t0], len(c.truth) - c.t0, axis=0) for c in cases]
    p1 = score_p1(cases, frozen)
    assert not p1["motion"]["ok"] and p1["motion"]["accuracy_moving"] < 0.3
    assert score_p1(cases, reference_videos("ground-truth", cases, "p1"))["motion"]["ok"]


def test_mean_fill_is_flagged_by_the_fidelity_gate_where_it_beats_a_plausible_wrong_guess(cases):
    mean = score_p1(cases, reference_videos("mean-fill", cases, "p1"))
    chance = score_p1(cases, reference_videos("chance", cases, "p1"))
    beats = mean["m1_memory_critical"]["score"] > chance["m1_memory_critical"]["score"]
    assert not beats or not mean["fidelity"]["passes"]  # blur may win on squared error; the gate says so
    assert chance["fidelity"]["passes"]


@pytest.mark.parametrize("small,large", [
    ("window-3", "window-21"), ("window-21", "full"), ("sink3-window18", "full"),
    ("sink3-slow3-fast6:uniform1", "sink3-slow12-fast6:uniform1"), ("sink3-slow12-fast6:uniform1", "full"),
])
def test_an_oracle_is_at_least_as_good_as_a_layout_nested_in_it(cases, small, large):
    assert restorable_fraction(f"oracle:{small}", cases) <= restorable_fraction(f"oracle:{large}", cases)


def test_oracle_extremes(cases):
    assert restorable_fraction("oracle:window-3", cases) == 0.0
    assert restorable_fraction("oracle:full", cases) == 1.0


def test_identity_decoders_are_accurate_on_ground_truth():
    correct = total = 0
    for seed in range(1_000_000, 1_000_006):
        episode = sample_episode(PanWorldConfig(), seed, 128)
        for c, n in identity_scores(episode, episode.render(), 0).values():
            correct, total = correct + c, total + n
    assert total > 50 and correct / total >= 0.95


def test_identity_decoder_notices_wrong_attributes(cases):
    case = cases[0]
    wrong = case.chance  # another world: other hidden badge / accent
    scores = identity_scores(case.episode, wrong, 0)
    assert scores["after_state_change"][0] < scores["after_state_change"][1]


def test_ecl_on_hand_made_curves():
    full = {"4-16": 0.9, "16-48": 0.8, "48-96": 0.7, "96-192": 0.6}
    assert effective_context_length(full) == (36.0, True)
    # falls from 0.8 at 8 s to 0.2 at 18 s: crosses 0.5 half way, at 13 s
    ecl, lower = effective_context_length({"4-16": 0.9, "16-48": 0.8, "48-96": 0.2, "96-192": 0.1})
    assert ecl == pytest.approx(13.0) and not lower
    # already below 0.5 in the first bin (centre 2.5 s): between (0, 1) and (2.5, 0) -> 1.25 s
    assert effective_context_length({"4-16": 0.0, "16-48": None})[0] == pytest.approx(1.25)


def test_bootstrap_interval_contains_the_pooled_score():
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(6):
        sums = EpisodeSums()
        sums.critical.add(BinSums(model=float(rng.uniform(1, 5)), chance=10.0, count=30))
        episodes.append(sums)
    lo, hi = bootstrap(episodes, "critical")
    assert lo <= pooled(episodes, "critical").score() <= hi and lo < hi


def test_eval_and_table_commands(tmp_path, capsys):
    report = tmp_path / "o.json"
    assert main(["eval", "--model", "oracle:sink3-window18", "--episodes", "1", "--seconds", "32", "--report",
                 str(report), "--plots", str(tmp_path / "plots")]) == 0
    data = json.loads(report.read_text())
    for key in ("ecl_seconds", "ecl_seconds_m2", "revisit_by_gap", "retrieval_signal", "identity", "drift",
                "resets", "cycles", "motion", "episodes", "seed_range", "restorable_fraction"):
        assert key in data
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["drift.png", "filmstrip.png", "revisits.png",
                                                                     "revisits_m2.png"]
    assert main(["table", str(report), str(report), "--out", str(tmp_path / "t.md"), "--plot",
                 str(tmp_path / "all.png")]) == 0
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
    assert "| oracle:sink3-window18 |" in (tmp_path / "t.md").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--model", "nonsense"], "--model: got 'nonsense'"),
    (["--model", "oracle:window-2"], "--model: bad memory layout 'window-2'"),
    (["--model", "chance", "--episodes", "0"], "--episodes: got 0"),
    (["--model", "chance", "--seed-start", "5"], "--seed-start:"),
    (["--model", "chance", "--memory", "full"], "--memory: only for a model checkpoint"),
])
def test_eval_rejects_bad_arguments(tmp_path, capsys, extra, message):
    assert main(["eval", "--report", str(tmp_path / "r.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_random_model_is_evaluated_and_fails_motion(tmp_path):
    import torch

    from context_forcing.eval.evaluate import evaluate
    from context_forcing.model.checkpoint import save_checkpoint
    from context_forcing.model.dit import CausalVideoDiT
    from context_forcing.presets import get_preset

    run = get_preset("panworld")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "c", run, CausalVideoDiT(run.model, run.text).state_dict())
    report = evaluate(str(ckpt), 1, 12, progress=False)
    assert report["seconds"] == 12 and report["motion"]["ok"] is False
    assert report["m2_memory_critical"]["score"] is not None


def test_presets_that_do_not_render_panworld_frames_are_refused(tmp_path, capsys):

    from context_forcing.model.checkpoint import save_checkpoint
    from context_forcing.model.dit import CausalVideoDiT
    from context_forcing.presets import get_preset

    run = get_preset("tiny")
    ckpt = save_checkpoint(tmp_path / "c", run, CausalVideoDiT(run.model, run.text).state_dict())
    assert main(["eval", "--model", str(ckpt), "--report", str(tmp_path / "r.json")]) == 2
    assert "does not generate PanWorld's 32x32 frames" in capsys.readouterr().err

