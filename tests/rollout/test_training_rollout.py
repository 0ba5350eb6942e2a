"""Training rollouts: gradient only at exit steps, detached memory, teacher context = the student's memory,
and activation checkpointing gives the same gradients."""

from __future__ import annotations

import torch

from conftest import make_cond
from context_forcing.memory.layout import parse_layout
from context_forcing.rollout.training_rollout import student_rollout

LAYOUT = "sink3-slow3-fast6:uniform1"


def _rollout(model, run, frames=18, grad_from=2, context_chunk=4, seed=0, exit_step="shared"):
    cond = make_cond(run, 2, frames)
    return student_rollout(model, run, parse_layout(LAYOUT, 3), cond, frames,
                           torch.Generator().manual_seed(seed),
                           grad_from_chunk=grad_from, exit_step=exit_step, context_chunk=context_chunk)


def test_only_exit_steps_of_gradient_chunks_carry_gradient(run, model):
    roll = _rollout(model, run)
    assert roll.latents.requires_grad
    assert roll.grad_frames[:, :6].logical_not().all() and roll.grad_frames[:, 6:].all()
    # full sampler, then shared exit
    assert roll.exit_steps[:2] == [3, 3] and len(set(roll.exit_steps[2:])) == 1
    # frames of chunks without gradient contribute nothing to any parameter's gradient
    params = [p for p in model.parameters()]
    early = torch.autograd.grad(roll.latents[:, :6].sum(), params, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in early)
    late = torch.autograd.grad(roll.latents[:, 6:].square().sum(), params, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in late if g is not None) > 0
    # the memory holds detached tensors
    store = roll.memory.store
    assert not any(t.requires_grad for t in (store.keys, store.values, store.latents))


def test_per_chunk_exit_steps_vary(run, model):
    roll = _rollout(model, run, frames=30, grad_from=0, exit_step="per_chunk", seed=3)
    assert len(set(roll.exit_steps)) > 1


def test_teacher_context_is_the_students_memory_at_the_first_target_chunk(run, model):
    roll = _rollout(model, run, frames=18, grad_from=4, context_chunk=4)
    latents, valid, cond = roll.context
    plans = roll.context_plans
    for b, plan in enumerate(plans):
        assert plan.chunk_frames == (12, 13, 14)
        k = len(plan.frames)
        assert valid[b, :k].all() and not valid[b, k:].any()
        # the context latents are the student's own outputs for the planned frames (sink, slow, fast)
        torch.testing.assert_close(latents[b, :k], roll.latents[b, list(plan.frames)].detach())
        torch.testing.assert_close(cond.actions[b, :k], make_cond(run, 2, 18).actions[b, list(plan.frames)])
    assert plans[0].parts == ("sink", "sink", "sink", "slow", "slow", "fast", "fast", "fast")


def test_activation_checkpointing_gives_the_same_gradients(run, model):
    grads = []
    for checkpointing in (False, True):
        model.set_activation_checkpointing(checkpointing)
        model.zero_grad(set_to_none=True)
        roll = _rollout(model, run, frames=15, grad_from=2, context_chunk=2, seed=5)
        (roll.latents[:, 6:] * torch.linspace(-1, 1, roll.latents[:, 6:].numel()).view_as(roll.latents[:, 6:])
         ).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    model.set_activation_checkpointing(False)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_skipping_the_last_commit_changes_nothing_but_the_forward_count(run, model):
    results, calls = [], []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        for commit_last in (True, False):
            calls.clear()
            cond = make_cond(run, 2, 12)
            with torch.no_grad():
                roll = student_rollout(model, run, parse_layout(LAYOUT, 3), cond, 12,
                                       torch.Generator().manual_seed(5), grad_from_chunk=2, context_chunk=3,
                                       commit_last=commit_last)
            results.append((roll, len(calls)))
    finally:
        hook.remove()
    (full, full_calls), (short, short_calls) = results
    assert short_calls == full_calls - 1
    torch.testing.assert_close(short.latents, full.latents, rtol=0, atol=0)
    torch.testing.assert_close(short.context[0], full.context[0], rtol=0, atol=0)
    assert short.exit_steps == full.exit_steps
