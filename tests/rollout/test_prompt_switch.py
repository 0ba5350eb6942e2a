"""Prompt switches: which memory slots each policy (keep / recache / flush) changes,
and that the new prompt acts."""

from __future__ import annotations

import pytest
import torch

from conftest import make_cond, make_latents
from context_forcing.memory.layout import run_layout
from context_forcing.rollout.session import StreamingSession

LAYOUT = "sink3-slow12-fast6:uniform1"


def _slots(session, part):
    memory = session.memory
    return [
        [memory.samples[b].slots[f] for f in getattr(memory.tables[b], part)] for b in range(session.batch)
    ]


def _kv(session, part):
    """Keys and values of one part's slots, per sample: (layers, n, Lf, H, hd) each."""
    store = session.memory.store
    return [
        (store.keys[:, b, s].clone(), store.values[:, b, s].clone())
        for b, s in enumerate(_slots(session, part))
    ]


def _other_prompt(run, cond):
    return (cond.prompt % (run.text.vocab_size - 1)) + 1  # a different valid prompt per sample


def _session(run, model, frames, chunks=0, seed=0, layout=LAYOUT):
    cond = make_cond(run, 2, frames, seed=seed)
    session = StreamingSession(model, run, cond, seed=seed, layout=run_layout(run, layout))
    for _ in range(chunks):
        session.generate_chunk()
    return session, cond


def test_keep_changes_no_slot_and_the_new_prompt_acts(run, model):
    session, cond = _session(run, model, 24, chunks=6)
    reference, _ = _session(run, model, 24, chunks=6)
    tables = list(session.memory.tables)
    store = {n: getattr(session.memory.store, n).clone() for n in ("keys", "values", "summary")}
    session.switch_prompt(_other_prompt(run, cond), policy="keep")
    assert session.memory.tables == tables
    for name, before in store.items():
        torch.testing.assert_close(getattr(session.memory.store, name), before, rtol=0, atol=0)
    assert not torch.allclose(session.generate_chunk()[0], reference.generate_chunk()[0], atol=1e-4)
    # switching back to the first prompt with `keep` leaves exactly the video of no switch at all
    again, _ = _session(run, model, 24, chunks=6)
    again.switch_prompt(_other_prompt(run, cond), policy="keep")
    again.switch_prompt(cond.prompt, policy="keep")
    fresh, _ = _session(run, model, 24, chunks=6)
    torch.testing.assert_close(again.generate_chunk()[0], fresh.generate_chunk()[0], rtol=0, atol=0)


def test_recache_rewrites_only_fast_and_sink_slow_stay_bitwise(run, model):
    session, cond = _session(run, model, 30, chunks=8)
    assert all(len(t.slow) > 0 and len(t.fast) == 3 for t in session.memory.tables)
    tables = list(session.memory.tables)
    sink, slow, fast = _kv(session, "sink"), _kv(session, "slow"), _kv(session, "fast")
    summary = session.memory.store.summary.clone()
    session.switch_prompt(_other_prompt(run, cond), policy="recache")
    assert session.memory.tables == tables
    for before, after in ((sink, _kv(session, "sink")), (slow, _kv(session, "slow"))):
        for (k0, v0), (k1, v1) in zip(before, after):
            torch.testing.assert_close(k1, k0, rtol=0, atol=0)
            torch.testing.assert_close(v1, v0, rtol=0, atol=0)
    for (k0, _), (k1, _) in zip(fast, _kv(session, "fast")):
        assert not torch.allclose(k1[1:], k0[1:], atol=1e-4)  # layer 0 keys precede any cross-attention
    fast_slots = _slots(session, "fast")
    for b, slots in enumerate(fast_slots):
        assert not torch.allclose(session.memory.store.summary[b, slots], summary[b, slots], atol=1e-5)


def test_recache_equals_committing_the_fast_chunk_under_the_new_prompt(run, model):
    """Sink 0-2 under prompt A, fast 3-5 re-encoded under B == fast 3-5 committed under B in the
    first place."""
    latents = make_latents(run, 2, 6)
    cond = make_cond(run, 2, 9)
    recached = StreamingSession(model, run, cond, layout=run_layout(run, LAYOUT))
    recached.prefill(latents)
    direct = StreamingSession(model, run, cond, layout=run_layout(run, LAYOUT))
    direct.prefill(latents[:, :3])
    new_prompt = _other_prompt(run, cond)
    direct.switch_prompt(new_prompt, policy="keep")
    direct.prefill(latents[:, 3:])
    recached.switch_prompt(new_prompt, policy="recache")
    for (k0, v0), (k1, v1) in zip(_kv(direct, "fast"), _kv(recached, "fast")):
        torch.testing.assert_close(k1, k0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v1, v0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recached.generate_chunk()[0], direct.generate_chunk()[0], rtol=1e-4, atol=1e-4)
    # and re-encoding under the same prompt is the identity here (same context, same positions)
    same = StreamingSession(model, run, cond, layout=run_layout(run, LAYOUT))
    same.prefill(latents)
    before = _kv(same, "fast")
    same.switch_prompt(cond.prompt, policy="recache")
    for (k0, _), (k1, _) in zip(before, _kv(same, "fast")):
        torch.testing.assert_close(k1, k0, rtol=1e-5, atol=1e-5)


def test_flush_keeps_sink_and_last_chunk_and_restarts_admission(run, model):
    layout = "sink3-slow12-fast9:uniform4"  # fast holds two committed chunks, so flush drops one of them
    session, cond = _session(run, model, 72, chunks=10, layout=layout)
    before = list(session.memory.tables)
    assert all(len(t.slow) > 0 and len(t.fast) == 6 for t in before)
    sink, fast = _kv(session, "sink"), _kv(session, "fast")
    session.switch_prompt(_other_prompt(run, cond), policy="flush")
    for b, table in enumerate(session.memory.tables):
        assert table.sink == before[b].sink and table.slow == () and table.fast == before[b].fast[-3:]
        assert set(session.memory.samples[b].slots) == set(table.sink) | set(
            table.fast
        )  # every other slot is free
    for (k0, v0), (k1, v1) in zip(sink, _kv(session, "sink")):
        torch.testing.assert_close(k1, k0, rtol=0, atol=0)
        torch.testing.assert_close(v1, v0, rtol=0, atol=0)
    for (k0, _), (k1, _) in zip(fast, _kv(session, "fast")):
        torch.testing.assert_close(k1, k0[:, 3:], rtol=0, atol=0)
    plan = session.memory.plan()[0]
    assert plan.frames == (0, 1, 2, 27, 28, 29) and plan.part("slow") == ()
    # the next chunk pushes nothing out (fast has room); the one after yields a candidate, admitted as in a
    # new memory (uniform4 admits the first candidate),
    # though uniform4's count stood at 3 of 4 before the flush
    session.generate_chunk()
    session.generate_chunk()
    assert [e.admitted for e in session.last_events] == [True, True]
    assert session.memory.tables[0].slow == (27,)
    for _ in range(12):
        session.generate_chunk()
    assert max(len(s.slots) for s in session.memory.samples) <= 24 and session.memory.store.capacity == 24


def test_bad_switches_raise_before_changing_anything(run, model):
    session, cond = _session(run, model, 12, chunks=2)
    tables = list(session.memory.tables)
    with pytest.raises(ValueError, match="policy must be one of keep, recache, flush, got 'reset'"):
        session.switch_prompt(cond.prompt, policy="reset")
    with pytest.raises(
        ValueError, match=r"prompt must be \(2, P\) ids or \(2, P, D\) embeddings, got \(1, 4\)"
    ):
        session.switch_prompt(cond.prompt[:1], policy="recache")
    with pytest.raises(ValueError, match="prompt token ids must lie in"):
        session.switch_prompt(torch.full_like(cond.prompt, run.text.vocab_size), policy="flush")
    assert session.memory.tables == tables and session.prompt_switches == 0
    torch.testing.assert_close(session.cond.prompt, cond.prompt, rtol=0, atol=0)
