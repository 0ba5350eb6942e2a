"""ODE init trains the student in distribution: its context is the streaming memory's (bounded positions,
at most the budget), built exactly as a `StreamingSession` builds it; the teacher's Euler grid gives every
interval between student levels (and the last one, down to 0) at least two steps."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_cond, make_latents, randomize
from context_forcing.diffusion.schedule import student_sigmas
from context_forcing.memory.layout import parse_layout, run_layout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.session import StreamingSession
from context_forcing.training import ode_stage
from context_forcing.training.config import for_preset
from context_forcing.training.ode_stage import OdeInitStage, ode_grid


class Clips:
    """Random clips with PanWorld-like conditioning (no rendering); records what it served."""

    def __init__(self, run, batch: int) -> None:
        self.run, self.batch, self.step, self.served = run, batch, 0, []

    def next_clip(self, frames: int):
        clip = (make_latents(self.run, self.batch, frames, self.step),
                make_cond(self.run, self.batch, frames, self.step))
        self.step += 1
        self.served.append(clip)
        return clip

    def next_conditioning(self, frames: int):
        return self.next_clip(frames)[1]

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


def _long_history_stage(run, seed: int = 0) -> OdeInitStage:
    """ODE init at `tiny` with the paper's context sizes and 21-frame targets: the teacher's sequence reaches
    position 41, twice what bounded streaming ever uses."""
    train = for_preset("ode-init", "tiny")
    train = replace(train, rollout_frames=21, seed=seed,
                    context=replace(train.context, max_slow=12, max_fast=6, p_empty=0.0))
    torch.manual_seed(0)
    teacher = randomize(CausalVideoDiT(run.model, run.text), std=0.05)
    return OdeInitStage(run, train, run_layout(run), copy.deepcopy(teacher), teacher, Clips(run, train.batch))


def _record_forwards(model: torch.nn.Module) -> tuple[list[dict], torch.utils.hooks.RemovableHandle]:
    """Every forward call's frames, temporal positions, conditioning, context and whether it returned K/V."""
    calls: list[dict] = []

    def hook(module, args, kwargs):
        calls.append({"frames": args[0].shape[1], "temporal": args[3].detach().clone(), "cond": args[4],
                      "context": kwargs.get("context"), "commit": bool(kwargs.get("return_kv", False))})

    return calls, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_student_positions_and_context_stay_within_the_streaming_budget(run):
    layout = parse_layout(run.memory.layout, run.chunk)
    budget, lf = layout.budget, run.tokens_per_frame
    assert (budget, layout.chunk) == (21, 3)  # sink3-slow12-fast6
    stage = _long_history_stage(run, seed=11)  # step 0: 69 history frames, 21 targets (teacher: 0 .. 38)
    student_calls, student_hook = _record_forwards(stage.student)
    teacher_calls, teacher_hook = _record_forwards(stage.teacher)
    stage.train_step(0)
    student_hook.remove(), teacher_hook.remove()
    # the case that matters: the teacher's context and target together exceed what streaming ever holds
    assert max(float(c["temporal"].max()) for c in teacher_calls) > budget - 1
    assert max(float(c["temporal"].max()) for c in student_calls) <= budget - 1
    for call in student_calls:
        context = call["context"]
        frames = 0 if context is None else (context.length if context.valid is None
                                            else int(context.valid.sum(1).max())) // lf
        assert frames <= budget - run.chunk
        assert call["frames"] == run.chunk  # only chunk steps, never a sequence forward


def test_student_context_equals_a_streaming_session_of_the_same_history(run, monkeypatch):
    stage = _long_history_stage(run, seed=5)
    before = copy.deepcopy(stage.student)  # the session must see the weights from before the update
    trajectories, teacher_views = [], []
    integrate = ode_stage.teacher_trajectory

    def teacher_trajectory(teacher, inputs, *args, **kwargs):
        teacher_views.append(inputs)
        trajectories.append(integrate(teacher, inputs, *args, **kwargs))
        return trajectories[-1]

    monkeypatch.setattr(ode_stage, "teacher_trajectory", teacher_trajectory)
    histories = []
    pick = stage._history_frames
    monkeypatch.setattr(stage, "_history_frames",
                        lambda random: histories.append(pick(random)) or histories[-1])
    calls, hook = _record_forwards(stage.student)
    stage.train_step(0)
    hook.remove()

    ((_, x0),), (history,), ((latents, cond),), (inputs,) = (trajectories, histories, stage.data.served,
                                                             teacher_views)
    c = run.chunk
    assert history >= 3 * c and x0.shape[1] >= 2 * c  # a real history, and a committed target chunk is reused
    session_cond = cond.frames(slice(0, history + x0.shape[1]))
    session = StreamingSession(before, run, session_cond, layout=run_layout(run))
    session.prefill(latents[:, :history])
    # the teacher sees exactly what the student's memory holds at the first target chunk, clean real frames
    plans = session.memory.plan()
    held = [list(p.frames) for p in plans]  # absolute frames of sink, slow, fast in attention order
    for b, frames in enumerate(held):
        n = len(frames)
        torch.testing.assert_close(inputs.latents[b, :n], latents[b, frames], rtol=0, atol=0)
        assert bool(inputs.context_valid[b, :n].all()) and not bool(inputs.context_valid[b, n:].any())

    denoising = [call for call in calls if not call["commit"] and call["frames"] == c
                 and call["context"] is not None and call["temporal"].shape[1] == c]
    levels = len(run.sampler.student_timesteps)
    denoising = denoising[-levels * (x0.shape[1] // c):]  # after the history's commit passes
    for k in range(x0.shape[1] // c):
        plans = session.memory.plan()
        with torch.no_grad():
            expected = session.memory.context(before, plans)
        positions = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32)
        for call in denoising[k * levels:(k + 1) * levels]:
            torch.testing.assert_close(call["temporal"], positions, rtol=0, atol=0)
            chunk = slice(session.frames_done, session.frames_done + c)
            torch.testing.assert_close(call["cond"].actions, session_cond.frames(chunk).actions)
            assert call["context"].length == expected.length
            got_kv, want_kv = call["context"].keys + call["context"].values, expected.keys + expected.values
            for got, want in zip(got_kv, want_kv):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            assert (call["context"].valid is None) == (expected.valid is None)
            if expected.valid is not None:
                assert torch.equal(call["context"].valid, expected.valid)
        session.prefill(x0[:, k * c:(k + 1) * c])


def _steps_per_interval(grid: torch.Tensor, levels: torch.Tensor) -> list[int]:
    anchors = ([1.0] if float(levels[0]) < 1.0 else []) + [float(s) for s in levels] + [0.0]
    return [int(((grid > b) & (grid <= a)).sum()) for a, b in zip(anchors[:-1], anchors[1:])]


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 80), shift=st.floats(1.0, 8.0),
       timesteps=st.sets(st.integers(1, 1000), min_size=1, max_size=6))
def test_every_ode_grid_interval_gets_two_euler_steps(steps, shift, timesteps):
    levels = student_sigmas(tuple(sorted(map(float, timesteps), reverse=True)), shift)
    grid = ode_grid(levels, steps)
    counts = _steps_per_interval(grid, levels)
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid.diff() < 0).all())
    assert all(bool((grid == level).any()) for level in levels)  # the teacher keeps its state at each level
    assert min(counts) >= 2
    assert len(grid) - 1 == sum(counts) == max(steps, 2 * len(counts))


@pytest.mark.parametrize("steps", [4, 16, 40])
def test_the_low_noise_end_gets_the_most_euler_steps(steps):
    levels = student_sigmas((1000.0, 750.0, 500.0, 250.0), 5.0)  # ~1, 0.94, 0.83, 0.625
    counts = _steps_per_interval(ode_grid(levels, steps), levels)
    assert min(counts) >= 2 and counts[-1] == max(counts)
