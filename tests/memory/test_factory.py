"""`new_memory` sizes the store for a run's model and keeps the model's dtype (a bf16 model: a bf16 cache)."""

from __future__ import annotations

import pytest
import torch

from context_forcing.memory.factory import new_memory
from context_forcing.memory.layout import parse_layout
from context_forcing.presets import tiny


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_store_keeps_the_requested_dtype(dtype):
    run = tiny()
    memory = new_memory(run, parse_layout("sink3-slow3-fast6", run.chunk), 2, dtype=dtype)
    assert memory.store.dtype == dtype
    memory.store.ensure_capacity(4)
    assert memory.store.keys.dtype == dtype and memory.store.keys.shape[:2] == (run.model.layers, 2)


def test_a_layout_name_is_refused():
    with pytest.raises(TypeError, match="MemoryLayout"):
        new_memory(tiny(), "sink3-slow3-fast6", 1)
