"""Resume after a hard kill: `context-forcing train` killed with SIGKILL and run again ends where an
uninterrupted run ends, and leftovers of the kill (half-written checkpoint, stray metric rows) do not break
it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from test_loop import DummyStage, assert_same_run, dummy_train, rows_without_time

from context_forcing.cli import main
from context_forcing.model.checkpoint import CheckpointError
from context_forcing.presets import tiny
from context_forcing.training.loop import run_training

HERE = Path(__file__).parent

# The child runs the real CLI with the stage registry replaced by the dummy stage (slowed by DUMMY_DELAY).
CHILD = f"""
import os, sys, types
sys.path.insert(0, {str(HERE)!r})
from test_loop import DummyStage
registry = types.ModuleType("context_forcing.training.registry")
registry.build_stage = lambda name, run, train, init, teacher, device: DummyStage(
    train, delay=float(os.environ.get("DUMMY_DELAY", "0")))
sys.modules[registry.__name__] = registry
from context_forcing.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def cli_args(run_dir: Path) -> list[str]:
    return ["train", "stage1", "--preset", "tiny", "--run-dir", str(run_dir), "--steps", "6",
            "--checkpoint-every", "2", "--set", "seed=7", "--threads", "1"]


def fake_registry(monkeypatch) -> None:
    registry = types.ModuleType("context_forcing.training.registry")
    registry.build_stage = lambda name, run, train, init, teacher, device: DummyStage(train)
    monkeypatch.setitem(sys.modules, registry.__name__, registry)


def test_sigkill_at_a_checkpoint_then_rerun_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    fake_registry(monkeypatch)
    assert main(cli_args(tmp_path / "whole")) == 0

    run_dir = tmp_path / "killed"
    env = {**os.environ, "DUMMY_DELAY": "0.15"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, *cli_args(run_dir)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run_dir / "latest").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = json.loads((run_dir / "checkpoints" / "step-000002" / "training_state" / "loop.json").read_text())
    assert done["step"] == 2
    step = int((run_dir / "latest").read_text().strip()[-6:])
    assert step < 6

    rerun = subprocess.run([sys.executable, "-c", CHILD, *cli_args(run_dir)], capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed from step {step}" in rerun.stderr
    assert_same_run(tmp_path / "whole", run_dir)


def test_half_written_checkpoint_and_stray_rows_do_not_break_resume(tmp_path, capsys):
    run_training(tmp_path / "whole", tiny(), dummy_train(6, 2), DummyStage(dummy_train(6, 2)), progress=False)
    run_dir = tmp_path / "cut"
    run_training(run_dir, tiny(), dummy_train(2, 2), DummyStage(dummy_train(2, 2)), progress=False)
    kept = (run_dir / "metrics.jsonl").read_bytes()
    # what a SIGKILL while writing step 4 leaves: a temporary checkpoint, rows past step 2, a torn row,
    # temporary files
    garbage = run_dir / "checkpoints" / ".step-000004.tmp-123"
    (garbage / "training_state").mkdir(parents=True)
    (garbage / "model.safetensors").write_bytes(b"\0" * 10)
    (run_dir / ".latest.tmp-123").write_text("checkpoints/.step-000004.tmp-123\n")
    with open(run_dir / "metrics.jsonl", "ab") as log:
        log.write(b'{"step": 3, "time": 0.0, "loss": 42.0}\n{"step": 4, "time": 0.0, "lo')
    capsys.readouterr()
    run_training(run_dir, tiny(), dummy_train(6, 2), DummyStage(dummy_train(6, 2)), progress=False)
    assert "resumed from step 2" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_bytes().startswith(kept)
    assert not garbage.exists() and not (run_dir / ".latest.tmp-123").exists()
    assert_same_run(tmp_path / "whole", run_dir)
    assert [row["step"] for row in rows_without_time(run_dir)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("broken", ["loop.json", "network.generator.safetensors", "optimizer.generator.pt"])
def test_a_damaged_training_state_is_a_clear_error(tmp_path, broken):
    run_training(tmp_path, tiny(), dummy_train(2, 2), DummyStage(dummy_train(2, 2)), progress=False)
    (tmp_path / "checkpoints" / "step-000002" / "training_state" / broken).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="step-000002"):
        run_training(tmp_path, tiny(), dummy_train(4, 2), DummyStage(dummy_train(4, 2)), progress=False)
