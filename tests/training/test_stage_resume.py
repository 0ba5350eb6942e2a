"""Real stages resume exactly: 2 updates, then 2 more after a restart, equal 4 straight updates."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import randomize
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import tiny
from context_forcing.training.config import for_preset
from context_forcing.training.loop import run_training, seed_everything
from context_forcing.training.registry import build_stage


def _run(run_dir, name, steps, teacher):
    run = tiny()
    train = dataclasses.replace(for_preset(name, "tiny"), steps=steps)
    seed_everything(train.seed)
    stage = build_stage(name, run, train, None, teacher)
    run_training(run_dir, run, train, stage, progress=False)


@pytest.mark.parametrize("name", ["teacher", "ode-init", "stage2"])
def test_resumed_stage_matches_an_uninterrupted_one(tmp_path, name):
    run = tiny()
    torch.manual_seed(0)
    teacher = None
    if name != "teacher":
        teacher = str(save_checkpoint(tmp_path / "teacher", run,
                                      randomize(CausalVideoDiT(run.model, run.text), std=0.05).state_dict()))
    _run(tmp_path / "straight", name, 4, teacher)
    _run(tmp_path / "resumed", name, 2, teacher)
    _run(tmp_path / "resumed", name, 4, teacher)  # a new process would do the same: rebuild, load, continue
    for path in ("model.safetensors", "training_state/extra.safetensors"):
        a = load_file(str(tmp_path / "straight" / "checkpoints" / "step-000004" / path))
        b = load_file(str(tmp_path / "resumed" / "checkpoints" / "step-000004" / path))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    rows = [[{k: v for k, v in json.loads(line).items() if k != "time"}
             for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("straight", "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 4
