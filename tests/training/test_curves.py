"""`context-forcing curves`: metrics.jsonl of run directories -> one PNG;
bad input exits 2 before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from context_forcing.cli import main
from context_forcing.config import ConfigError
from context_forcing.training.curves import moving_mean, plot_curves, read_metrics, series


def _run(tmp_path, name: str, steps: int = 20):
    run = tmp_path / name
    run.mkdir()
    rows = [{"step": s, "time": 0.0, "loss": 1.0 / s,
             **({"probe_gap_closed": s / 100} if s % 10 == 0 else {})}
            for s in range(1, steps + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_series_picks_the_rows_that_log_a_key(tmp_path):
    rows = read_metrics(_run(tmp_path, "a"))
    steps, values = series(rows, "probe_gap_closed")
    assert steps.tolist() == [10.0, 20.0] and values.tolist() == [0.1, 0.2]
    np.testing.assert_allclose(moving_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


def test_plot_writes_a_png_and_names_missing_keys(tmp_path):
    runs = [str(_run(tmp_path, "a")), str(_run(tmp_path, "b", 30))]
    out = plot_curves(runs, ["loss", "probe_gap_closed"], tmp_path / "c.png", window=5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="no run logs"):
        plot_curves(runs, ["probe_nothing"], tmp_path / "d.png")


def test_cli_checks_before_work(tmp_path, capsys):
    run = str(_run(tmp_path, "a"))
    assert main(["curves", run, "--out", str(tmp_path / "c.jpg")]) == 2
    assert "--out: got" in capsys.readouterr().err
    assert main(["curves", str(tmp_path / "nothing"), "--out", str(tmp_path / "c.png")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert main(["curves", run, "--keys", "loss", "--out", str(tmp_path / "c.png")]) == 0
