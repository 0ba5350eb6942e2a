"""The teacher forward built by `teacher_inputs` lets every target frame see every real context frame and no
padding frame: a target blind to its context (or reading padding) must fail here."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import make_cond, make_latents
from context_forcing.rollout.teacher import teacher_inputs

N, T = 6, 3  # context frames (sink 3 + fast 3, say), target frames


def _target_velocity(model, latents, valid, cond) -> torch.Tensor:
    """Velocity of the target frames of [context | target] at target timestep 600."""
    inputs = teacher_inputs(latents[:, :N], valid, cond.frames(slice(0, N)), latents[:, N:],
                            cond.frames(slice(N, None)))
    with torch.no_grad():
        return inputs.target_velocity(model, latents[:, N:], torch.tensor([600.0, 600.0]))


def test_each_context_frame_reaches_the_target_and_padding_does_not(run, model):
    # `model`: tiny preset, every parameter random (the output head too), so outputs depend on inputs
    cond = make_cond(run, 2, N + T)
    latents = make_latents(run, 2, N + T)
    valid = torch.tensor([[True] * N, [True] * 4 + [False] * 2])  # sample 1: 4 real frames, then padding
    base = _target_velocity(model, latents, valid, cond)
    assert base.abs().mean() > 0.1
    for frame in range(N):  # every real context frame, sink to fast, changes what the target predicts
        changed = latents.clone()
        changed[0, frame] = -changed[0, frame]
        moved = (_target_velocity(model, changed, valid, cond) - base).abs()
        assert moved[0].max() > 1e-2, f"target does not see context frame {frame}"
        torch.testing.assert_close(moved[1], torch.zeros_like(moved[1]), rtol=0, atol=0)  # other sample
    for frame in (1, 3):
        changed = latents.clone()
        changed[1, frame] += 1.0
        assert (_target_velocity(model, changed, valid, cond)[1] - base[1]).abs().max() > 1e-2
    padded = latents.clone()
    padded[1, 4:N] = 10 * torch.randn_like(padded[1, 4:N])  # padding frames: whatever they hold, unseen
    torch.testing.assert_close(_target_velocity(model, padded, valid, cond), base, rtol=0, atol=1e-6)


def _real_context_inputs(run):
    """Teacher inputs of 2 samples with N real context frames and T target frames, and their latents."""
    cond = make_cond(run, 2, N + T)
    latents = make_latents(run, 2, N + T)
    inputs = teacher_inputs(latents[:, :N], torch.ones(2, N, dtype=torch.bool), cond.frames(slice(0, N)),
                            latents[:, N:], cond.frames(slice(N, None)))
    return inputs, latents


def test_target_velocity_guides_with_the_null_prompt_and_reuses_given_prompts(run, model):
    inputs, latents = _real_context_inputs(run)
    t = torch.tensor([300.0, 700.0])
    with torch.no_grad():
        v_c = inputs.target_velocity(model, latents[:, N:], t)
        v_u = replace(inputs, cond=inputs.cond.null_prompt()).target_velocity(model, latents[:, N:], t)
        guided = inputs.target_velocity(model, latents[:, N:], t, guidance=4.0)
        reused = inputs.target_velocity(model, latents[:, N:], t, 4.0, inputs.prompts(model))
    assert (v_c - v_u).abs().max() > 1e-3  # the prompt matters, so a guidance that ignored it would fail
    torch.testing.assert_close(guided, v_u + 4.0 * (v_c - v_u), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reused, guided, rtol=0, atol=0)


def test_guidance_one_is_the_conditional_velocity_without_a_null_prompt_forward(run, model):
    inputs, latents = _real_context_inputs(run)
    t = torch.tensor([300.0, 700.0])
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with torch.no_grad():
            v_c = inputs.target_velocity(model, latents[:, N:], t)
            counted = len(calls)
            one = inputs.target_velocity(model, latents[:, N:], t, guidance=1.0)
            v_u = replace(inputs, cond=inputs.cond.null_prompt()).target_velocity(model, latents[:, N:], t)
    finally:
        hook.remove()
    assert len(calls) == 3 * counted  # guidance 1 ran as many forwards as no guidance
    torch.testing.assert_close(one, v_c, rtol=0, atol=0)
    torch.testing.assert_close(one, v_u + 1.0 * (v_c - v_u), rtol=1e-6, atol=1e-6)  # what CFG at w = 1 gives


def test_context_computed_once_gives_the_full_sequence_velocity(run, model):
    # ODE init and the teacher probe run the context once per prompt, then the target frames alone against its
    # K/V (`contexts`, `sampler_velocity`): the velocity of [context | target], padding and guidance included
    cond = make_cond(run, 2, N + T)
    latents = make_latents(run, 2, N + T)
    valid = torch.tensor([[True] * N, [True] * 4 + [False] * 2])
    inputs = teacher_inputs(latents[:, :N], valid, cond.frames(slice(0, N)), latents[:, N:],
                            cond.frames(slice(N, None)))
    sigma = torch.tensor([[0.3] * T, [0.7] * T])
    with torch.no_grad():
        full = inputs.target_velocity(model, latents[:, N:], 1000 * sigma, 3.0)
        prompts = inputs.prompts(model)
        contexts = inputs.contexts(model, prompts, 3.0)
        cached = inputs.target_velocity(model, latents[:, N:], 1000 * sigma, 3.0, prompts, contexts)
        sampled = inputs.sampler_velocity(model, 3.0)(latents[:, N:], sigma)
        unguided = inputs.sampler_velocity(model, None)(latents[:, N:], sigma)
        plain = inputs.target_velocity(model, latents[:, N:], 1000 * sigma)
    assert full.abs().mean() > 0.1 and contexts[1] is not None
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sampled, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unguided, plain, rtol=1e-5, atol=1e-5)
    empty = teacher_inputs(latents[:, :0], valid[:, :0], cond.frames(slice(0, 0)), latents[:, N:],
                           cond.frames(slice(N, None)))
    assert empty.contexts(model, prompts, 3.0) is None  # no context: the sequence is the target


def test_contexts_skip_the_null_prompt_when_guidance_does_not_use_it(run, model):
    # guidance None or 1 reads only the conditional velocity: the null prompt's context pass is not run
    inputs, latents = _real_context_inputs(run)
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with torch.no_grad():
            prompts = inputs.prompts(model)
            counts = {}
            for guidance in (3.0, 1.0, None):
                calls.clear()
                contexts = inputs.contexts(model, prompts, guidance)
                counts[guidance] = (len(calls), contexts[1] is None)
            sigma = torch.full((2, T), 0.5)
            one = inputs.sampler_velocity(model, 1.0)(latents[:, N:], sigma)
            unguided = inputs.sampler_velocity(model, None)(latents[:, N:], sigma)
            with pytest.raises(ValueError, match="null prompt's context"):
                inputs.target_velocity(model, latents[:, N:], 500 * sigma, 3.0, prompts,
                                       inputs.contexts(model, prompts, 1.0))
    finally:
        hook.remove()
    assert counts == {3.0: (2, False), 1.0: (1, True), None: (1, True)}
    torch.testing.assert_close(one, unguided, rtol=0, atol=0)
