"""`context-forcing generate`: argument validation before any work, and an end-to-end tiny run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from context_forcing.cli import main
from context_forcing.io.video import read_mp4
from context_forcing.model.checkpoint import point_latest, save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset


def _args(tmp_path, *extra):
    weights = [] if "--checkpoint" in extra else ["--random-weights"]  # tiny ships no trained model
    return ["generate", "--preset", "tiny", "--seconds", "3", "--out", str(tmp_path / "v.mp4"), *weights,
            *extra]


BAD = [
    (["--seconds", "0"], "--seconds: got 0.0"),
    (["--seconds", "-2"], "--seconds: got -2.0"),
    (["--seconds", "nan"], "--seconds: got nan"),
    (["--preset", "huge"], "--preset: got 'huge'; allowed: tiny, panworld, wan2.1-1.3b"),
    (["--memory", "sink4-slow12-fast6"], "--memory: bad memory layout 'sink4-slow12-fast6'"),
    (["--memory", "window-2"], "--memory: bad memory layout 'window-2'"),
    (["--memory", "window-6:uniform2"], "--memory: bad memory layout 'window-6:uniform2'"),
    (["--batch", "0"], "--batch: got 0"),
    (["--scale", "0"], "--scale: got 0"),
    (["--fps", "-1"], "--fps: got -1.0"),
    (["--checkpoint", "/nonexistent/ckpt"],
     "--checkpoint: /nonexistent/ckpt: no such checkpoint or run directory"),
    (["--preset", "wan2.1-1.3b"], "--prompt: preset 'wan2.1-1.3b' is text-to-video and needs --prompt TEXT"),
    (["--prefill-seconds", "-1"], "--prefill-seconds: got -1.0"),
    (["--prefill-seconds", "0.5"], "--prefill-seconds: got 0.5; must cover at least one chunk"),
    (["--compile", "--memory", "full"], "--compile: needs a memory layout with a budget"),
    (["--compile", "--preset", "wan2.1-1.3b"], "--compile: not available with --preset wan2.1-1.3b"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_arguments_exit_2_with_one_line_and_no_output(tmp_path, capsys, extra, message):
    assert main(_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_and_wrong_suffix_outputs(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(_args(tmp_path, "--seconds", "1", "--out", str(tmp_path / "file" / "v.mp4"))) == 2
    assert "--out:" in capsys.readouterr().err
    assert main(_args(tmp_path, "--seconds", "1", "--out", str(tmp_path / "v.avi"))) == 2
    assert "--out: got" in capsys.readouterr().err
    assert main(_args(tmp_path, "--report", str(tmp_path))) == 2
    assert "--report:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_checkpoint_of_another_preset_is_rejected(tmp_path, capsys):
    run = get_preset("panworld")
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "step-000001", run,
                           CausalVideoDiT(run.model, run.text).state_dict())
    point_latest(tmp_path / "run", ckpt)
    assert main(_args(tmp_path, "--checkpoint", str(tmp_path / "run"))) == 2
    assert "made with preset 'panworld', not --preset 'tiny'" in capsys.readouterr().err


def test_generate_tiny_end_to_end_with_checkpoint(tmp_path, capsys):
    run = get_preset("tiny")
    torch.manual_seed(3)
    model = CausalVideoDiT(run.model, run.text)
    ckpt = save_checkpoint(tmp_path / "ckpt", run, model.state_dict())
    report_path = tmp_path / "r.json"
    code = main(_args(tmp_path, "--checkpoint", str(ckpt), "--batch", "2", "--scale", "2", "--seconds", "2.5",
                      "--report", str(report_path), "--memory", "sink3-slow3-fast6:uniform1"))
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["latent_frames"] == 10 and report["frames_written"] == 10 and report["chunks"] == 4
    assert report["max_slots"] == 10 and report["max_position"] == 11  # chunk 3: sink 3 + slow 1 + fast 3 + 3
    video = read_mp4(tmp_path / "v.mp4")
    assert video.shape == (10, 16, 32, 3)  # 2 samples side by side, scaled x2
    assert "random weights" not in capsys.readouterr().err


def test_side_by_side_shows_the_panworld_ground_truth(tmp_path):
    from context_forcing.data.episodes import ground_truth_pixels, panworld_episodes

    assert main(_args(tmp_path, "--seconds", "1.5", "--seed", "1000005", "--side-by-side",
                      "--batch", "2")) == 0
    video = read_mp4(tmp_path / "v.mp4")
    assert video.shape == (6, 8, 32, 3)  # per sample: generated | truth, samples side by side
    run = get_preset("tiny")
    episodes = panworld_episodes(run, 1000005, 2, 6)
    assert torch.equal(video[:, :, 8:16], ground_truth_pixels(run, episodes[0], 0, 6))
    assert torch.equal(video[:, :, 24:32], ground_truth_pixels(run, episodes[1], 0, 6))


def test_without_weights_or_a_shipped_model_it_asks_for_one(tmp_path, capsys):
    out = str(tmp_path / "v.mp4")
    assert main(["generate", "--preset", "tiny", "--seconds", "1", "--out", out]) == 2
    assert ("preset 'tiny' ships no trained model; pass --checkpoint DIR or --random-weights"
            in capsys.readouterr().err)
    assert main(["generate", "--preset", "tiny", "--seconds", "1", "--out", out, "--random-weights",
                 "--checkpoint", str(tmp_path)]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_prefill_commits_the_ground_truth_opening_and_the_report_names_the_weights(tmp_path, capsys):
    from context_forcing.data.episodes import ground_truth_pixels, panworld_episodes

    report = tmp_path / "r.json"
    assert main(_args(tmp_path, "--seconds", "1.5", "--seed", "1000007", "--prefill-seconds", "1.6",
                      "--report", str(report))) == 0
    video = read_mp4(tmp_path / "v.mp4")
    assert video.shape == (12, 8, 8, 3)  # 6 prefilled (1.6 s -> 6 frames, whole chunks) + 6 generated
    episode = panworld_episodes(get_preset("tiny"), 1000007, 1, 12)[0]  # the episode generate conditions on
    assert torch.equal(video[:6], ground_truth_pixels(get_preset("tiny"), episode, 0, 6))
    # random weights
    assert not torch.equal(video[6:], ground_truth_pixels(get_preset("tiny"), episode, 6, 12))
    data = json.loads(report.read_text())
    assert data["checkpoint"] == "random" and data["prefill_frames"] == 6 and data["latent_frames"] == 12
    assert "random weights" in capsys.readouterr().err


def test_console_script_exit_status(tmp_path):
    """The installed entry point and `python -m` both exit 2 on bad input, printing no traceback."""
    proc = subprocess.run([sys.executable, "-m", "context_forcing", *_args(tmp_path, "--seconds", "-1")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--seconds: got -1.0" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_streams_a_second_checkpoint_on_the_same_episode(tmp_path):
    from conftest import randomize

    run = get_preset("tiny")
    paths = {}
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        model = randomize(CausalVideoDiT(run.model, run.text), std=0.05)
        paths[name] = str(save_checkpoint(tmp_path / name, run, model.state_dict()))
    common = ["--seconds", "1.5", "--seed", "1000003", "--prefill-seconds", "0.75", "--batch", "2"]
    for name in ("a", "b"):  # each model alone
        assert main(_args(tmp_path, "--checkpoint", paths[name], *common,
                          "--out", str(tmp_path / f"{name}.mp4"))) == 0
    report = tmp_path / "r.json"
    assert main(_args(tmp_path, "--checkpoint", paths["a"], "--compare", paths["b"],
                      "--compare-memory", "window-6", "--side-by-side", *common,
                      "--out", str(tmp_path / "ab.mp4"), "--report", str(report))) == 0
    alone = {name: read_mp4(tmp_path / f"{name}.mp4") for name in ("a", "b")}
    both = read_mp4(tmp_path / "ab.mp4")
    assert both.shape == (9, 8, 48, 3)  # per sample: a | b | truth; 2 samples side by side
    assert (torch.equal(both[:, :, 0:8], alone["a"][:, :, 0:8])
            and torch.equal(both[:, :, 24:32], alone["a"][:, :, 8:16]))
    assert not torch.equal(both[3:, :, 0:8], both[3:, :, 8:16])  # different weights, different frames
    assert torch.equal(both[:3, :, 0:8], both[:3, :, 8:16])  # the shared opening
    data = json.loads(report.read_text())
    assert data["compare"]["checkpoint"] == paths["b"] and data["compare"]["memory"] == "window-6:bounded"
    assert data["checkpoint"] == paths["a"] and data["compare"]["latent_frames"] == data["latent_frames"] == 9


def test_compare_checks_its_checkpoint_before_any_work(tmp_path, capsys):
    run = get_preset("panworld")
    other = save_checkpoint(tmp_path / "pw", run, CausalVideoDiT(run.model, run.text).state_dict())
    out = tmp_path / "out"
    out.mkdir()
    assert main(_args(out, "--compare", str(other))) == 2
    err = capsys.readouterr().err
    assert "--compare:" in err and "made with preset 'panworld'" in err
    assert main(_args(out, "--compare-memory", "window-6")) == 2
    assert "--compare-memory: needs --compare" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_compile_reaches_the_session(tmp_path, monkeypatch):
    # no compiler: the session says so and streams eagerly (tests/model/test_compiled.py compiles for real)
    monkeypatch.setattr("context_forcing.model.compiled.compiler_available", lambda: False)
    with pytest.warns(UserWarning, match="compile requested but no C.. compiler"):
        assert main(_args(tmp_path, "--compile")) == 0
    assert (tmp_path / "v.mp4").exists()
