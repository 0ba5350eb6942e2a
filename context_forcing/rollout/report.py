"""Run reports from a session's chunk history: memory occupancy, positions, admission, cost, timings."""

from __future__ import annotations

import resource
import statistics
import sys
from typing import Any

from context_forcing.model.flops import forward_flops
from context_forcing.rollout.records import ChunkHistory, attended_frames
from context_forcing.rollout.session import StreamingSession


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def chunk_timings(records: ChunkHistory) -> tuple[float | None, float | None]:
    """(median ms of the WINDOW generated chunks from the first that reached the run's widest context,
    median ms of the last WINDOW generated chunks); prefilled chunks do not count."""
    if not records.generated:
        return None, None
    return statistics.median(records.after_fill_ms), statistics.median(records.last_ms)


def session_report(session: StreamingSession, latent_frames: int, frames_written: int,
                   wall_s: float) -> dict[str, Any]:
    """The `generate --report` JSON (see the CLI's help for the meaning of every key)."""
    records = session.records
    run, layout, memory = session.run, session.layout, session.memory
    last = records.last
    context = max(len(p.frames) for p in last.plans)
    steps = len(run.sampler.student_timesteps) + 1  # denoising passes + the commit pass
    prompt_len = session.prompt.keys[0].shape[2]
    flops = steps * forward_flops(run.model, session.batch, layout.chunk, run.tokens_per_frame,
                                  context, prompt_len)
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
        "chunks": records.count,
        "max_slots": records.max_attended,
        "max_slots_by_part": dict(records.max_by_part),
        "budget": layout.budget,
        "max_position": records.max_position,
        "admissions": stats.admissions,
        "candidates": stats.candidates,
        "admission_rate": stats.admissions / stats.candidates if stats.candidates else None,
        "slow_span_seconds": max(slow_spans),
        "attended_tokens_max": records.max_attended * run.tokens_per_frame,
        "attended_tokens_last": attended_frames(last.plans) * run.tokens_per_frame,
        "flops_per_chunk": flops,
        "chunk_ms_after_fill": after_fill,
        "chunk_ms_last": last_ms,
        "peak_rss_mb": peak_rss_mb(),
    }
