"""`context-forcing train`: every flag validated before any work (one line, exit 2, nothing created);
resuming an existing run only with the same configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from context_forcing.cli import main
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.presets import get_preset


class TinyStage:
    """The least a stage needs: one linear layer fitted to torch.randn data."""

    name = "tiny"

    def __init__(self) -> None:
        self.net = nn.Linear(2, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)

    def networks(self):
        return {"generator": self.net}

    def optimizers(self):
        return {"generator": self.opt}

    def train_step(self, step: int) -> dict[str, float]:
        x = torch.randn(4, 2)
        loss = (self.net(x) - x.sum(1, keepdim=True)).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def export_weights(self):
        return self.net.state_dict()

    def extra_state(self):
        return {}

    def load_extra_state(self, state) -> None:
        pass


@pytest.fixture
def registry(monkeypatch):
    """Replace the stage registry; records the calls."""
    calls = []
    module = types.ModuleType("context_forcing.training.registry")

    def build_stage(name, run, train, init, teacher, device):
        calls.append((name, run.preset, train, init, teacher))
        return TinyStage()

    module.build_stage = build_stage
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return calls


def _args(run_dir, *extra, stage="teacher"):
    return ["train", stage, "--preset", "tiny", "--run-dir", str(run_dir), "--steps", "2", "--threads", "1",
            *extra]


def _snapshot(directory):
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _checkpoint(tmp_path, preset: str):
    return save_checkpoint(tmp_path / preset / "step-000001", get_preset(preset), {"w": torch.zeros(1)})


BAD = [
    ([], "stage3", "STAGE: got 'stage3'; allowed: teacher, ode-init, stage1, stage2"),
    (["--preset", "huge"], "teacher", "--preset: got 'huge'; allowed: tiny, panworld, wan2.1-1.3b"),
    (["--set", "nope=1"], "teacher", "--set nope: unknown key 'nope'"),
    (["--set", "generator.lr=fast"], "teacher", "--set generator.lr: cannot read 'fast' as float"),
    (["--set", "generator.lr=-1"], "teacher", "--set: optim.lr must be > 0"),
    (["--set", "steps"], "teacher", "--set expects key=value"),
    (["--set", "stage=stage2"], "teacher", "--set stage: the stage is the STAGE argument"),
    (["--steps", "0"], "teacher", "--steps: got 0"),
    (["--checkpoint-every", "0"], "teacher", "--checkpoint-every: got 0"),
    (["--threads", "0"], "teacher", "--threads: got 0"),
    (["--init", "/nonexistent/ckpt"], "teacher", "--init: /nonexistent/ckpt: no such checkpoint or run"),
    (["--teacher", "/nonexistent/ckpt"], "stage1", "--teacher: /nonexistent/ckpt: no such checkpoint"),
    (["--memory", "window-20"], "stage1", "--memory: bad memory layout 'window-20' (chunk 3)"),
    (["--memory", "sink3-window18:uniform4"], "stage2", "needs a layout with a slow part"),
    (["--memory", "window-21"], "teacher", "--memory: the teacher does not stream with a memory"),
    (["--model", "width=64"], "teacher", "--model width: unknown key 'width'"),
    (["--model", "patch=1,4"], "teacher", "--model patch: expected 3 comma-separated values"),
    (["--model", "patch=1,3,4"], "teacher", "--model: "),  # 3 does not divide the 8-row latents
    (["--model", "dim"], "teacher", "--model expects key=value"),
]


@pytest.mark.parametrize("extra,stage,message", BAD)
def test_bad_arguments_exit_2_with_one_line_and_nothing_created(tmp_path, capsys, registry, extra, stage,
                                                                 message):
    assert main(_args(tmp_path / "run", *extra, stage=stage)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [] and registry == []


def test_checkpoints_of_another_preset_are_rejected(tmp_path, capsys, registry):
    other = _checkpoint(tmp_path, "panworld")
    for flag in ("--init", "--teacher"):
        assert main(_args(tmp_path / "run", flag, str(other), stage="stage1")) == 2
        err = capsys.readouterr().err
        assert f"{flag}: '{other}' was made with preset 'panworld', not --preset 'tiny'" in err
        assert err.count("\n") == 1
    assert not (tmp_path / "run").exists() and registry == []


def test_run_dir_that_is_a_file_is_rejected(tmp_path, capsys, registry):
    (tmp_path / "file").write_text("x")
    assert main(_args(tmp_path / "file")) == 2
    err = capsys.readouterr().err
    assert err.startswith("context-forcing train: error: --run-dir:") and err.count("\n") == 1
    assert registry == []


def test_train_resume_and_complete(tmp_path, capsys, registry):
    ckpt = _checkpoint(tmp_path, "tiny")
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, "--teacher", str(ckpt), "--set", "generator.lr=0.001", stage="stage1")) == 0
    name, preset, train, init, teacher = registry[-1]
    assert (name, preset, init, teacher) == ("stage1", "tiny", None, str(ckpt))
    assert train.generator.lr == 0.001 and train.steps == 2 and train.stage == "stage1"
    assert [json.loads(r)["step"] for r in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-000002"
    capsys.readouterr()

    # same command: complete, nothing touched
    files = _snapshot(run_dir)
    assert main(_args(run_dir, "--teacher", str(ckpt), "--set", "generator.lr=0.001", stage="stage1")) == 0
    assert "run complete: step 2 of 2" in capsys.readouterr().err
    assert _snapshot(run_dir) == files

    # more steps: resumed
    assert main(_args(run_dir, "--teacher", str(ckpt), "--set", "generator.lr=0.001", "--steps", "3",
                      stage="stage1")) == 0
    assert "resumed from step 2" in capsys.readouterr().err
    assert json.loads((run_dir / "train_config.json").read_text())["steps"] == 3


def test_resume_with_a_different_config_is_rejected_naming_the_keys(tmp_path, capsys, registry):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir)) == 0
    files, calls = _snapshot(run_dir), len(registry)
    capsys.readouterr()
    assert main(_args(run_dir, "--set", "generator.lr=0.5", "--checkpoint-every", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different config" in err
    assert "generator.lr (saved 0.0003, now 0.5)" in err and "checkpoint_every" in err
    assert " steps " not in err
    assert main(["train", "teacher", "--preset", "panworld", "--run-dir", str(run_dir), "--steps", "2"]) == 2
    assert "config.json model.dim (saved 48, now 384)" in capsys.readouterr().err
    assert main(_args(run_dir, stage="stage1")) == 2  # another stage in the same run directory
    assert "train_config.json stage (saved 'teacher', now 'stage1')" in capsys.readouterr().err
    assert main([*_args(run_dir), "--steps", "1"]) == 2  # a run cannot shrink below its checkpoint
    assert "--steps: got 1;" in capsys.readouterr().err
    assert _snapshot(run_dir) == files and len(registry) == calls


def test_memory_flag_is_recorded_in_config_json_and_checkpoints(tmp_path, registry):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, "--memory", "sink3-slow12-fast6:uniform4", stage="stage2")) == 0
    canonical = "sink3-slow12-fast6:uniform4:bounded"
    assert json.loads((run_dir / "config.json").read_text())["memory"]["layout"] == canonical
    checkpoint = run_dir / "checkpoints" / "step-000002" / "config.json"
    assert json.loads(checkpoint.read_text())["memory"]["layout"] == canonical
    # the same layout under another spelling resumes (the canonical name is what is compared)
    assert main(_args(run_dir, "--memory", "sink3-slow12-fast6:bounded:uniform4", "--steps", "3",
                      stage="stage2")) == 0
    assert json.loads((run_dir / "train_config.json").read_text())["steps"] == 3


def test_model_flag_is_recorded_and_must_be_given_again_to_resume(tmp_path, capsys, registry):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, "--model", "patch=1,2,4", "--model", "layers=1")) == 0
    model = json.loads((run_dir / "config.json").read_text())["model"]
    assert model["patch"] == [1, 2, 4] and model["layers"] == 1
    assert registry[-1][1] == "tiny"
    assert main(_args(run_dir, "--model", "patch=1,2,4", "--model", "layers=1", "--steps", "3")) == 0
    capsys.readouterr()
    assert main(_args(run_dir, "--steps", "4")) == 2  # the preset's model is another config
    assert "config.json model.layers (saved 1, now 2)" in capsys.readouterr().err


def test_resume_with_a_different_memory_is_rejected_naming_memory_layout(tmp_path, capsys, registry):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, "--memory", "window-21:absolute", stage="stage1")) == 0
    files, calls = _snapshot(run_dir), len(registry)
    capsys.readouterr()
    for other in (["--memory", "window-21:bounded"], []):  # another layout, or the preset's default
        assert main(_args(run_dir, *other, "--steps", "3", stage="stage1")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "config.json memory.layout (saved 'window-21:absolute', now '" in err
    assert _snapshot(run_dir) == files and len(registry) == calls


def test_help_through_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "context_forcing", "train", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "STAGE" in out.stdout and "--run-dir" in out.stdout
