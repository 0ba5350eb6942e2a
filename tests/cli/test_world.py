"""`context-forcing world`: renders the episode exactly and reports its revisits; validates first."""

from __future__ import annotations

import json

import pytest
import torch

from context_forcing.cli import main
from context_forcing.data.panworld import PanWorldConfig, render_episode, sample_episode
from context_forcing.io.video import read_mp4


def test_world_renders_the_episode_and_reports_revisits(tmp_path):
    out, report, strip = tmp_path / "w.mp4", tmp_path / "w.json", tmp_path / "s.png"
    assert main(["world", "--seed", "1000001", "--seconds", "16", "--out", str(out), "--report", str(report),
                 "--filmstrip", str(strip)]) == 0
    assert strip.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frames = read_mp4(out)
    truth = torch.from_numpy(render_episode(sample_episode(PanWorldConfig(), 1000001, 64)))
    assert torch.equal(frames, truth)  # lossless
    data = json.loads(report.read_text())
    assert data["split"] == "eval" and data["frames"] == 64 and data["frames_written"] == 64
    counts = data["revisit_schedule"]["counts"]
    assert sum(b["all"] for b in counts.values()) == data["revisit_schedule"]["critical_columns"] > 0


@pytest.mark.parametrize("extra,message", [
    (["--seconds", "0"], "--seconds: got 0.0"),
    (["--seed", "-3"], "--seed: got -3"),
    (["--scale", "0"], "--scale: got 0"),
    (["--report", "r.txt"], "--report: got"),
])
def test_world_rejects_bad_arguments(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    args = ["world", "--seed", "1", "--seconds", "4", "--out", "w.mp4", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
