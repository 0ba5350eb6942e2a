"""Streaming throughput of issue 12's frozen chunk-step config against a full Slow-Fast Memory.

Prints exactly one JSON document on stdout (progress on stderr). About 3 minutes on 2 quiet CPU cores:
    .venv/bin/python benchmarks/streaming.py [--threads N] [--batches 1 4] [--tokens 8 16] [--seconds 300]
        [--chunks 20] [--profile-chunks 5] [--dtype float32] [--paths eager compiled]

Two chunk steps (`--paths`, default both when a C++ compiler is present): the eager one and the compiled one
(model/compiled.py: the forward compiled by inductor with frozen weights, contexts padded to the budget). Runs
are keyed `tokens{T}_batch{B}` (compiled) and `tokens{T}_batch{B}_eager`; the unsuffixed top-level keys
belong to the last path run (`chunk_step`), the other path's carry `_eager`. A compiled run's first chunk
compiles its graphs (`first_chunk_s`); its overhead share comes from a profile of the same graphs called from
Python (a profiler sees no kernel under the C++ wrapper the timed chunks use): `overhead_share` of that
profile, and `overhead_share_plain` = 1 - its GEMM and attention kernel time / the timed chunk. The kernel
floor (below) replays eager kernels, so it is reported for eager runs only; a compiled run reports instead the
time inside its graph calls (`graph_ms` per chunk: cProfile's own time of the C++ wrapper's
`inductor_entry_cpp`, every kernel of the forward and no Python, over `GRAPH_CHUNKS` chunks) and
`peak_fraction_ceiling_graph`, the fraction a chunk would reach if nothing but its graph calls ran.

The frozen config (benchmarks/frozen.py: width 256, 4 layers, 8 tokens per frame, memory
`sink3-slow12-fast6:uniform4:bounded`; uniform admission so the memory fills) and its 16-tokens-per-frame
variant, random weights (speed does not depend on them), latents only. Threads: `--threads`, default the
machine's core count, also for the matmul peak. Per (tokens, batch), after the memory filled (21 context
frames): chunk ms (median), latent frames / s (all samples), analytic FLOPs per chunk (model/flops.py: 4
denoising passes + the commit pass), achieved GFLOP/s and the fraction of the fp32 matmul peak measured in
this run. The 8-token runs stream `--seconds` of video (chunk_time_ratio_end_start: the last 10 chunks over
the first 10 after fill) and then profile `--profile-chunks` chunks with torch.profiler for the overhead
share (time outside GEMM and attention kernels; benchmarks/breakdown.py has the definitions). The 16-token
runs time `--chunks` chunks after fill. Every run then replays one more chunk's GEMM and attention kernels
back to back on the same tensors (frozen.kernel_floor): `kernel_floor_ms`, the `peak_fraction_ceiling` those
shapes allow on this host with no overhead at all, and `overhead_share_plain` = 1 - floor / chunk ms (the
overhead without a profiler's own cost). All ratios come from this one run. With `--threads 1`, also by
process CPU time (`*_cpu`: FLOPs over the CPU seconds of the chunks after fill, against a CPU-time matmul
peak): the estimate of an undisturbed core when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from typing import Callable

import torch
from frozen import (
    LAYOUT,
    fill_memory,
    frozen_model,
    frozen_run,
    frozen_session,
    kernel_floor,
    op_breakdown,
    torch_profiled,
)

from context_forcing.model.compiled import CompiledForward, compiler_available
from context_forcing.rollout.report import chunk_timings, session_report
from context_forcing.rollout.session import StreamingSession

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PATHS = ("eager", "compiled")  # the chunk step: eager, or compiled with frozen weights (model/compiled.py)
SUFFIX = {"eager": "_eager", "compiled": ""}  # of a run's key; the top level drops it for the headline
GRAPH_CHUNKS = 10  # compiled runs: chunks whose graph calls are timed (`graph_figures`)


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


def stream(tokens: int, batch: int, frames: int, dtype: torch.dtype, peak: float, peak_cpu: float | None,
           profile_chunks: int = 0, compiled: bool = False) -> dict:
    """Fill the memory (51 chunks: also the warm-up, and the compilation of a compiled session), then
    generate up to `frames` latent frames; figures over the chunks after fill."""
    run = frozen_run(tokens)
    model = frozen_model(run).to(dtype)
    chunks = -(-frames // run.chunk)
    extra = 2 * profile_chunks + GRAPH_CHUNKS + 1  # chunks generated after the timed ones
    session = frozen_session(model, run, batch, run.chunk * (max(chunks, 60) + extra), compile=compiled)
    tic = time.perf_counter()
    session.generate_chunk()  # a compiled session compiles its graphs here
    compile_s = time.perf_counter() - tic
    filled = 1 + fill_memory(session, extra=0)
    if filled >= chunks:
        raise ValueError(f"{frames} latent frames do not reach past the memory fill ({filled} chunks)")
    steady_ms = []
    cpu = time.process_time()
    for chunk in session.stream(chunks * run.chunk):
        steady_ms.append(chunk.record.wall_ms)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - tic
    report = session_report(session, session.frames_done, 0, wall)
    ms = statistics.median(steady_ms)
    out = {
        "tokens_per_frame": run.tokens_per_frame,
        "batch": batch,
        "chunk_step": "compiled" if compiled else "eager",
        "first_chunk_s": round(compile_s, 2),  # compiled: the one-time compilation of its graphs
        "latent_frames": session.frames_done,
        "chunks_after_fill": len(steady_ms),
        "wall_s": round(wall, 2),
        "cpu_s_per_wall_s": round(cpu / (sum(steady_ms) / 1e3), 3),
        "chunk_ms": round(ms, 2),
        "chunk_ms_min": round(min(steady_ms), 2),
        "latent_fps": round(batch * run.chunk / (ms / 1e3), 1),  # latent frames of all samples per second
        "attended_tokens": report["attended_tokens_last"],
        "max_slots": report["max_slots"],
        "flops_per_chunk": report["flops_per_chunk"],
        "achieved_gflops": round(report["flops_per_chunk"] / (ms / 1e3) / 1e9, 2),
    }
    out["peak_fraction"] = round(out["achieved_gflops"] / peak, 3)
    if peak_cpu is not None:  # one thread: by process CPU time, the estimate that survives a busy machine
        out["achieved_gflops_cpu"] = round(report["flops_per_chunk"] * len(steady_ms) / cpu / 1e9, 2)
        out["peak_fraction_cpu"] = round(out["achieved_gflops_cpu"] / peak_cpu, 3)
    after_fill, last = chunk_timings(session.records)
    out["chunk_time_ratio_end_start"] = round(last / after_fill, 3)
    if compiled:  # a profiler sees no kernel under the C++ wrapper: profile these graphs called from Python
        out.update(graph_figures(session, out, peak))
        session.compiled = CompiledForward(model, cpp_wrapper=False)
        session.generate_chunk()  # compiles
    else:  # the kernel floor replays eager kernels; the compiled step calls others (prepacked GEMMs)
        out.update(floor_figures(session, out, peak, peak_cpu))
    if profile_chunks:
        out.update(profile_overhead(session, profile_chunks))
        if compiled:  # the same kernels as the timed C++-wrapper chunks: their share of those chunks
            shares, profiled_ms = out["profile"]["shares"], out["profile"]["profiled_ms"]
            kernels_ms = (shares["gemm"] + shares["attention"]) * profiled_ms
            out["kernels_ms_profiled"] = round(kernels_ms, 2)
            out["overhead_share_plain"] = round(1 - kernels_ms / out["chunk_ms"], 3)
    print(f"tokens {tokens} batch {batch}: {out}", file=sys.stderr)
    return out


def floor_figures(session: StreamingSession, out: dict, peak: float, peak_cpu: float | None) -> dict:
    """The next chunk's GEMM and attention kernels alone (frozen.kernel_floor): their time, the peak fraction
    a chunk would reach with no overhead at all (the ceiling the config's shapes allow on this host), and the
    overhead share measured without a profiler (1 - kernel floor / plain chunk time)."""
    floor = kernel_floor(session.generate_chunk)
    figures = {"kernel_floor_ms": round(1e3 * floor["seconds"], 2), "kernels_per_chunk": floor["kernels"],
               "peak_fraction_ceiling": round(out["flops_per_chunk"] / floor["seconds"] / 1e9 / peak, 3),
               "overhead_share_plain": round(1 - 1e3 * floor["seconds"] / out["chunk_ms"], 3)}
    if peak_cpu is not None:
        figures["peak_fraction_ceiling_cpu"] = round(out["flops_per_chunk"] / floor["cpu_seconds"] / 1e9
                                                     / peak_cpu, 3)
    return figures


def graph_figures(session: StreamingSession, out: dict, peak: float) -> dict:
    """Compiled (C++ wrapper) session: the time inside its graph calls per chunk over `GRAPH_CHUNKS` chunks
    (cProfile's own time of `inductor_entry_cpp`), and the peak fraction of a chunk that ran nothing else.
    Empty when no graph ran (the eager fallback)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(GRAPH_CHUNKS):
        session.generate_chunk()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    graph_s = sum(own for (_, _, name), (_, _, own, _, _) in stats.items() if "inductor_entry_cpp" in name)
    if graph_s == 0:
        return {}
    graph_s /= GRAPH_CHUNKS
    return {"graph_ms": round(1e3 * graph_s, 2),
            "peak_fraction_ceiling_graph": round(out["flops_per_chunk"] / graph_s / 1e9 / peak, 3)}


def profile_overhead(session: StreamingSession, chunks: int) -> dict:
    """Overhead share (1 - GEMM - attention) of `chunks` chunks under torch.profiler (and of their plain
    time)."""
    def run_chunks() -> None:
        for _ in range(chunks):
            session.generate_chunk()

    tic = time.perf_counter()
    run_chunks()
    plain = time.perf_counter() - tic
    prof, wall = torch_profiled(run_chunks)
    shares = op_breakdown(prof, wall, chunks, plain)
    return {"profile": {k: shares[k] for k in ("profiled_ms", "shares", "op_calls", "gemm_calls",
                                               "attention_calls", "overhead_of_plain")},
            "overhead_share": shares["shares"]["overhead"]}


def top_level(results: dict[str, dict], batches: list[int], path: str, headline: bool) -> dict:
    """The frozen config's (8 tokens) figures of one path at the top level: unsuffixed for the largest
    batch, `_batch1` etc. for the others, with the path's suffix (`_eager`) unless it is the headline."""
    frozen = {b: results[f"tokens8_batch{b}{SUFFIX[path]}"] for b in batches
              if f"tokens8_batch{b}{SUFFIX[path]}" in results}
    out: dict[str, float] = {}
    if not frozen:
        return out
    path_suffix = "" if headline else SUFFIX[path]
    ratio = max(r["chunk_time_ratio_end_start"] for r in frozen.values())
    out[f"chunk_time_ratio_end_start{path_suffix}"] = ratio
    for batch, r in frozen.items():
        suffix = ("" if batch == max(frozen) else f"_batch{batch}") + path_suffix
        for key in ("chunk_ms", "latent_fps", "achieved_gflops", "peak_fraction", "peak_fraction_cpu",
                    "overhead_share", "first_chunk_s", "kernel_floor_ms", "peak_fraction_ceiling",
                    "overhead_share_plain", "graph_ms", "peak_fraction_ceiling_graph"):
            if key in r:
                out[f"{key}{suffix}"] = r[key]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="default: the core count")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, nargs="+", default=[8, 16], help="tokens per frame (8: frozen)")
    parser.add_argument("--seconds", type=float, default=300.0, help="video length of the 8-token runs")
    parser.add_argument("--chunks", type=int, default=20, help="chunks timed after fill, other token counts")
    parser.add_argument("--profile-chunks", type=int, default=5, help="chunks profiled (8-token runs)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="model and memory dtype")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=None,
                        help="chunk steps to run (default: both when a C++ compiler is present, else eager)")
    args = parser.parse_args()
    if args.threads < 1 or args.chunks < 1:
        parser.error("--threads and --chunks must be >= 1")
    paths = args.paths or (list(PATHS) if compiler_available() else ["eager"])
    if "compiled" in paths and not compiler_available():
        parser.error("--paths compiled needs a C++ compiler (g++, c++ or clang++ on PATH, or $CXX)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    peak = matmul_peak_gflops()
    peak_cpu = matmul_peak_gflops(clock=time.process_time) if args.threads == 1 else None
    print(f"matmul peak {peak:.1f} GFLOP/s with {torch.get_num_threads()} threads", file=sys.stderr)
    dtype, fill_frames = DTYPES[args.dtype], 3 * 51  # the frozen layout fills after 51 chunks
    results: dict[str, dict] = {}
    with torch.no_grad():
        for path in paths:
            for tokens in args.tokens:
                for batch in args.batches:
                    frames = (int(args.seconds * 4) if tokens == 8 else fill_frames + 3 * args.chunks)
                    profile = args.profile_chunks if tokens == 8 else 0
                    results[f"tokens{tokens}_batch{batch}{SUFFIX[path]}"] = stream(
                        tokens, batch, frames, dtype, peak, peak_cpu, profile, compiled=path == "compiled")
    out = {
        "config": frozen_run().preset, "memory": LAYOUT, "dtype": args.dtype,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_start": load_start,
        "matmul_peak_gflops": round(peak, 2),
        "matmul_peak_gflops_cpu": None if peak_cpu is None else round(peak_cpu, 2),
        "chunk_step": paths[-1],  # the path of the unsuffixed top-level figures (the fastest one run)
        "runs": results,
    }
    for path in paths:
        out.update(top_level(results, args.batches, path, headline=path == paths[-1]))
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
