"""A streaming generation session: chunk after chunk against the Slow-Fast Memory, frames yielded as they
are decoded; `prefill` commits given frames first (continuation, teacher-forced evaluation)."""

from __future__ import annotations

import dataclasses
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
from context_forcing.memory.factory import frame_inputs, new_memory
from context_forcing.memory.layout import MemoryLayout, run_layout
from context_forcing.memory.plan import ChunkPlan
from context_forcing.memory.slow_fast import AdmissionEvent, host_tensor
from context_forcing.model.compiled import CompiledForward
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.chunk_step import ChunkInputs, commit_pass, denoise_chunk
from context_forcing.rollout.prompt_switch import check_policy, flush, recache_fast
from context_forcing.rollout.records import ChunkHistory, ChunkRecord


@dataclass
class StreamChunk:
    latents: Tensor  # (B, c, C, H, W)
    pixels: Tensor | None  # (B, t, H, W, 3) uint8 when the session has a codec
    record: ChunkRecord


class StreamingSession:
    """Generates a batch of videos chunk by chunk. Sample b's randomness comes from
    (seed, samples[b], chunk).

    compile: run the model's forward compiled with frozen weights (`model/compiled.py`: 1.3-1.9x faster chunks
    on CPU after a one-time compilation of ~15 s; the context padded to the layout's budget, outputs within
    float rounding of the eager forward's). Needs a layout with a budget.
    """

    def __init__(self, model: CausalVideoDiT, run: RunConfig, cond: Conditioning, seed: int = 0,
                 samples: list[int] | None = None, layout: MemoryLayout | None = None,
                 codec: Codec | None = None, compile: bool = False) -> None:
        self.model, self.run, self.cond, self.seed, self.codec = model, run, cond, seed, codec
        self.batch = cond.batch_size
        self.samples = list(range(self.batch)) if samples is None else list(samples)
        if len(self.samples) != self.batch:
            raise ValueError(f"samples has {len(self.samples)} entries for a batch of {self.batch}")
        # default: the run's configured memory
        self.layout = layout if layout is not None else run_layout(run)
        self.device = next(model.parameters()).device
        self.compiled: CompiledForward | None = None  # the forward compiled with frozen weights (`compile`)
        if compile:
            if self.layout.budget is None:
                raise ValueError(f"compile=True needs a memory layout with a budget (a fixed context size), "
                                 f"got {self.layout.name!r}")
            self.compiled = CompiledForward(model)
        self.memory = new_memory(run, self.layout, self.batch, self.device, next(model.parameters()).dtype)
        self.sigmas = student_sigmas(run.sampler.student_timesteps, run.sampler.shift,
                                     run.sampler.num_train_timesteps).to(self.device)
        with torch.no_grad():
            self.prompt = model.encode_prompt(cond.to(self.device))
        self.records = ChunkHistory()  # counters and the recent records: O(1) in video length
        self._decoder = codec.stream_decoder() if codec is not None else None
        self.last_events: list[AdmissionEvent] = []  # admission decisions of the latest chunk (live views)
        self.prompt_switches = 0

    @property
    def frames_done(self) -> int:
        return self.memory.next_frame

    def _chunk_inputs(self, plans: list[ChunkPlan],
                      frames_cond: Conditioning | None = None) -> tuple[ChunkInputs, Tensor]:
        start, c = self.frames_done, self.layout.chunk
        cond = self._frames_cond(start, c) if frames_cond is None else self._given_cond(frames_cond)
        pad_to = None
        if self.compiled is not None:  # one context shape for every chunk: the compiled graphs' fixed shapes
            self.compiled.ensure_current()
            pad_to = self.layout.budget - c
        context = self.memory.context(self.model, plans, pad_to)
        if self.compiled is not None and context is not None:  # None: a layout of the chunk alone
            context.allocate(c * self.run.tokens_per_frame)
        temporal = host_tensor([x for p in plans for x in p.chunk_positions], torch.float32, len(plans),
                               self.device)  # (B, c); not torch.tensor(list): see host_tensor
        return ChunkInputs(self.prompt, temporal, cond, context, self.compiled), temporal

    def _frames_cond(self, start: int, count: int) -> Conditioning:
        available = self.cond.num_frames
        if available is not None and available < start + count:
            raise ValueError(f"the conditioning covers {available} latent frames; "
                             f"chunk at frame {start} needs {start + count}")
        return self.cond.frames(slice(start, start + count)).to(self.device)

    def _given_cond(self, frames_cond: Conditioning) -> Conditioning:
        """Per-frame conditioning given live for the next chunk: (B, c, ...) fields, the session's prompt."""
        c = self.layout.chunk
        if frames_cond.batch_size != self.batch or frames_cond.num_frames not in (None, c):
            raise ValueError(f"frames_cond must cover batch {self.batch} and {c} frames (one chunk), "
                             f"got batch {frames_cond.batch_size} and {frames_cond.num_frames} frames")
        return dataclasses.replace(frames_cond, prompt=self.cond.prompt,
                                   prompt_embeds=self.cond.prompt_embeds).to(self.device)

    @torch.no_grad()
    def generate_chunk(self, frames_cond: Conditioning | None = None) -> tuple[Tensor, ChunkRecord]:
        """Denoise the next chunk with the few-step sampler, commit it; returns latents (B, c, C, H, W).

        `frames_cond`: the chunk's per-frame conditioning given live (actions, pose, spatial map of its c
        frames, e.g. a PanWorld camera steered by a person); default:
        the session's conditioning at these frames.
        """
        tic = time.perf_counter()
        index, c = self.records.count, self.layout.chunk
        plans = self.memory.plan()
        inputs, _ = self._chunk_inputs(plans, frames_cond)
        noise = ChunkNoise(self.seed, self.samples, self.frames_done // c)
        shape = (c, self.run.model.in_channels, self.run.video.latent_height, self.run.video.latent_width)
        x0, first_kv = denoise_chunk(self.model, inputs, noise.draw(shape, self.device), self.sigmas,
                                     lambda _: noise.draw(shape, self.device),
                                     self.run.sampler.num_train_timesteps,
                                     capture_first_kv=self.layout.admit_kv == "first_pass")
        self.last_events = self.memory.commit(commit_pass(self.model, inputs, x0),
                                              frame_inputs(self.model, self.run, x0, inputs.cond), first_kv)
        record = ChunkRecord(index, plans[0].chunk_frames[0], plans,
                             1000 * (time.perf_counter() - tic), False)
        self.records.append(record)
        return x0, record

    @torch.no_grad()
    def prefill(self, latents: Tensor) -> None:
        """Commit given clean latents (B, F, C, H, W), F a multiple of the chunk, as if generated."""
        c = self.layout.chunk
        if latents.ndim != 5 or latents.shape[0] != self.batch or latents.shape[1] % c:
            raise ValueError(f"prefill latents must be ({self.batch}, k*{c}, C, H, W), "
                             f"got {tuple(latents.shape)}")
        for i in range(0, latents.shape[1], c):
            tic = time.perf_counter()
            plans = self.memory.plan()
            inputs, _ = self._chunk_inputs(plans)
            clean = latents[:, i:i + c].to(self.device)
            first_kv = None
            if self.layout.admit_kv == "first_pass":
                first_kv = commit_pass(self.model, inputs, clean)
            self.last_events = self.memory.commit(commit_pass(self.model, inputs, clean),
                                                  frame_inputs(self.model, self.run, clean, inputs.cond),
                                                  first_kv)
            self.records.append(ChunkRecord(self.records.count, plans[0].chunk_frames[0], plans,
                                            1000 * (time.perf_counter() - tic), True))

    def prefill_frames(self, pixels: Tensor) -> Tensor:
        """Continuation from video: encode pixels (B, T, H, W, 3) uint8 through the session's codec and
        `prefill` the latents (T a multiple of the chunk, in latent frames); returns the latents committed."""
        if self.codec is None:
            raise ValueError("prefill_frames needs a session with a codec (StreamingSession(..., codec=...))")
        latents = self.codec.encode(pixels)
        self.prefill(latents)
        return latents

    @torch.no_grad()
    def switch_prompt(self, prompt: Tensor, policy: str = "keep") -> None:
        """Cross-attend to a new prompt from the next chunk on: token ids (B, P) long or embeddings (B, P, D).

        `policy` says what the memory keeps (rollout/prompt_switch.py has the table): `keep`
        (memory unchanged), `recache` (fast frames' K/V re-encoded under the new prompt) or `flush`
        (sink + last chunk only).
        """
        check_policy(policy)
        if prompt.ndim not in (2, 3) or prompt.shape[0] != self.batch:
            raise ValueError(f"prompt must be ({self.batch}, P) ids or ({self.batch}, P, D) embeddings, got "
                             f"{tuple(prompt.shape)}")
        ids = prompt.dtype == torch.long
        new = dataclasses.replace(self.cond, prompt=prompt if ids else None,
                                  prompt_embeds=None if ids else prompt)
        encoded = self.model.encode_prompt(new.to(self.device))  # raises on ids outside the vocabulary
        self.cond, self.prompt = new, encoded
        if policy == "recache":
            recache_fast(self.model, self.memory, self.prompt, self.cond.to(self.device))
        elif policy == "flush":
            flush(self.memory)
        self.prompt_switches += 1

    def stream(self, num_frames: int) -> Iterator[StreamChunk]:
        """Generate whole chunks until `num_frames` latent frames exist; yield each chunk as it is done."""
        while self.frames_done < num_frames:
            latents, record = self.generate_chunk()
            pixels = self._decoder.decode(latents) if self._decoder is not None else None
            yield StreamChunk(latents, pixels, record)
