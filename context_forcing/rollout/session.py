"""A streaming generation session: chunk after chunk against the Slow-Fast Memory, frames yielded as they
are decoded; `prefill` commits given frames first (continuation, teacher-forced evaluation)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from context_forcing.codecs.base import Codec
from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.noise import ChunkNoise
from context_forcing.diffusion.schedule import student_sigmas
from context_forcing.memory.layout import MemoryLayout, parse_layout
from context_forcing.memory.plan import ChunkPlan
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.chunk_step import ChunkInputs, commit_pass, denoise_chunk, frame_inputs, new_memory


@dataclass
class ChunkRecord:
    """What happened in one chunk (for reports and tests)."""

    index: int
    start: int  # first absolute latent frame of the chunk
    plans: list[ChunkPlan]
    wall_ms: float
    prefill: bool


@dataclass
class StreamChunk:
    latents: Tensor  # (B, c, C, H, W)
    pixels: Tensor | None  # (B, t, H, W, 3) uint8 when the session has a codec
    record: ChunkRecord


class StreamingSession:
    """Generates a batch of videos chunk by chunk. Sample b's randomness comes from (seed, samples[b], chunk)."""

    def __init__(self, model: CausalVideoDiT, run: RunConfig, cond: Conditioning, seed: int = 0,
                 samples: list[int] | None = None, layout: MemoryLayout | str | None = None,
                 codec: Codec | None = None) -> None:
        self.model, self.run, self.cond, self.seed, self.codec = model, run, cond, seed, codec
        self.batch = cond.batch_size
        self.samples = list(range(self.batch)) if samples is None else list(samples)
        if len(self.samples) != self.batch:
            raise ValueError(f"samples has {len(self.samples)} entries for a batch of {self.batch}")
        if layout is None or isinstance(layout, str):
            layout = parse_layout(layout or run.memory.layout, run.chunk)
        self.layout = layout
        self.device = next(model.parameters()).device
        self.memory = new_memory(run, layout, self.batch, self.device)
        self.sigmas = student_sigmas(run.sampler.student_timesteps, run.sampler.shift,
                                     run.sampler.num_train_timesteps).to(self.device)
        with torch.no_grad():
            self.prompt = model.encode_prompt(cond.to(self.device))
        self.records: list[ChunkRecord] = []
        self._decoder = codec.stream_decoder() if codec is not None else None

    @property
    def frames_done(self) -> int:
        return self.memory.next_frame

    def _chunk_inputs(self, plans: list[ChunkPlan]) -> tuple[ChunkInputs, Tensor]:
        start, c = self.frames_done, self.layout.chunk
        cond = self._frames_cond(start, c)
        context = self.memory.context(self.model, plans)
        temporal = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32, device=self.device)
        return ChunkInputs(self.prompt, temporal, cond, context), temporal

    def _frames_cond(self, start: int, count: int) -> Conditioning:
        available = self.cond.num_frames
        if available is not None and available < start + count:
            raise ValueError(f"the conditioning covers {available} latent frames; chunk at frame {start} needs "
                             f"{start + count}")
        return self.cond.frames(slice(start, start + count)).to(self.device)

    @torch.no_grad()
    def generate_chunk(self) -> tuple[Tensor, ChunkRecord]:
        """Denoise the next chunk with the few-step sampler, commit it; returns latents (B, c, C, H, W)."""
        tic = time.perf_counter()
        index, c = len(self.records), self.layout.chunk
        plans = self.memory.plan()
        inputs, _ = self._chunk_inputs(plans)
        noise = ChunkNoise(self.seed, self.samples, self.frames_done // c)
        shape = (c, self.run.model.in_channels, self.run.video.latent_height, self.run.video.latent_width)
        x0, first_kv = denoise_chunk(self.model, inputs, noise.draw(shape, self.device), self.sigmas,
                                     lambda _: noise.draw(shape, self.device), self.run.sampler.num_train_timesteps,
                                     capture_first_kv=self.run.memory.admit_kv == "first_pass")
        self.memory.commit(commit_pass(self.model, inputs, x0), frame_inputs(self.model, self.run, x0, inputs.cond), first_kv)
        record = ChunkRecord(index, plans[0].chunk_frames[0], plans, 1000 * (time.perf_counter() - tic), False)
        self.records.append(record)
        return x0, record

    @torch.no_grad()
    def prefill(self, latents: Tensor) -> None:
        """Commit given clean latents (B, F, C, H, W), F a multiple of the chunk, as if generated."""
        c = self.layout.chunk
        if latents.ndim != 5 or latents.shape[0] != self.batch or latents.shape[1] % c:
            raise ValueError(f"prefill latents must be ({self.batch}, k*{c}, C, H, W), got {tuple(latents.shape)}")
        for i in range(0, latents.shape[1], c):
            tic = time.perf_counter()
            plans = self.memory.plan()
            inputs, _ = self._chunk_inputs(plans)
            clean = latents[:, i:i + c].to(self.device)
            first_kv = None
            if self.run.memory.admit_kv == "first_pass":
                first_kv = commit_pass(self.model, inputs, clean)
            self.memory.commit(commit_pass(self.model, inputs, clean), frame_inputs(self.model, self.run, clean, inputs.cond),
                               first_kv)
            self.records.append(ChunkRecord(len(self.records), plans[0].chunk_frames[0], plans,
                                            1000 * (time.perf_counter() - tic), True))

    def stream(self, num_frames: int) -> Iterator[StreamChunk]:
        """Generate whole chunks until `num_frames` latent frames exist; yield each chunk as it is done."""
        while self.frames_done < num_frames:
            latents, record = self.generate_chunk()
            pixels = self._decoder.decode(latents) if self._decoder is not None else None
            yield StreamChunk(latents, pixels, record)
