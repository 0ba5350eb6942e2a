"""Checkpoint directories: round trip, run directories, atomicity, mismatches."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import make_cond, make_latents
from context_forcing.model.checkpoint import (
    CheckpointError,
    load_model,
    point_latest,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from context_forcing.model.dit import CausalVideoDiT


def test_round_trip_rebuilds_the_same_model(tmp_path, run, model):
    ckpt = save_checkpoint(tmp_path / "c", run, model.state_dict())
    run2, model2 = load_model(ckpt)
    assert run2 == run
    cond = make_cond(run, 1, 3)
    x, t, pos = make_latents(run, 1, 3), torch.full((1, 3), 500.0), torch.arange(3.0)[None]
    with torch.no_grad():
        a = model(x, t, model.encode_prompt(cond), pos, cond).velocity
        b = model2(x, t, model2.encode_prompt(cond), pos, cond).velocity
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_run_directory_resolves_to_latest(tmp_path, run, model):
    first = save_checkpoint(tmp_path / "checkpoints" / "step-000001", run, model.state_dict())
    second = save_checkpoint(tmp_path / "checkpoints" / "step-000002", run, model.state_dict())
    point_latest(tmp_path, first)
    assert resolve_checkpoint(tmp_path) == first
    point_latest(tmp_path, second)
    assert resolve_checkpoint(tmp_path) == second and read_config(tmp_path) == run


def test_crash_while_saving_leaves_no_checkpoint(tmp_path, run, model):
    def boom(_):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "c", run, model.state_dict(), write_extra=boom)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_mismatched_weights(tmp_path, run, model):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        resolve_checkpoint(tmp_path)
    ckpt = save_checkpoint(tmp_path / "c", run, model.state_dict())
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["dim"] = 64
    config["model"]["ffn_dim"] = 128
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_model(ckpt)


def test_unknown_config_keys_are_rejected(tmp_path, run, model):
    ckpt = save_checkpoint(tmp_path / "c", run, model.state_dict())
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["bogus"] = 1
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown model config keys"):
        read_config(ckpt)


def test_model_is_rebuilt_from_config_alone(tmp_path, run):
    torch.manual_seed(1)
    ckpt = save_checkpoint(tmp_path / "c", run, CausalVideoDiT(run.model, run.text).state_dict())
    assert isinstance(load_model(ckpt)[1], CausalVideoDiT)
