"""Issue 12's frozen chunk-step benchmark config and the op-share analysis, shared by benchmarks/breakdown.py
and benchmarks/streaming.py (imported as a sibling module: both scripts run with benchmarks/ as sys.path[0]).

The frozen config is built here explicitly so it does not follow preset changes: width 256, 4 heads, 4 layers,
FFN 768, 8 tokens per frame (32x32 latents in (1, 32, 4) strips; `tokens_per_frame=16`: (1, 16, 4) patches, a
2 x 8 token grid), `world` spatial positions, x0 head, memory `sink3-slow12-fast6:uniform4:bounded`, random
weights (the head too: a zero head gives x0 = c_skip x, a degenerate stream). The token carries 2 channels
instead of PanWorld's 3, the only way to keep 8 tokens per frame at width 256 now that the config requires
width >= the numbers of a token (the patch embedding is a negligible GEMM either way); conditioning (prompt,
actions, pose, world columns) comes from PanWorld episodes at the run's token grid.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, record_function
from torch.utils._python_dispatch import TorchDispatchMode

from context_forcing.config import MemoryConfig, ModelConfig, RunConfig, TextConfig, VideoConfig
from context_forcing.data.episodes import episode_conditioning, panworld_episodes
from context_forcing.memory.layout import parse_layout
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset
from context_forcing.rollout.records import attended_frames
from context_forcing.rollout.session import StreamingSession

LAYOUT = "sink3-slow12-fast6:uniform4:bounded"
# the compiled chunk step (frozen weights) calls prepacked GEMMs: mkl::_mkl_linear, mkldnn::_linear_pointwise
GEMM = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::matmul",
        "aten::linear", "aten::_addmm_activation", "aten::mv", "aten::addmv", "mkl::_mkl_linear",
        "mkldnn::_linear_pointwise"}
PHASES = {"backward": "autograd::engine::evaluate_function", "optimizer": "Optimizer.step",
          "clip": "profile::clip_and_step", "ema": "profile::ema_update", "data": "profile::data"}


PATCHES = {8: (1, 32, 4), 16: (1, 16, 4)}  # tokens per frame -> patch of the 32x32 latents


def frozen_run(tokens_per_frame: int = 8) -> RunConfig:
    """Issue 12's frozen chunk-step config (see the module docstring); independent of presets.py."""
    if tokens_per_frame not in PATCHES:
        raise ValueError(f"tokens_per_frame must be one of {sorted(PATCHES)}, got {tokens_per_frame}")
    suffix = "" if tokens_per_frame == 8 else f"-{tokens_per_frame}tok"
    return RunConfig(
        preset=f"frozen-256{suffix}", chunk=3, spatial_positions="world",
        model=ModelConfig(in_channels=2, out_channels=2, patch=PATCHES[tokens_per_frame], dim=256, heads=4,
                          layers=4, ffn_dim=768, text_dim=64, freq_dim=64, action_dim=3, pose_freqs=6,
                          prediction="x0"),
        text=TextConfig(kind="attributes", vocab_size=64, prompt_len=4),
        video=VideoConfig(latent_height=32, latent_width=32),
        memory=MemoryConfig(layout=LAYOUT),
    )


def frozen_model(run: RunConfig) -> CausalVideoDiT:
    """Random weights, seeded; the zero-initialised head randomised too (see the module docstring)."""
    torch.manual_seed(0)
    model = CausalVideoDiT(run.model, run.text).eval()
    nn.init.normal_(model.head.head.weight, std=0.02)
    return model


def frozen_session(model: CausalVideoDiT, run: RunConfig, batch: int, frames: int,
                   seed: int = 0, compile: bool = False) -> StreamingSession:
    """A session of `run` with the frozen memory layout, conditioned on `frames` frames of PanWorld
    episodes; `compile`: the compiled chunk step (model/compiled.py)."""
    world = get_preset("panworld")
    cond = episode_conditioning(run, panworld_episodes(world, seed, batch, frames), frames)
    return StreamingSession(model, run, cond, seed=seed, layout=parse_layout(LAYOUT, run.chunk),
                            compile=compile)


def fill_memory(session: StreamingSession, extra: int = 3) -> int:
    """Generate chunks until one attends to the layout's whole budget, then `extra` more; returns the
    number generated."""
    chunks = 0
    while chunks == 0 or attended_frames(session.records.last.plans) < session.layout.budget:
        session.generate_chunk()
        chunks += 1
    for _ in range(extra):  # a few chunks at full memory before timing
        session.generate_chunk()
    return chunks + extra


class InstrumentedData:
    """A stage's training data with each draw timed (`seconds`: rendering is part of a step) and labelled
    `profile::data` for a profiler (benchmarks/training.py and benchmarks/breakdown.py)."""

    def __init__(self, data: Any) -> None:
        self.data, self.seconds = data, 0.0

    def next_clip(self, frames: int) -> Any:
        tic = time.perf_counter()
        try:
            with record_function("profile::data"):
                return self.data.next_clip(frames)
        finally:
            self.seconds += time.perf_counter() - tic

    def next_conditioning(self, frames: int) -> Any:
        return self.next_clip(frames)[1]

    def state_dict(self) -> dict[str, Any]:
        return self.data.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data.load_state_dict(state)


def random_teacher(run: RunConfig, directory: Path) -> Path:
    """A checkpoint of seeded random weights for the distillation stages; the zero-initialised output head
    gets random weights too (a zero head ignores the network: x0 = c_skip x)."""
    torch.manual_seed(0)
    model = CausalVideoDiT(run.model, run.text)
    nn.init.normal_(model.head.head.weight, std=0.02)
    return save_checkpoint(directory / f"teacher-{run.preset}", run, model.state_dict())


class _KernelRecorder(TorchDispatchMode):
    """Records every GEMM and attention op dispatched (the op and its very arguments) while running."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, tuple, dict]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        kwargs = kwargs or {}
        name = func.name()
        if name in GEMM or is_attention(name):
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)


def kernel_floor(fn: Callable[[], None], repeats: int = 5) -> dict:
    """The GEMM and attention kernels of one `fn()` call replayed back to back on the same tensors (the
    model's own weights, the call's own activations), nothing between them: best of `repeats` replays, in
    seconds of wall and of process CPU time. What a run of these shapes would cost with no overhead at all (an
    upper bound of it: each replayed op still passes Python and the dispatcher once)."""
    recorder = _KernelRecorder()
    with recorder:
        fn()
    calls = recorder.calls

    def replay() -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    replay()  # warm-up
    wall = cpu = float("inf")
    for _ in range(repeats):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        replay()
        wall, cpu = min(wall, time.perf_counter() - tic), min(cpu, time.process_time() - cpu_tic)
    return {"seconds": wall, "cpu_seconds": cpu, "kernels": len(calls)}


def torch_profiled(fn: Callable[[], None]) -> tuple[torch.profiler.profile, float]:
    with torch.profiler.profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        tic = time.perf_counter()
        fn()
        wall = time.perf_counter() - tic
    return prof, wall


def is_attention(name: str) -> bool:
    return "scaleddotproduct" in name.replace("_", "").lower()


def op_breakdown(prof: torch.profiler.profile, wall_s: float, units: int, plain_s: float | None) -> dict:
    """GEMM / attention / other-op / Python shares of `wall_s`, top ops by self time, training phases."""
    self_us: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    kind_us = {"gemm": 0.0, "attention": 0.0, "other_ops": 0.0}
    phase_us: dict[str, float] = defaultdict(float)
    gemm_calls = attention_calls = op_calls = 0
    for event in prof.events():
        name = event.name
        chain, parent = [], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        for phase, prefix in PHASES.items():  # inclusive time of the outermost event of each phase
            if name.startswith(prefix) and not any(p.startswith(prefix) for p in chain):
                phase_us[phase] += event.cpu_time_total
        if event.is_user_annotation or name.startswith("profile::"):
            continue  # its self time is Python between ops: counted as `python` below
        op_calls += 1
        self_us[name] += event.self_cpu_time_total
        calls[name] += 1
        if is_attention(name) or any(is_attention(p) for p in chain):
            kind_us["attention"] += event.self_cpu_time_total
            attention_calls += int(not any(is_attention(p) for p in chain))
        elif name in GEMM:
            kind_us["gemm"] += event.self_cpu_time_total
            gemm_calls += int(not any(p in GEMM for p in chain))
        else:
            kind_us["other_ops"] += event.self_cpu_time_total
    wall_us = wall_s * 1e6
    ops_us = sum(kind_us.values())
    shares = {k: round(v / wall_us, 3) for k, v in kind_us.items()}
    shares["python"] = round(max(0.0, wall_us - ops_us) / wall_us, 3)
    shares["overhead"] = round(1 - (kind_us["gemm"] + kind_us["attention"]) / wall_us, 3)
    out: dict[str, Any] = {
        "profiled_ms": round(1e3 * wall_s / units, 2),
        "shares": shares,
        "op_calls": round(op_calls / units), "gemm_calls": round(gemm_calls / units),
        "attention_calls": round(attention_calls / units),
        "us_per_op_outside_gemm_attention": round((wall_us - kind_us["gemm"] - kind_us["attention"])
                                                  / max(1, op_calls - gemm_calls - attention_calls), 1),
        "top_ops_self": [{"op": n, "ms": round(us / 1e3 / units, 3), "share": round(us / wall_us, 3),
                          "calls": round(calls[n] / units)}
                         for n, us in sorted(self_us.items(), key=lambda kv: -kv[1])[:10]],
    }
    if plain_s is not None:
        plain_us = plain_s * 1e6
        out["gemm_of_plain"] = round(kind_us["gemm"] / plain_us, 3)
        out["attention_of_plain"] = round(kind_us["attention"] / plain_us, 3)
        out["overhead_of_plain"] = round(max(0.0, 1 - (kind_us["gemm"] + kind_us["attention"]) / plain_us), 3)
    if phase_us:
        out["phases"] = {k: round(v / wall_us, 3) for k, v in sorted(phase_us.items())}
    return out
