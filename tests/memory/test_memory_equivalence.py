"""SlowFastMemory against the block-causal sequence forward and the naive reference memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import make_cond, make_latents
from context_forcing.memory.layout import parse_layout
from context_forcing.memory.reference import ReferenceMemory
from context_forcing.memory.slow_fast import FrameInputs, SlowFastMemory
from context_forcing.memory.store import StoreShape
from context_forcing.model.dit import block_causal_mask
from context_forcing.model.rope import grid_positions


def _memory(run, layout, batch):
    m = run.model
    shape = StoreShape(m.layers, run.tokens_per_frame, m.heads, m.head_dim, (m.in_channels, 8, 8),
                       m.action_dim, m.layers * m.dim)
    return SlowFastMemory(layout, shape, batch)


def _chunk_forward(model, prompt, x, t, plans, cond, context):
    temporal = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32)
    return model(x, t, prompt, temporal, cond, context=context, return_kv=True)


def _frame_inputs(x, cond):
    b, c = x.shape[:2]
    return FrameInputs(x, cond.actions, cond.pose, grid_positions(2, 2).expand(b, c, -1, -1))


def test_full_layout_equals_block_causal_sequence_forward(run, model):
    layout, b, chunks = parse_layout("full", 3), 2, 6
    f = 3 * chunks
    cond, x = make_cond(run, b, f), make_latents(run, b, f)
    noisy = make_latents(run, b, f, seed=1)
    prompt = model.encode_prompt(cond)
    memory = _memory(run, layout, b)
    with torch.no_grad():
        for i in range(chunks):
            s = slice(3 * i, 3 * i + 3)
            plans = memory.plan()
            context = memory.context(model, plans)
            step = _chunk_forward(model, prompt, noisy[:, s], torch.full((b, 3), 600.0), plans,
                                  cond.frames(s), context)
            # the sequence: clean frames before the chunk, then the noisy chunk
            seq = torch.cat([x[:, :3 * i], noisy[:, s]], dim=1)
            t = torch.cat([torch.zeros(b, 3 * i), torch.full((b, 3), 600.0)], dim=1)
            pos = torch.arange(3 * i + 3, dtype=torch.float32).expand(b, -1)
            ref = model(seq, t, prompt, pos, cond.frames(slice(0, 3 * i + 3)),
                        frame_mask=block_causal_mask(3 * i + 3, 3)).velocity
            torch.testing.assert_close(step.velocity, ref[:, -3:], rtol=1e-5, atol=1e-5)
            commit = _chunk_forward(model, prompt, x[:, s], torch.zeros(b, 3), plans, cond.frames(s), context)
            memory.commit(commit.kv, _frame_inputs(x[:, s], cond.frames(s)))
    assert memory.stats.candidates == 0  # nothing ever left fast


LAYOUTS = [
    "sink3-slow12-fast6:uniform1",
    "sink3-slow6-fast6:uniform2",
    "sink3-slow6-fast6:similarity0.9",
    "sink3-slow6-fast6:similarity0.9:ref-last-admitted:admit-all",
    "sink3-slow3-fast6:uniform1:absolute",
    "sink3-window9",
    "window-6",
    "full",
]


@pytest.mark.parametrize("spec", LAYOUTS)
def test_every_layout_equals_naive_reference(run, model, spec):
    layout, b, chunks = parse_layout(spec, 3), 2, 12
    f = 3 * chunks
    cond, x = make_cond(run, b, f), make_latents(run, b, f)
    x[1] = x[1] * 0.3 + x[1, :1]  # the second sample is more self-similar: admissions differ per sample
    prompt = model.encode_prompt(cond)
    memory, reference = _memory(run, layout, b), ReferenceMemory(b, run.model.rope_theta)
    events = []  # every admission event, as commit returns them
    with torch.no_grad():
        for i in range(chunks):
            s = slice(3 * i, 3 * i + 3)
            plans = memory.plan()  # recorded once, replayed by the reference
            ctx, ref_ctx = memory.context(model, plans), reference.context(plans)
            t = torch.full((b, 3), 800.0)
            ours = _chunk_forward(model, prompt, x[:, s] + 1, t, plans, cond.frames(s), ctx).velocity
            theirs = _chunk_forward(model, prompt, x[:, s] + 1, t, plans, cond.frames(s), ref_ctx).velocity
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
            commit = _chunk_forward(model, prompt, x[:, s], torch.zeros(b, 3), plans, cond.frames(s), ctx)
            events += memory.commit(commit.kv, _frame_inputs(x[:, s], cond.frames(s)))
            ref_commit = _chunk_forward(model, prompt, x[:, s], torch.zeros(b, 3), plans,
                                        cond.frames(s), ref_ctx)
            reference.commit([p.chunk_frames for p in plans], ref_commit.kv,
                             grid_positions(2, 2).expand(b, 3, -1, -1))
            assert max(p.slots for p in plans) <= (layout.budget or f)
    if layout.policy.kind == "similarity":  # the test exercises per-sample admission, not a trivial pattern
        admitted = [[e.admitted for e in events if e.sample == s] for s in range(b)]
        assert (admitted[0] != admitted[1] and any(admitted[0] + admitted[1])
                and not all(admitted[0] + admitted[1]))


def test_output_does_not_depend_on_absolute_chunk_index(run, model):
    """Same memory contents relabelled 30 frames later:
    bounded positions give the same output, absolute not."""
    outputs = {}
    for spec in ("sink3-slow6-fast6:uniform1", "sink3-slow6-fast6:uniform1:absolute"):
        layout, b, chunks = parse_layout(spec, 3), 1, 12
        cond, x = make_cond(run, b, 3 * chunks + 3), make_latents(run, b, 3 * chunks + 3)
        prompt = model.encode_prompt(cond)
        memory = _memory(run, layout, b)
        with torch.no_grad():
            for i in range(chunks):
                s = slice(3 * i, 3 * i + 3)
                plans = memory.plan()
                commit = _chunk_forward(model, prompt, x[:, s], torch.zeros(b, 3), plans, cond.frames(s),
                                        memory.context(model, plans))
                memory.commit(commit.kv, _frame_inputs(x[:, s], cond.frames(s)))
            late = _shifted(memory, 30)
            assert min(late.tables[0].sink) == 0 and late.next_frame == memory.next_frame + 30
            s = slice(3 * chunks, 3 * chunks + 3)
            for name, mem in (("now", memory), ("later", late)):
                plans = mem.plan()
                outputs[spec, name] = _chunk_forward(model, prompt, x[:, s], torch.full((b, 3), 500.0), plans,
                                                     cond.frames(s), mem.context(model, plans)).velocity
    bounded, absolute = "sink3-slow6-fast6:uniform1", "sink3-slow6-fast6:uniform1:absolute"
    torch.testing.assert_close(outputs[bounded, "now"], outputs[bounded, "later"], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(outputs[absolute, "now"], outputs[absolute, "later"], atol=1e-4)


def _shifted(memory: SlowFastMemory, offset: int) -> SlowFastMemory:
    """A copy of the memory whose non-sink frames carry absolute indices `offset` later (same contents)."""
    late = _copy(memory)
    sink = set(memory.tables[0].sink)
    move = lambda f: f if f in sink else f + offset  # noqa: E731
    late.samples = [dataclasses.replace(s, table=dataclasses.replace(
        s.table, slow=tuple(map(move, s.table.slow)), fast=tuple(map(move, s.table.fast)),
        next_frame=s.table.next_frame + offset), slots={move(f): slot for f, slot in s.slots.items()})
        for s in memory.samples]
    return late


def _copy(memory: SlowFastMemory) -> SlowFastMemory:
    new = SlowFastMemory.__new__(SlowFastMemory)
    new.__dict__.update(memory.__dict__)
    return new
