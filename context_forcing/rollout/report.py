"""Run reports from a session's chunk records: memory occupancy, positions, admission, cost, timings."""

from __future__ import annotations

import resource
import statistics
import sys
from typing import Any

from context_forcing.memory.plan import ChunkPlan
from context_forcing.model.flops import forward_flops
from context_forcing.rollout.session import ChunkRecord, StreamingSession

WINDOW = 10  # chunks per timing median


def attended_frames(plans: list[ChunkPlan]) -> int:
    """Frames the chunk attends to, itself included (the padded maximum over the batch)."""
    return max(p.slots for p in plans)


def part_counts(plan: ChunkPlan) -> dict[str, int]:
    """Frames per memory part; fast includes the chunk being generated (glossary, DESIGN.md section 2)."""
    counts = {part: sum(1 for p in plan.parts if p == part) for part in ("sink", "slow", "fast")}
    counts["fast"] += len(plan.chunk_frames)
    return counts


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def chunk_timings(records: list[ChunkRecord]) -> tuple[float | None, float | None]:
    """(median ms of the WINDOW chunks from the first that reaches the run's maximum attended frames,
    median ms of the last WINDOW chunks), over generated (not prefilled) chunks."""
    generated = [r for r in records if not r.prefill]
    if not generated:
        return None, None
    most = max(attended_frames(r.plans) for r in generated)
    first_full = next(i for i, r in enumerate(generated) if attended_frames(r.plans) == most)
    after_fill = [r.wall_ms for r in generated[first_full:first_full + WINDOW]]
    last = [r.wall_ms for r in generated[-WINDOW:]]
    return statistics.median(after_fill), statistics.median(last)


def session_report(session: StreamingSession, latent_frames: int, frames_written: int, wall_s: float) -> dict[str, Any]:
    """The `generate --report` JSON (see the CLI's help for the meaning of every key)."""
    records = session.records
    run, layout, memory = session.run, session.layout, session.memory
    plans = [p for r in records for p in r.plans]
    by_part = {part: max(part_counts(p)[part] for p in plans) for part in ("sink", "slow", "fast")}
    last = records[-1]
    context = max(len(p.frames) for p in last.plans)
    steps = len(run.sampler.student_timesteps) + 1  # denoising passes + the commit pass
    prompt_len = session.prompt.keys[0].shape[2]
    flops = steps * forward_flops(run.model, session.batch, layout.chunk, run.tokens_per_frame, context, prompt_len)
    slow_spans = [(t.slow[-1] - t.slow[0]) / run.video.latent_frames_per_second if len(t.slow) > 1 else 0.0
                  for t in memory.tables]
    after_fill, last_ms = chunk_timings(records)
    stats = memory.stats
    return {
        "preset": run.preset,
        "memory": layout.name,
        "batch": session.batch,
        "latent_frames": latent_frames,
        "frames_written": frames_written,
        "seconds": latent_frames / run.video.latent_frames_per_second,
        "wall_s": wall_s,
        "fps": latent_frames / wall_s if wall_s > 0 else None,
        "chunks": len(records),
        "max_slots": max(attended_frames(r.plans) for r in records),
        "max_slots_by_part": by_part,
        "budget": layout.budget,
        "max_position": max(max(p.positions + p.chunk_positions) for p in plans),
        "admissions": stats.admissions,
        "candidates": stats.candidates,
        "admission_rate": stats.admissions / stats.candidates if stats.candidates else None,
        "slow_span_seconds": max(slow_spans),
        "attended_tokens_max": max(attended_frames(r.plans) for r in records) * run.tokens_per_frame,
        "attended_tokens_last": attended_frames(last.plans) * run.tokens_per_frame,
        "flops_per_chunk": flops,
        "chunk_ms_after_fill": after_fill,
        "chunk_ms_last": last_ms,
        "peak_rss_mb": peak_rss_mb(),
    }
