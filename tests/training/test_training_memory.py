"""The run's memory layout (`train --memory`, RunConfig `memory.layout`) reaches the DMD stages' student
rollouts, every option of it, and `memory.admit_kv = first_pass` is honoured there as in streaming."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from conftest import make_cond, randomize
from context_forcing.config import MemoryConfig
from context_forcing.memory.layout import parse_layout, run_layout
from context_forcing.memory.slow_fast import SlowFastMemory
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import tiny
from context_forcing.rollout.training_rollout import student_rollout
from context_forcing.training.config import CurriculumConfig, for_preset
from context_forcing.training.dmd_stage import DmdStage


class Prompts:
    """Conditioning only (the DMD stages need no video): random prompts, actions and poses."""

    def __init__(self, run, batch: int) -> None:
        self.run, self.batch, self.step = run, batch, 0

    def next_conditioning(self, frames: int):
        self.step += 1
        return make_cond(self.run, self.batch, frames, seed=self.step)

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state) -> None:
        self.step = state["step"]


def _stage(layout: str, frames: int) -> DmdStage:
    """A Stage 2 on `tiny` whose rollouts are `frames` long (target: the last 6), with the given memory."""
    run = replace(tiny(), memory=MemoryConfig(layout=layout))
    train = replace(for_preset("stage2", "tiny"), batch=2,
                    curriculum=CurriculumConfig(n_min=frames, n_max_start=frames, n_max_end=frames, target=6))
    torch.manual_seed(0)
    model = randomize(CausalVideoDiT(run.model, run.text), std=0.05)
    return DmdStage("stage2", run, train, run_layout(run), model, copy.deepcopy(model), copy.deepcopy(model),
                    Prompts(run, 2))


def _rollout(stage: DmdStage):
    stage.random.start(0)
    with torch.no_grad():
        roll, _ = stage._rollout(0, grad=False, random=stage.random.next())
    return roll


def _chunk_positions(stage: DmdStage, monkeypatch) -> tuple[list[float], list[float]]:
    """Record the temporal positions of every chunk step's chunk and of its context during one
    `train_step`."""
    chunk, context = [], []
    stage.generator.register_forward_pre_hook(lambda module, args: chunk.append(float(args[3].max())))
    prepare = stage.generator.prepare_context

    def recording(keys, values, temporal, *rest, **options):
        context.append(float(temporal.max()))
        return prepare(keys, values, temporal, *rest, **options)

    monkeypatch.setattr(stage.generator, "prepare_context", recording)
    stage.train_step(0)
    return chunk, context


@pytest.mark.parametrize("layout,bounded", [("window-21:absolute", False), ("window-21:bounded", True)])
def test_positions_follow_the_layouts_position_scheme(layout, bounded, monkeypatch):
    stage = _stage(layout, frames=27)
    assert stage.layout == parse_layout(layout, 3)
    chunk, context = _chunk_positions(stage, monkeypatch)
    assert chunk and context
    if bounded:  # anchored: every position lies in [0, budget - 1] however long the rollout
        assert max(chunk) == 20 and max(context) <= 20
    else:  # absolute frame indices: the 9th chunk sits at 24..26
        assert max(chunk) == 26 and max(context) > 20


def test_uniform_admission_admits_every_kth_candidate(monkeypatch):
    events = []  # every admission event of the rollout, as commit returns them
    commit = SlowFastMemory.commit

    def recording(self, *args, **kwargs):
        chunk_events = commit(self, *args, **kwargs)
        events.extend(chunk_events)
        return chunk_events

    monkeypatch.setattr(SlowFastMemory, "commit", recording)
    roll = _rollout(_stage("sink3-slow12-fast6:uniform4", frames=48))  # the 16th chunk is not committed
    for b in range(2):
        decisions = [e.admitted for e in events if e.sample == b]
        assert decisions == [i % 4 == 0 for i in range(13)]  # candidates: chunks 1..13 as they leave fast
        assert roll.memory.tables[b].slow == (3, 15, 27, 39)  # the first frame of chunks 1, 5, 9, 13


@pytest.mark.parametrize("layout,slow", [("sink3-slow12-fast6:uniform4:admit-all", (3, 4, 5, 15, 16, 17)),
                                         ("sink3-slow12-fast6:none", ())])
def test_admission_options_reach_the_rollout(layout, slow):
    roll = _rollout(_stage(layout, frames=30))
    assert [table.slow for table in roll.memory.tables] == [slow, slow]


@pytest.mark.parametrize("layout", ["full", "sink3-window18",
                                    "sink3-slow12-fast6:similarity0.9:ref-last-admitted",
                                    "sink3-slow6-fast6:similarity:ref-previous:admit-first:absolute"])
def test_every_layout_builds_the_rollouts_memory(layout):
    roll = _rollout(_stage(layout, frames=24))
    assert roll.memory.layout == parse_layout(layout, 3)
    assert roll.latents.shape[1] == 24 and torch.isfinite(roll.latents).all()


def _first_pass_rollout(admit_kv: str):
    """A 5-chunk rollout (sink3-slow3-fast6:uniform1) and the K/V of every denoising pass that
    returned K/V."""
    run = replace(tiny(), memory=MemoryConfig(layout="sink3-slow3-fast6:uniform1", admit_kv=admit_kv))
    torch.manual_seed(0)
    model = randomize(CausalVideoDiT(run.model, run.text), std=0.05)
    captured = []

    def hook(module, args, kwargs, out):
        if out.kv is not None and float(args[1].min()) > 0:  # K/V at a noise level: not the commit pass
            # (layers, B, c, Lf, H, hd)
            captured.append(torch.stack([k for k, _ in out.kv]).unflatten(2, (3, -1)))

    model.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        roll = student_rollout(model, run, run_layout(run), make_cond(run, 2, 15), 15,
                               torch.Generator().manual_seed(0), grad=False)
    return roll, captured


def test_first_pass_admission_stores_the_first_denoising_pass_in_slow_memory():
    """memory.admit_kv = first_pass: each admitted frame keeps the K/V of its chunk's first denoising pass."""
    clean, none_captured = _first_pass_rollout("clean")
    first, passes = _first_pass_rollout("first_pass")
    assert none_captured == [] and len(passes) == 5  # one first pass per chunk
    # frames 3, 6, 9 (first frames of chunks 1, 2, 3) were admitted as their chunks left fast
    assert [t.slow for t in first.memory.tables] == [(3, 6, 9)] * 2 == [t.slow for t in clean.memory.tables]
    for b in range(2):
        for frame in (3, 6, 9):
            stored = first.memory.store.keys[:, b, first.memory.samples[b].slots[frame]]
            torch.testing.assert_close(stored, passes[frame // 3][:, b, 0], rtol=0, atol=0)
        # the clean memory holds the commit pass's K/V of the same frame 3 instead
        clean_keys = clean.memory.store.keys[:, b, clean.memory.samples[b].slots[3]]
        assert not torch.allclose(clean_keys, passes[1][:, b, 0])
    # identical until a chunk attends to a slow frame (chunk 3 = frames 9..11)
    torch.testing.assert_close(first.latents[:, :9], clean.latents[:, :9], rtol=0, atol=0)
    assert not torch.allclose(first.latents[:, 9:], clean.latents[:, 9:])
