"""What the memory's per-chunk path leaves alive: nothing growing with video length (the soak, issue 10)."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import context_forcing.memory
from context_forcing.memory.layout import parse_layout
from context_forcing.memory.slow_fast import FrameInputs, SlowFastMemory, host_tensor
from context_forcing.memory.store import StoreShape

MEMORY_DIR = str(Path(context_forcing.memory.__file__).parent)
SHAPE = StoreShape(layers=2, tokens_per_frame=4, heads=2, head_dim=4, latent=(2, 4, 4), action_dim=3,
                   summary_dim=2 * 2 * 4)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 3), cols=st.integers(1, 5), data=st.data())
def test_host_tensor_equals_torch_tensor(rows, cols, data):
    ints = data.draw(st.lists(st.integers(-2**40, 2**40), min_size=rows * cols, max_size=rows * cols))
    floats = data.draw(st.lists(st.floats(-1e30, 1e30), min_size=rows * cols, max_size=rows * cols))
    bools = data.draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    for values, dtype in ((ints, torch.long), (floats, torch.float32), (bools, torch.bool)):
        expected = torch.tensor(values, dtype=dtype).view(rows, cols)
        got = host_tensor(values, dtype, rows, "cpu")
        assert got.dtype == dtype and got.shape == (rows, cols)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _chunk(memory: SlowFastMemory, g: torch.Generator) -> None:
    """Plan, gather the context, commit a random clean chunk (admission included): one chunk of a stream."""
    b, c, s = memory.batch, memory.layout.chunk, SHAPE
    plans = memory.plan()
    memory.context_frames(plans)
    kv = [(torch.randn(b, c * s.tokens_per_frame, s.heads, s.head_dim, generator=g),
           torch.randn(b, c * s.tokens_per_frame, s.heads, s.head_dim, generator=g)) for _ in range(s.layers)]
    frames = FrameInputs(torch.randn(b, c, *s.latent, generator=g), torch.zeros(b, c, s.action_dim),
                         torch.zeros(b, c, 1), torch.zeros(b, c, s.tokens_per_frame, 2))
    memory.commit(kv, frames)


def _memory_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes of live blocks allocated on a line of the memory package."""
    return sum(t.size for t in snapshot.traces if t.traceback[0].filename.startswith(MEMORY_DIR))


def test_chunk_path_leaves_no_strings_in_the_type_cache():
    """CPython 3.11's type-attribute cache holds a reference to each attribute name it looked up, in a slot
    chosen by the string's address: torch calls that probe a Python list (`torch.tensor(list)`, indexing with
    a list) or a torch.Size with freshly made name strings leave them alive there, up to 4096 of them, which
    the soak saw as slowly rising memory. Whatever clearing the cache frees was left there by such a call."""
    memory = SlowFastMemory(parse_layout("sink3-slow6-fast6:similarity0.95", 3), SHAPE, batch=2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # first calls build torch's lasting per-signature state
        _chunk(memory, g)
    tracemalloc.start()
    try:
        for _ in range(20):
            _chunk(memory, g)
        gc.collect()
        held = _memory_bytes(tracemalloc.take_snapshot())
        sys._clear_type_cache()
        gc.collect()
        released = held - _memory_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert memory.stats.candidates > 0  # the admission path ran
    assert released == 0, f"{released} B of the memory's per-chunk calls lived only in the type cache"
