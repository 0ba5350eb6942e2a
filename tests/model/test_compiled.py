"""The compiled chunk step (model/compiled.py): the eager stream within float rounding, a fixed set of graphs,
frozen weights that follow parameter changes, and the eager fallback."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.utils

from conftest import make_cond, make_latents, randomize
from context_forcing.memory.layout import run_layout
from context_forcing.model import compiled
from context_forcing.model.compiled import CompiledForward, compiler_available
from context_forcing.rollout.session import StreamingSession

needs_compiler = pytest.mark.skipif(not compiler_available(), reason="inductor needs a C++ compiler")
LAYOUT = "sink3-slow6-fast6:uniform2"  # slow memory fills late: padded contexts of every size on the way


def _stream(session: StreamingSession, frames: int) -> tuple[torch.Tensor, list]:
    chunks = list(session.stream(frames))
    return torch.cat([c.latents for c in chunks], dim=1), [c.record.plans for c in chunks]


@needs_compiler
def test_compiled_session_streams_what_the_eager_one_does_with_one_graph(run, model):
    cond, layout = make_cond(run, 2, 36), run_layout(run, LAYOUT)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    fast = StreamingSession(model, run, cond, seed=3, layout=layout, compile=True)
    out, plans = _stream(fast, 36)
    eager_out, eager_plans = _stream(StreamingSession(model, run, cond, seed=3, layout=layout), 36)
    assert fast.compiled.eager_reason is None and fast.compiled.compilations == 1
    # one graph for every pass of every chunk from the first on (contexts padded to the budget, buffers
    # allocated before the first pass, K/V always returned): no recompilation as the memory fills
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 1
    assert plans == eager_plans  # the same admissions and positions
    torch.testing.assert_close(out, eager_out, rtol=1e-4, atol=1e-4)
    assert not torch.equal(out, eager_out)  # it did run other kernels (else this test would prove nothing)


def _first_pass(session: StreamingSession, compiled: bool, context: bool = True) -> torch.Tensor:
    """The velocity of the session's first denoising pass (fresh inputs each call: the same graph);
    context=False: the chunk alone (inputs of another structure)."""
    inputs, _ = session._chunk_inputs(session.memory.plan())
    inputs.forward = session.compiled if compiled else None
    if not context:
        inputs.context = None
    x = make_latents(session.run, session.batch, session.layout.chunk)
    timesteps = torch.full(x.shape[:2], 750.0)
    with torch.no_grad():
        return inputs.run(session.model, x, timesteps, return_kv=False).velocity


@needs_compiler
def test_frozen_weights_follow_parameter_changes_and_belong_to_their_model(run, model):
    cond, layout = make_cond(run, 1, 6), run_layout(run, LAYOUT)
    session = StreamingSession(model, run, cond, seed=0, layout=layout, compile=True)
    compiled, session.compiled = session.compiled, None
    session.generate_chunk()  # eagerly: the memory holds a chunk, a context to attend to
    session.compiled = compiled
    torch.testing.assert_close(_first_pass(session, True), _first_pass(session, False), rtol=1e-5, atol=1e-5)
    randomize(model, seed=7)  # in place: version counters move, the frozen graph is stale
    changed = _first_pass(session, True)  # `_chunk_inputs` noticed: compiled afresh
    assert session.compiled.compilations == 2
    torch.testing.assert_close(changed, _first_pass(session, False), rtol=1e-5, atol=1e-5)
    # another model of the same shapes gets a graph of its own weights, not the first model's
    other = randomize(type(model)(run.model, run.text), seed=11).eval()
    session.model = other
    session.compiled = CompiledForward(other)
    mine = _first_pass(session, True)
    torch.testing.assert_close(mine, _first_pass(session, False), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mine, changed, rtol=1e-2, atol=1e-2)


@needs_compiler
def test_inputs_of_another_structure_compile_afresh(run, model):
    # dynamo's guards on the inputs' Python structure are dropped (model/compiled.py): the forward's own
    # structure check must notice a call the graph does not fit and compile for it
    session = StreamingSession(model, run, make_cond(run, 1, 6), seed=0, layout=run_layout(run, LAYOUT),
                               compile=True)
    compiled, session.compiled = session.compiled, None
    session.generate_chunk()
    session.compiled = compiled
    torch.testing.assert_close(_first_pass(session, True), _first_pass(session, False), rtol=1e-5, atol=1e-5)
    alone = _first_pass(session, True, context=False)
    assert session.compiled.compilations == 2
    torch.testing.assert_close(alone, _first_pass(session, False, context=False), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(alone, _first_pass(session, False), rtol=1e-3, atol=1e-3)  # it did differ
    back = _first_pass(session, True)  # and back: afresh again, the context's graph
    assert session.compiled.compilations == 3
    torch.testing.assert_close(back, _first_pass(session, False), rtol=1e-5, atol=1e-5)


def test_without_a_compiler_it_warns_and_streams_eagerly(run, model, monkeypatch):
    monkeypatch.setattr(compiled, "compiler_available", lambda: False)
    cond, layout = make_cond(run, 2, 9), run_layout(run, LAYOUT)
    with pytest.warns(UserWarning, match="no C.. compiler"):
        session = StreamingSession(model, run, cond, seed=1, layout=layout, compile=True)
    out, _ = _stream(session, 9)
    expected, _ = _stream(StreamingSession(model, run, cond, seed=1, layout=layout), 9)
    # eager on padded contexts: masked padding is exactly what an unpadded context gives, up to rounding
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_compile_needs_a_budget_and_no_grad(run, model):
    with pytest.raises(ValueError, match="budget.*'full"):
        StreamingSession(model, run, make_cond(run, 1, 3), layout=run_layout(run, "full"), compile=True)
    forward = CompiledForward.__new__(CompiledForward)  # the check comes before any compilation
    with pytest.raises(RuntimeError, match="no_grad"):
        forward(torch.zeros(1), torch.zeros(1), None, torch.zeros(1))
