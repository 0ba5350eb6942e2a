"""The `eval` / `table` commands (argument checks before any work, atomic outputs) and `evaluate` on a
model."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from context_forcing.config import ConfigError
from context_forcing.eval.command import (
    add_eval_arguments,
    add_table_arguments,
    run_eval_command,
    run_table_command,
)
from context_forcing.eval.evaluate import evaluate
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def panworld_checkpoint(tmp_path_factory):
    run = get_preset("panworld")
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "random", run,
                           CausalVideoDiT(run.model, run.text).state_dict())


def test_eval_and_table_commands_write_reports_plots_and_a_table(tmp_path, capsys):
    report = tmp_path / "out" / "oracle.json"
    args = parse(add_eval_arguments, ["--model", "oracle:sink3-window18", "--episodes", "2", "--seconds",
                                      "16", "--report", str(report), "--plots", str(tmp_path / "plots")])
    assert run_eval_command(args) == 0
    data = json.loads(report.read_text())
    for key in ("ecl_seconds", "ecl_lower_bound", "ecl_seconds_m2", "revisit_by_gap", "retrieval_signal",
                "identity", "drift", "resets", "cycles", "motion", "episodes", "seed_range",
                "restorable_fraction"):
        assert key in data, key
    assert data["seed_range"] == [1_000_000, 1_000_002] and data["memory"] == "sink3-window18:bounded"
    assert set(data["revisit_by_gap"]) == {"m1", "m2"}
    assert set(data["revisit_by_gap"]["m1"]["4-16"]) == {"all", "sink", "no_sink"}
    assert set(data["m1_by_last_visit"]["4-16"]) == {"prefill", "rollout"}
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["drift.png", "filmstrip.png", "revisits.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (tmp_path / "plots").iterdir())
    assert "ECL" in capsys.readouterr().err
    table = tmp_path / "t.md"
    args = parse(add_table_arguments,
                 [str(report), str(report), "--out", str(table), "--plot", str(tmp_path / "a.png")])
    assert run_table_command(args) == 0
    lines = table.read_text().splitlines()
    # 16 s episodes (64 frames) measure the bins 4-16 and 16-48 whole: 2 + 15 columns
    assert len(lines) == 4 and lines[2].startswith("| oracle:sink3-window18 |") and lines[2].count("|") == 19
    assert "M1 16-48 | M1 4-16 last seen in prefill | ECL s" in lines[0]
    assert lines[0].endswith("| ms / GFLOP per chunk |")
    assert data["drift_summary"]["p2"]["first_seconds"] == [0.0, 8.0]  # 16 s rollouts: halves
    assert isinstance(data["drift_within_interval"], bool)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra,message", [
    (["--model", "nonsense"], "--model: got 'nonsense'"),
    (["--model", "oracle:window-2"], "--model: got 'oracle:window-2'"),
    (["--model", "chance", "--episodes", "0"], "--episodes: got 0; must be an integer >= 1"),
    (["--model", "chance", "--seconds", "0.5"], "--seconds: got 0.5"),
    (["--model", "chance", "--seconds", "nan"], "--seconds: got nan"),
    (["--model", "chance", "--protocol", "p3"], "--protocol: got 'p3'; allowed: p1, p2, both"),
    (["--model", "chance", "--seed-start", "5"], "--seed-start: got 5"),
    (["--model", "chance", "--memory", "full"], "--memory: got 'full'; only a checkpoint"),
    (["--model", "chance", "--threads", "0"], "--threads: got 0"),
    (["--model", "chance", "--report-as", "x"], None),
])
def test_eval_rejects_bad_arguments_before_any_work(tmp_path, extra, message):
    argv = ["--report", str(tmp_path / "r.json"), *extra]
    if message is None:  # unknown flags are argparse's business
        with pytest.raises(SystemExit):
            parse(add_eval_arguments, argv)
        return
    with pytest.raises(ConfigError) as error:
        run_eval_command(parse(add_eval_arguments, argv))
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text
    assert list(tmp_path.iterdir()) == []


def test_eval_rejects_bad_outputs_and_checkpoints(tmp_path):
    (tmp_path / "file").write_text("")
    for argv, message in [
        (["--model", "chance", "--report", str(tmp_path / "r.txt")], "--report: got"),
        (["--model", "chance", "--report", str(tmp_path / "r.json"), "--plots", str(tmp_path / "file")],
         "--plots: got"),
    ]:
        with pytest.raises(ConfigError, match=message):
            run_eval_command(parse(add_eval_arguments, argv))
    run = get_preset("tiny")
    tiny = save_checkpoint(tmp_path / "tiny", run, CausalVideoDiT(run.model, run.text).state_dict())
    with pytest.raises(ConfigError, match="does not generate PanWorld's 32x32 frames"):
        run_eval_command(parse(add_eval_arguments,
                               ["--model", str(tiny), "--report", str(tmp_path / "r.json")]))
    assert not (tmp_path / "r.json").exists()


def test_the_table_joins_reports_of_different_lengths_and_shows_drift():
    from context_forcing.eval.table import markdown_table

    def cell(score):
        return {"all": {"score": score, "interval": [score, score]}}

    def drift(last, within):
        sharp = {"first": 1.0, "last": last, "within_interval": within}
        return {"measures": {"sharpness_ratio": sharp, "colour": {"within_interval": True}}}

    short = {"model": "a", "revisit_by_gap": {"m1": {"4-16": cell(0.9), "96-192": cell(0.8)}},
             "drift_summary": {"p2": drift(0.99, True)}}
    long = {"model": "b", "revisit_by_gap": {"m1": {"4-16": cell(0.9), "96-192": cell(0.7),
                                                    "192-384": cell(0.4)}},
            "m1_by_last_visit": {"4-16": {"prefill": {"score": 0.95, "interval": [0.9, 1.0]}}},
            "drift_summary": {"p1": drift(0.5, False)}}
    head, _, a, b, old = markdown_table([short, long, {"model": "c"}]).splitlines()
    assert "M1 96-192 | M1 192-384 | M1 4-16 last seen in prefill | ECL s" in head and "M1 16-48" not in head
    assert a.split(" | ")[3] == "-"  # a 64 s report has no 72 s bin
    assert b.split(" | ")[3] == "0.40 [0.40, 0.40]"
    assert a.split(" | ")[4] == "-" and b.split(" | ")[4] == "0.95 [0.90, 1.00]"  # older reports: -
    assert a.split(" | ")[-6] == "1.00 / 0.99" and b.split(" | ")[-6] == "1.00 / 0.50 drift: sharpness_ratio"
    assert old.endswith("| - | - | - | - | - | - |")  # reports from before the drift summary and the cost


def test_the_table_shows_identity_resets_cycles_admission_and_cost():
    from context_forcing.eval.table import markdown_table

    report = {"model": "checkpoints/panworld/m/", "memory": "window-21:absolute",
              "identity": {"p1": {"after_occlusion": {"accuracy": 0.25},
                                  "after_state_change": {"accuracy": 0.5}}},
              "resets": {"p1": {"per_minute": 9.0}, "p2": {"per_minute": 1.5}},
              "cycles": {"p1": {"rate": 0.125}},
              "admission_rate": 0.3333, "cost_per_chunk": {"ms_per_episode_median": 12.34, "flops": 2.5e9}}
    head, _, row = markdown_table([report]).splitlines()
    assert head.endswith("| identity occl. / state | resets /min | cycles | admission "
                         "| ms / GFLOP per chunk |")
    assert row.endswith("| 0.25 / 0.50 | 1.50 | 0.12 | 0.33 | 12.3 / 2.50 |")  # resets: P2's before P1's
    assert row.startswith("| m [window-21:absolute] |")  # a checkpoint path's last part names the row


def test_table_rejects_a_file_that_is_not_a_report(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not an eval report"):
        run_table_command(parse(add_table_arguments, [str(tmp_path / "x.json")]))


def test_a_random_model_is_evaluated_batched_and_fails_motion(panworld_checkpoint):
    report = evaluate(str(panworld_checkpoint), 2, 8, progress=False, batch_size=1, bootstrap_draws=50)
    assert report["seconds"] == 8 and report["frames"] == 32 and report["t0_seconds"] == 1.5
    assert report["memory"] == "sink3-slow12-fast6:similarity0.95:bounded"
    assert report["motion"]["passes"] is False
    assert report["m1_new"]["score"] is not None and report["m2_memory_critical"]["score"] is not None
    # what the sessions measured: admission over every candidate, a cost per generated chunk
    assert (report["candidates"] > 0
            and report["admission_rate"] == report["admissions"] / report["candidates"])
    cost = report["cost_per_chunk"]
    padded = -(-report["frames"] // 3) * 3
    # P1 + P2, 2 episodes
    assert cost["chunks"] == 2 * ((padded - 6) // 3 + padded // 3) and cost["batch"] == 1
    assert 9 <= cost["attended_frames"] <= 21 and cost["flops"] > 0 and cost["ms_median"] > 0
    assert cost["ms_per_episode_median"] == cost["ms_median"]
    # a sample's video does not depend on its batch: one batch of 2 scores as two batches of 1
    p1_only = evaluate(str(panworld_checkpoint), 2, 8, protocol="p1", progress=False, bootstrap_draws=50)
    assert p1_only["ecl_seconds_m2"] is None
    for name in ("new", "memory_critical"):
        score = report[f"m1_{name}"]["score"]
        assert p1_only[f"m1_{name}"]["score"] == (None if score is None else pytest.approx(score, abs=1e-3))


def test_the_memory_flag_overrides_the_checkpoint_layout(panworld_checkpoint):
    report = evaluate(str(panworld_checkpoint), 1, 2, memory="window-6", protocol="p2", progress=False,
                      bootstrap_draws=10)
    assert report["memory"] == "window-6:bounded" and report["ecl_seconds"] is None
    assert report["admission_rate"] is None and report["cost_per_chunk"]["attended_frames"] == 6


def test_seed_ranges_stay_in_the_eval_split():
    from context_forcing.eval.evaluate import resolve_seed_range

    assert resolve_seed_range(3, None) == (1_000_000, 1_000_003)
    assert resolve_seed_range(3, 1_000_010) == (1_000_010, 1_000_013)
    assert resolve_seed_range(2, (1_000_005, 1_000_007)) == (1_000_005, 1_000_007)
    for episodes, seeds in [(2, (1_000_005, 1_000_008)), (2, 999_999), (0, None), (1, 2**62)]:
        with pytest.raises(ValueError):
            resolve_seed_range(episodes, seeds)
