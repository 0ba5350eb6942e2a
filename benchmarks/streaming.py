"""Streaming throughput of the panworld preset against a full Slow-Fast Memory.

Prints exactly one JSON document on stdout (progress on stderr). Runs in under a minute on 2 CPU cores:
    .venv/bin/python benchmarks/streaming.py
Memory `sink3-slow12-fast6:uniform4` (uniform admission so the memory fills; similarity admission depends on
trained weights). Random weights: speed does not depend on them. Latents only (the pixel codec's decode is a
rescale). All ratios are measured in this one run, against the machine's own fp32 matmul rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import torch

from context_forcing.data.episodes import episode_conditioning, panworld_episodes
from context_forcing.memory.layout import parse_layout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset
from context_forcing.rollout.report import chunk_timings, session_report
from context_forcing.rollout.session import StreamingSession

LAYOUT = "sink3-slow12-fast6:uniform4:bounded"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """Best of `repeats` fp32 n x n matmuls, in GFLOP/s (2 n^3 FLOPs each); `clock` = time.process_time counts
    only this process's CPU time (a busy machine; one thread)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        tic = clock()
        torch.mm(a, b)
        best = min(best, clock() - tic)
    return 2 * n**3 / best / 1e9


def stream(model: CausalVideoDiT, batch: int, seconds: float, seed: int = 0) -> dict:
    """Generate `seconds` of video; latent frames per second, timings and analytic FLOP rate after fill."""
    run = get_preset("panworld")
    frames = int(seconds * run.video.latent_frames_per_second)
    chunks = -(-frames // run.chunk)
    cond = episode_conditioning(run, panworld_episodes(run, seed, batch, chunks * run.chunk),
                                chunks * run.chunk)
    session = StreamingSession(model, run, cond, seed=seed, layout=parse_layout(LAYOUT, run.chunk))
    tic = time.perf_counter()
    for _ in session.stream(frames):
        pass
    wall = time.perf_counter() - tic
    report = session_report(session, frames, 0, wall)
    after_fill, last = chunk_timings(session.records)
    steady_ms = statistics.median(session.records.last_ms)  # the last 10 chunks
    return {
        "seconds": seconds,
        "latent_frames": frames,
        "wall_s": round(wall, 3),
        "latent_fps": round(batch * frames / wall, 2),  # latent frames of all samples per wall second
        "chunk_ms_after_fill": round(after_fill, 3),
        "chunk_ms_last": round(last, 3),
        "chunk_time_ratio_end_start": round(last / after_fill, 3),
        "max_slots": report["max_slots"],
        "attended_tokens_last": report["attended_tokens_last"],
        "flops_per_chunk": report["flops_per_chunk"],
        "achieved_gflops": round(report["flops_per_chunk"] / (steady_ms / 1e3) / 1e9, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0, 300.0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = CausalVideoDiT(get_preset("panworld").model, get_preset("panworld").text).eval()
    peak = matmul_peak_gflops()
    print(f"matmul peak {peak:.1f} GFLOP/s with {torch.get_num_threads()} threads", file=sys.stderr)
    results: dict[str, dict] = {}
    for batch in args.batches:
        stream(model, batch, 3.0)  # warm-up: first-call allocations and kernel selection are not steady state
        for seconds in args.seconds:
            key = f"batch{batch}_{int(seconds)}s"
            results[key] = stream(model, batch, seconds)
            print(f"{key}: {results[key]}", file=sys.stderr)
    longest = max(args.seconds)
    out = {
        "preset": "panworld",
        "memory": LAYOUT,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflops": round(peak, 2),
        "runs": results,
        "chunk_time_ratio_end_start": max(r["chunk_time_ratio_end_start"] for r in results.values()
                                          if r["seconds"] == longest),
    }
    for batch in args.batches:
        achieved = results[f"batch{batch}_{int(longest)}s"]["achieved_gflops"]
        suffix = "" if batch == max(args.batches) else f"_batch{batch}"
        out[f"achieved_gflops{suffix}"] = achieved
        out[f"peak_fraction{suffix}"] = round(achieved / peak, 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
