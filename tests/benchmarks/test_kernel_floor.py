"""benchmarks/frozen.py's kernel floor: it records exactly the GEMM and attention ops a call dispatches and
replays only those."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

FROZEN = Path(__file__).resolve().parents[2] / "benchmarks" / "frozen.py"


def load_frozen():
    spec = importlib.util.spec_from_file_location("benchmarks_frozen", FROZEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_floor_replays_the_gemms_and_attention_only():
    frozen = load_frozen()
    w, b = torch.randn(32, 16), torch.randn(32)
    q = k = v = torch.randn(1, 2, 8, 16)
    calls = []

    def work() -> None:
        calls.append(1)
        h = F.linear(torch.randn(4, 16), w, b)  # addmm
        h = torch.relu(h * 2 + 1)  # elementwise: not recorded
        torch.mm(h, w)  # mm
        F.scaled_dot_product_attention(q, k, v)  # the CPU attention kernel

    with torch.no_grad():
        floor = frozen.kernel_floor(work, repeats=2)
    assert calls == [1]  # the function itself runs once; the replays call the recorded kernels only
    assert floor["kernels"] == 3
    assert 0 < floor["seconds"] < 1 and 0 <= floor["cpu_seconds"] < 1
