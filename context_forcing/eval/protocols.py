"""P1 / P2 generation with a model (benchmarks.md "Protocols").

- P1, continuation: commit (prefill) the ground-truth frames [0, t0), then generate the rest with the true
  actions; the video is the prefix followed by the generated frames.
- P2, free rollout: generate every frame from the prompt and the actions.

Episodes run as the samples of one streaming session, a batch at a time. A sample's noise comes from (seed,
episode seed, chunk), so an episode's video does not depend on the batch it ran in. A `StreamCost` passed in
collects what the sessions measured: slow-memory admissions and the wall time and FLOPs of each chunk.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from context_forcing.codecs import PixelCodec
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.episodes import check_panworld_run, episode_conditioning
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.eval.cases import EvalCase
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.flops import forward_flops
from context_forcing.rollout.session import StreamingSession


def check_eval_run(run: RunConfig, world: PanWorldConfig) -> None:
    """Scores compare pixels with PanWorld frames: the run must generate them at full size (ConfigError)."""
    check_panworld_run(run, world)
    if (run.video.latent_height, run.video.latent_width) != (world.frame_height, world.frame_width):
        raise ConfigError(f"preset {run.preset!r} does not generate PanWorld's {world.frame_height}x"
                          f"{world.frame_width} frames (its latent frames are {run.video.latent_height}x"
                          f"{run.video.latent_width})")


@dataclass
class StreamCost:
    """What eval sessions measured: slow-memory admission and per-chunk cost of generated chunks."""

    candidates: int = 0
    admissions: int = 0
    chunk_ms: list[float] = field(default_factory=list)  # wall time of one generated chunk of one batch
    batch_sizes: list[int] = field(default_factory=list)  # the batch each entry of chunk_ms ran
    flops_per_chunk: int = 0  # per sample, at the largest context seen (denoising passes + commit pass)
    attended_frames: int = 0  # largest number of frames a chunk attended to, itself included

    def add_chunk(self, run: RunConfig, session: StreamingSession, record) -> None:
        self.chunk_ms.append(record.wall_ms)
        self.batch_sizes.append(session.batch)
        context = max(len(p.frames) for p in record.plans)
        slots = max(p.slots for p in record.plans)
        if slots > self.attended_frames:
            passes = len(run.sampler.student_timesteps) + 1
            prompt_len = session.prompt.keys[0].shape[2]
            self.attended_frames = slots
            self.flops_per_chunk = passes * forward_flops(run.model, 1, run.chunk, run.tokens_per_frame,
                                                          context, prompt_len)

    def add_memory(self, session: StreamingSession) -> None:
        if not session.layout.slow:  # no slow memory: nothing is a candidate for admission
            return
        self.candidates += session.memory.stats.candidates
        self.admissions += session.memory.stats.admissions

    def summary(self) -> dict:
        """admission_rate (None when nothing was a candidate, e.g. without slow memory) and cost_per_chunk:
        the median wall ms of a batch's chunk, that over the batch (ms per episode-chunk),
        the analytic FLOPs and attended frames."""
        per_episode = [ms / b for ms, b in zip(self.chunk_ms, self.batch_sizes)]
        return {
            "admission_rate": self.admissions / self.candidates if self.candidates else None,
            "admissions": self.admissions,
            "candidates": self.candidates,
            "cost_per_chunk": {
                "chunks": len(self.chunk_ms),
                "batch": max(self.batch_sizes) if self.batch_sizes else None,
                "ms_median": statistics.median(self.chunk_ms) if self.chunk_ms else None,
                "ms_per_episode_median": statistics.median(per_episode) if per_episode else None,
                "flops": self.flops_per_chunk,
                "attended_frames": self.attended_frames,
            },
        }


def generate_videos(model: CausalVideoDiT, run: RunConfig, cases: list[EvalCase], protocol: str,
                    layout: MemoryLayout | None = None, seed: int = 0, batch_size: int = 8,
                    progress: bool = True, cost: StreamCost | None = None) -> list[np.ndarray]:
    """Whole videos (padded, H, W, 3) uint8 of protocol `protocol` ("p1" | "p2"), one per case; `cost`, when
    given, accumulates the sessions' admissions and chunk costs."""
    if protocol not in ("p1", "p2"):
        raise ValueError(f"protocol must be 'p1' or 'p2', got {protocol!r}")
    check_eval_run(run, cases[0].episode.cfg)
    if any(c.t0 % run.chunk or c.padded % run.chunk for c in cases):
        raise ValueError(f"eval cases must be made with the model's chunk ({run.chunk} frames)")
    model.eval()
    videos: list[np.ndarray] = []
    chunks = sum(c.padded - (c.t0 if protocol == "p1" else 0) for c in cases) // run.chunk
    with tqdm(total=chunks, desc=f"eval {protocol}", unit="chunk", disable=not progress, leave=False) as bar:
        for lo in range(0, len(cases), batch_size):
            videos.extend(_generate_batch(model, run, cases[lo:lo + batch_size], protocol, layout, seed,
                                          bar, cost))
    return videos


def _generate_batch(model: CausalVideoDiT, run: RunConfig, cases: list[EvalCase], protocol: str,
                    layout: MemoryLayout | None, seed: int, bar: tqdm, cost: StreamCost | None
                    ) -> list[np.ndarray]:
    padded, codec = cases[0].padded, PixelCodec()
    cond = episode_conditioning(run, [c.episode for c in cases], padded)  # prefilled and generated frames
    session = StreamingSession(model, run, cond, seed=seed, samples=[c.episode.seed for c in cases],
                               layout=layout, codec=codec)
    prefix = cases[0].t0 if protocol == "p1" else 0
    parts = [np.stack([c.truth[:prefix] for c in cases])]  # (B, t0, H, W, 3)
    if prefix:
        session.prefill(codec.encode(torch.from_numpy(parts[0])))
    for chunk in session.stream(padded):
        parts.append(chunk.pixels.cpu().numpy())  # (B, c, H, W, 3)
        bar.update(len(cases))
        if cost is not None:
            cost.add_chunk(run, session, chunk.record)
    if cost is not None:
        cost.add_memory(session)
    return list(np.concatenate(parts, axis=1)[:, :padded])
