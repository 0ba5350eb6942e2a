"""Where the time goes: the streaming chunk step and one update of each training stage (issue 12, item 1).

Prints exactly one JSON document on stdout (progress on stderr). A few minutes on 2 CPU cores:
    .venv/bin/python benchmarks/breakdown.py [--threads N] [--presets tiny panworld]
        [--stages ...] [--chunks 10]

Chunk step: the issue's frozen benchmark config (benchmarks/frozen.py: width 256, 4 heads, 4 layers, FFN 768,
8 tokens per frame, memory `sink3-slow12-fast6:uniform4:bounded`, random weights), batch 1 and batch 4. The
session streams until the memory is full (21 context frames), then `--chunks` chunks are timed plainly, then
the same number under `torch.profiler` (CPU, by op), then under cProfile.

Training: one update of each stage at each preset (`for_preset(stage, preset)`, built by `build_stage` as in
benchmarks/training.py, a random-weight teacher for the distillation stages), after one warm-up update; the
updates are numbered from `ema_start` so the EMA does its decay, not its copy. One plain update, one under
torch.profiler and one under cProfile (different updates: their lengths may differ, shares are what count).

Shares (of the profiled wall time; `*_of_plain` divide the profiled kernel times by the unprofiled wall time,
the better estimate when the profiler's own per-op cost inflates the run):
- gemm: self CPU time of aten::mm / addmm / bmm / baddbmm / matmul / linear outside attention;
- attention: all time inside scaled_dot_product_attention (its flash/math internals, its backward);
- other_ops: self time of every other op (elementwise, copies, cat, norms, RoPE, optimiser, autograd engine);
- python: wall time not inside any op (the interpreter between ops, the library's Python bookkeeping);
- overhead = other_ops + python = 1 - gemm - attention (issue 12's target: <= 0.3 at batch 4).
Training phases (inclusive time): backward (autograd engine), optimizer (AdamW.step, clipping), ema, data.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from frozen import (
    LAYOUT,
    InstrumentedData,
    fill_memory,
    frozen_model,
    frozen_run,
    frozen_session,
    op_breakdown,
    random_teacher,
    torch_profiled,
)
from torch import nn
from torch.profiler import record_function

from context_forcing.presets import get_preset
from context_forcing.rollout.records import attended_frames
from context_forcing.training import ema as ema_module
from context_forcing.training import optim as optim_module
from context_forcing.training.config import STAGES, for_preset
from context_forcing.training.data import build_training_data
from context_forcing.training.registry import build_stage


def python_top(run_profiled: Callable[[], None], units: int, limit: int = 10) -> dict:
    """cProfile of `run_profiled`: the top Python functions by own time (tottime) and by cumulative time."""
    profiler = cProfile.Profile()
    tic = time.perf_counter()
    profiler.enable()
    run_profiled()
    profiler.disable()
    wall = time.perf_counter() - tic
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (path, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{func}" if path == "~" else f"{Path(path).name}:{line}:{func}"
        if "site-packages/torch" in path and path != "~":
            where = "torch/" + where
        rows.append((where, ncalls, tottime, cumtime))

    def table(key: int) -> list[dict]:
        top = sorted(rows, key=lambda r: -r[key])[:limit]
        return [{"function": w, "calls": round(n / units), "own_share": round(t / wall, 3),
                 "cum_share": round(c / wall, 3)} for w, n, t, c in top]

    calls = sum(r[1] for r in rows)
    return {"cprofile_ms": round(1e3 * wall / units, 2), "python_calls": round(calls / units),
            "top_own": table(2), "top_cumulative": [r for r in table(3) if r["cum_share"] < 0.999][:limit]}


def profile_stream(batch: int, chunks: int, tokens_per_frame: int = 8) -> dict:
    run = frozen_run(tokens_per_frame)
    session = frozen_session(frozen_model(run), run, batch, run.chunk * (80 + 3 * chunks))
    warm = fill_memory(session)
    context = attended_frames(session.records.last.plans)

    def run_chunks() -> None:
        for _ in range(chunks):
            session.generate_chunk()

    tic, cpu = time.perf_counter(), time.process_time()
    run_chunks()
    plain, cpu = time.perf_counter() - tic, time.process_time() - cpu
    prof, wall = torch_profiled(run_chunks)
    out = {"batch": batch, "tokens_per_frame": run.tokens_per_frame, "warmup_chunks": warm,
           "context_frames": context,
           "attended_tokens": context * run.tokens_per_frame, "chunks": chunks,
           "plain_ms": round(1e3 * plain / chunks, 2), "cpu_s_per_wall_s": round(cpu / plain, 3),
           **op_breakdown(prof, wall, chunks, plain)}
    out["cprofile"] = python_top(run_chunks, chunks)
    print(f"stream batch {batch}: plain {out['plain_ms']} ms/chunk, shares {out['shares']}", file=sys.stderr)
    return out


def annotate_training() -> None:
    """Label the EMA update and clip-and-step in the profile (wrappers installed by this script only)."""
    update = ema_module.EMA.update

    def ema_update(self: Any, module: nn.Module, updates: int) -> None:
        with record_function("profile::ema_update"):
            update(self, module, updates)

    ema_module.EMA.update = ema_update  # type: ignore[method-assign]
    clip_and_step = optim_module.clip_and_step

    def annotated_clip(optimizer: torch.optim.Optimizer, clip: float) -> float:
        with record_function("profile::clip_and_step"):
            return clip_and_step(optimizer, clip)

    optim_module.clip_and_step = annotated_clip  # accumulate_step looks it up in the module at call time


def profile_stage(name: str, preset: str, teacher: Path) -> dict:
    run = get_preset(preset)
    train = for_preset(name, preset)
    data = InstrumentedData(build_training_data(run, train))
    torch.manual_seed(0)
    stage = build_stage(name, run, train, init=None, teacher=None if name == "teacher" else str(teacher),
                        data=data)
    step = train.ema_start
    stage.train_step(step)  # warm-up: allocations, optimiser state, kernel selection
    tic, cpu = time.perf_counter(), time.process_time()
    stage.train_step(step + 1)
    plain, cpu = time.perf_counter() - tic, time.process_time() - cpu
    prof, wall = torch_profiled(lambda: stage.train_step(step + 2))
    out = {"batch": train.batch, "steps": [step + 1, step + 2, step + 3], "plain_ms": round(1e3 * plain, 1),
           "cpu_s_per_wall_s": round(cpu / plain, 3),
           **op_breakdown(prof, wall, 1, None)}
    out["cprofile"] = python_top(lambda: stage.train_step(step + 3), 1)
    print(f"{preset} {name}: plain {out['plain_ms']} ms, profiled {out['profiled_ms']} ms, shares "
          f"{out['shares']}, phases {out.get('phases')}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="default: the core count")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4])
    parser.add_argument("--chunks", type=int, default=10, help="chunks per pass, after the memory filled")
    parser.add_argument("--presets", nargs="*", default=["tiny", "panworld"])
    parser.add_argument("--stages", nargs="*", choices=STAGES, default=list(STAGES))
    args = parser.parse_args()
    if args.threads < 1 or args.chunks < 1:
        parser.error("--threads and --chunks must be >= 1")
    torch.set_num_threads(args.threads)
    annotate_training()
    start = time.perf_counter()
    out: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "stream_config": {"model": vars(frozen_run().model), "memory": LAYOUT, "chunk": frozen_run().chunk,
                          "tokens_per_frame": frozen_run().tokens_per_frame},
        "stream": {}, "training": {},
    }
    with torch.no_grad():
        for batch in args.batches:
            out["stream"][f"batch{batch}"] = profile_stream(batch, args.chunks)
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            teacher = random_teacher(get_preset(preset), Path(tmp))
            out["training"][preset] = {name: profile_stage(name, preset, teacher) for name in args.stages}
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
