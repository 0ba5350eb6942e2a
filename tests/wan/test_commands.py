"""import-wan (Wan weights -> our checkpoint) and train-wan (a stage on prepared latents, resumable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from context_forcing.cli import main
from context_forcing.model.checkpoint import load_model
from context_forcing.model.wan_adapter import to_wan_original

from .conftest import TINY, tiny_transformer
from .test_prepare_data import fake_prepared


def test_import_wan_writes_our_checkpoint(wan_root, tmp_path, capsys) -> None:
    student, critic = tiny_transformer(21), tiny_transformer(22)
    torch.save(
        {
            "generator_ema": {
                f"model.{k}": v for k, v in to_wan_original(student.state_dict(), TINY).items()
            },
            "critic": to_wan_original(critic.state_dict(), TINY),
        },
        tmp_path / "model.pt",
    )
    for part, expected in (("auto", student), ("critic", critic)):
        out = tmp_path / part
        assert (
            main(
                [
                    "import-wan",
                    "--checkpoint",
                    str(tmp_path / "model.pt"),
                    "--wan-dir",
                    str(wan_root),
                    "--out",
                    str(out),
                    "--part",
                    part,
                ]
            )
            == 0
        )
        run, model = load_model(out)
        assert run.preset == "wan2.1-1.3b" and run.model == TINY
        assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.state_dict().items())
    assert (
        main(
            [
                "import-wan",
                "--checkpoint",
                str(tmp_path / "model.pt"),
                "--out",
                str(tmp_path / "x"),
                "--part",
                "ema",
            ]
        )
        == 2
    )
    assert "--part: got 'ema'; allowed: auto, generator_ema, generator, critic" in capsys.readouterr().err
    assert main(["import-wan", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "x")]) == 2
    assert (
        "--checkpoint:" in capsys.readouterr().err and not (tmp_path / "x").exists()
    )  # 1.3B sizes: keys fit, shapes not


def test_train_on_prepared_trains_and_resumes(tmp_path) -> None:
    from context_forcing.presets import get_preset
    from context_forcing.training.config import for_preset
    from context_forcing.training.loop import TrainRequest
    from context_forcing.wan.train_command import train_on_prepared

    fake_prepared(tmp_path / "data")
    wan = get_preset("wan2.1-1.3b")
    run = replace(wan, model=TINY, video=replace(wan.video, latent_height=4, latent_width=4))
    train = replace(for_preset("teacher", "tiny"), steps=2, checkpoint_every=1)
    request = TrainRequest(run=run, train=train, run_dir=tmp_path / "run")
    assert train_on_prepared(request, tmp_path / "data") == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    assert (
        train_on_prepared(replace(request, train=replace(train, steps=3)), tmp_path / "data") == 0
    )  # resumes
    assert [
        json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ] == [1, 2, 3]


def test_train_wan_validates_before_work(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "train-wan",
                "--data",
                str(tmp_path),
                "--",
                "teacher",
                "--preset",
                "wan2.1-1.3b",
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "--data:" in capsys.readouterr().err
    fake_prepared(tmp_path / "data")
    assert (
        main(
            [
                "train-wan",
                "--data",
                str(tmp_path / "data"),
                "--",
                "teacher",
                "--preset",
                "tiny",
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "does not take umT5 prompts" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _launch(data: Path, run_dir: Path, processes: int, precision: str) -> None:
    """torchrun (or one process) over a global batch of 2; gloo may abort at teardown after a complete run
    (see tests/training/test_distributed.py), so a run is judged by its outputs and retried once."""
    script = Path(__file__).with_name("torchrun_train_wan.py")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), str(script), str(data), str(run_dir),
               str(2 // processes), precision]
    for _ in range(2):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if (run_dir / "checkpoints" / "step-000002" / "model.safetensors").is_file():
            return
    raise AssertionError(f"{processes}-process run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@pytest.mark.slow
def test_train_wan_under_torchrun_fsdp2_equals_one_process(tmp_path) -> None:
    """2 processes x batch 1 (FSDP2 on gloo, each reading its slice of the prepared data) == 1 process x
    batch 2; bf16 mixed precision runs too."""
    from safetensors.torch import load_file

    fake_prepared(tmp_path / "data")
    _launch(tmp_path / "data", tmp_path / "one", 1, "fp32")
    _launch(tmp_path / "data", tmp_path / "two", 2, "fp32")
    losses = [[json.loads(line)["loss"] for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
              for r in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    one, two = (load_file(str(tmp_path / r / "checkpoints" / "step-000002" / "model.safetensors"))
                for r in ("one", "two"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=0)
    _launch(tmp_path / "data", tmp_path / "bf16", 2, "bf16")
