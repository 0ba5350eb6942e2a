"""probe-teacher: memory-shaped context frames, the copy baselines, the figures, the command."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from conftest import randomize
from context_forcing.cli import main
from context_forcing.config import ConfigError
from context_forcing.eval.teacher_probe import build_probe_set, memory_frames, probe_teacher
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import panworld


def _small_panworld():
    """PanWorld geometry (32x32, world-column positions) with a tiny network: 4x4 patches, width 48."""
    run = panworld()
    model = dataclasses.replace(run.model, patch=(1, 4, 4), dim=48, heads=2, layers=1, ffn_dim=48)
    return dataclasses.replace(run, model=model)


def test_memory_frames_are_sink_slow_fast_in_time_order():
    frames = memory_frames(90)
    assert frames[:3] == [0, 1, 2] and frames[-6:] == list(range(84, 90))
    slow = frames[3:-6]
    assert (len(slow) == 12 and slow == sorted(slow) and slow[-1] == 83
            and all(b - a == 6 for a, b in zip(slow, slow[1:])))
    # fewer slow frames when history is short
    assert memory_frames(20) == [0, 1, 2, 7, 13] + list(range(14, 20))
    with pytest.raises(ConfigError, match="history"):
        memory_frames(8)
    # a sink + window: the last 18 frames, no slow part
    assert memory_frames(90, 3, 0, 18) == [0, 1, 2] + list(range(72, 90))
    with pytest.raises(ConfigError, match="at least one frame"):
        memory_frames(90, 0, 0, 0)


def test_oracle_copy_beats_copying_the_last_frame_on_eval_episodes():
    probe = build_probe_set(_small_panworld(), episodes=6)
    assert probe.context.shape[:2] == (6, 21) and probe.target.shape[:2] == (6, 3)
    oracle = (probe.oracle_copy - probe.target).abs().mean()
    last = (probe.copy_last - probe.target).abs().mean()
    assert oracle < last  # the context holds columns the last frame does not
    window = build_probe_set(_small_panworld(), episodes=6, shape=(3, 0, 18))
    assert window.context.shape[:2] == (6, 21) and torch.equal(window.target, probe.target)
    assert torch.equal(window.context[:, -6:], probe.context[:, -6:])  # the same last frames
    assert not torch.equal(window.context, probe.context)


def test_a_model_blind_to_context_scores_the_same_with_and_without_it():
    run = _small_panworld()
    torch.manual_seed(0)
    model = randomize(CausalVideoDiT(run.model, run.text), std=0.05)
    probe = build_probe_set(run, episodes=2)
    seeing = probe_teacher(model, run, probe, sample_steps=2)
    assert seeing["x0_error_context"] != pytest.approx(seeing["x0_error_empty"], abs=1e-3)
    for block in model.blocks:  # zero the self-attention output: no token can read another frame
        torch.nn.init.zeros_(block.self_attn.o.weight)
        torch.nn.init.zeros_(block.self_attn.o.bias)
    blind = probe_teacher(model, run, probe, sample_steps=0)
    assert blind["x0_error_context"] == pytest.approx(blind["x0_error_empty"], abs=1e-4)
    span = blind["copy_last"] - blind["oracle_copy"]
    assert blind["gap_closed"] == pytest.approx((blind["copy_last"] - blind["x0_error_context"]) / span)
    assert "sample_sharpness_ratio" in seeing and "sample_sharpness_ratio" not in blind


def test_probe_rejects_other_frame_sizes(run):
    with pytest.raises(ConfigError, match="PanWorld-size latents"):
        build_probe_set(run, episodes=1)


def test_probe_teacher_command(tmp_path, capsys):
    run = _small_panworld()
    ckpt = save_checkpoint(tmp_path / "t", run, CausalVideoDiT(run.model, run.text).state_dict())
    report = tmp_path / "p.json"
    assert main(["probe-teacher", str(ckpt), "--episodes", "2", "--sample-steps", "1",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    for key in ("x0_error_context", "x0_error_empty", "copy_last", "oracle_copy", "gap_closed",
                "sample_sharpness_ratio", "x0_error_s0.1", "input_error_s0.1"):
        assert key in data
    assert data["context"] == {"sink": 3, "slow": 12, "fast": 6}
    assert main(["probe-teacher", str(ckpt), "--episodes", "1", "--sample-steps", "0", "--context", "3,0,18",
                 "--report", str(report)]) == 0
    assert json.loads(report.read_text())["context"] == {"sink": 3, "slow": 0, "fast": 18}
    assert main(["probe-teacher", str(ckpt), "--guidance", "-1"]) == 2
    assert "--guidance: got -1.0" in capsys.readouterr().err
    for bad in ("3,12", "3,-1,6", "0,0,0", "a,b,c"):
        assert main(["probe-teacher", str(ckpt), "--context", bad]) == 2
        assert f"--context: got {bad!r}" in capsys.readouterr().err
    assert main(["probe-teacher", str(ckpt), "--episodes", "0"]) == 2
    assert "--episodes: got 0" in capsys.readouterr().err
    assert main(["probe-teacher", str(ckpt), "--levels", "0.1,1.5"]) == 2
    assert "--levels: got '0.1,1.5'" in capsys.readouterr().err
    assert main(["probe-teacher", str(tmp_path / "missing")]) == 2
    assert "CHECKPOINT:" in capsys.readouterr().err


def test_a_model_that_removes_no_noise_scores_its_input_error_at_low_noise():
    run = _small_panworld()
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, prediction="velocity"))
    model = CausalVideoDiT(run.model, run.text)  # velocity head initialised to zero: x0 = x_s - s * 0 = x_s
    figures = probe_teacher(model, run, build_probe_set(run, episodes=2), sample_steps=0, levels=(0.1, 0.3))
    assert figures["x0_error_s0.1"] == pytest.approx(figures["input_error_s0.1"], rel=1e-6)
    assert figures["input_error_s0.3"] > figures["input_error_s0.1"] > 0
