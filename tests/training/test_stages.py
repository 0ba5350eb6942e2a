"""Every stage runs on `tiny`; stage-specific pieces (ODE grid, ERFT recycling, curriculum)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import randomize
from context_forcing.diffusion.schedule import student_sigmas
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.training.config import for_preset
from context_forcing.training.ode_stage import ode_grid
from context_forcing.training.registry import build_stage


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from context_forcing.presets import tiny

    run = tiny()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "ckpt"
    save_checkpoint(path, run, randomize(CausalVideoDiT(run.model, run.text), std=0.05).state_dict())
    return str(path)


@pytest.mark.parametrize("name", ["teacher", "ode-init", "stage1", "stage2"])
def test_stage_runs_and_changes_the_trained_network(run, teacher_dir, name):
    train = for_preset(name, "tiny")
    stage = build_stage(name, run, train, None, None if name == "teacher" else teacher_dir)
    trained = next(iter(stage.networks().values()))
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    metrics = [stage.train_step(i) for i in range(2)]
    assert all(math.isfinite(v) for m in metrics for v in m.values()) and "loss" in metrics[-1]
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    exported = stage.export_weights()
    assert set(exported) == set(trained.state_dict())  # a loadable model.safetensors


def test_students_start_from_the_teacher_and_distil_from_it(run, teacher_dir):
    stage = build_stage("stage1", run, for_preset("stage1", "tiny"), None, teacher_dir)
    teacher, generator, critic = stage.teacher, stage.generator, stage.critic
    for name, p in teacher.named_parameters():
        assert not p.requires_grad
        torch.testing.assert_close(generator.state_dict()[name], p.detach())
        torch.testing.assert_close(critic.state_dict()[name], p.detach())
    assert generator is not critic and generator is not teacher


def test_distillation_without_teacher_is_an_error(run):
    with pytest.raises(ValueError, match="--teacher"):
        build_stage("stage2", run, for_preset("stage2", "tiny"), None, None)


def test_teacher_recycles_errors_into_its_banks(run):
    stage = build_stage("teacher", run, for_preset("teacher", "tiny"), None, None)
    stage.train_step(0)
    state = stage.extra_state()["erft"]
    counts = sum(int(v.sum()) for k, v in state.items() if k.endswith(".counts"))
    assert counts > 0
    restored = build_stage("teacher", run, for_preset("teacher", "tiny"), None, None)
    restored.load_extra_state(stage.extra_state())
    assert all(torch.equal(restored.bank.state_dict()[k], v) for k, v in state.items())


def test_ode_grid_passes_through_every_student_level():
    levels = student_sigmas((1000.0, 750.0, 500.0, 250.0), 5.0)
    grid = ode_grid(levels, 16)
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid.diff() < 0).all())
    assert all(bool((grid == level).any()) for level in levels)
    assert len(grid) == 17


def test_teacher_banks_nothing_during_the_erft_warmup(run):
    from dataclasses import replace

    train = for_preset("teacher", "tiny")
    stage = build_stage("teacher", run, replace(train, erft=replace(train.erft, warmup_steps=2)), None, None)
    for step in range(2):
        metrics = stage.train_step(step)
        assert metrics["erft_bank_std"] == 0.0 and "erft_error_std" not in metrics
    metrics = stage.train_step(2)
    assert metrics["erft_bank_std"] > 0 and metrics["erft_error_std"] > 0


def test_teacher_targets_start_at_many_episode_frames(run):
    from context_forcing.training.randomness import DrawSites

    stage = build_stage("teacher", run, for_preset("teacher", "tiny"), None, None)
    sites = DrawSites(0, range(1))
    starts = set()
    for step in range(30):
        sites.start(step)
        history = stage._history_frames(sites.next())
        assert history % run.chunk == 0
        starts.add(history)
    assert len(starts) >= 4 and 0 in starts or len(starts) >= 5


@pytest.mark.parametrize("teacher_context", ["memory", "none"])
def test_stage2_teacher_context_is_the_memory_or_nothing(run, teacher_dir, teacher_context):
    from dataclasses import replace

    train = for_preset("stage2", "tiny")
    train = replace(train, dmd=replace(train.dmd, teacher_context=teacher_context))
    stage = build_stage("stage2", run, train, None, teacher_dir)
    stage.random.start(0)
    with torch.no_grad():
        roll, inputs = stage._rollout(0, grad=False, random=stage.random.next())
    assert roll.context is not None  # the curriculum's rollouts always have frames before the target
    expected = int(roll.context[1].sum(dim=1).max()) if teacher_context == "memory" else 0
    assert (int(inputs.context_valid.sum(dim=1).max()) == expected
            and inputs.num_target == train.curriculum.target)


def test_teacher_context_must_be_known():
    from context_forcing.training.config import DmdConfig

    with pytest.raises(ValueError, match="teacher_context"):
        DmdConfig(teacher_context="window")
