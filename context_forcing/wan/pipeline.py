"""Text-to-video with Wan2.1 weights: `WanStreamingPipeline.from_pretrained(local_dir)`; frames per chunk.

    pipe = WanStreamingPipeline.from_pretrained("Wan2.1-T2V-1.3B-Diffusers", checkpoint="model.pt",
                                                device="cuda", cast="official")
    for frames in pipe("a corgi surfing", seconds=60, seed=7):   # (B, t, H, W, 3) uint8 per chunk
        writer.write(frames[0])

Steps (each a helper): 1. umT5 prompt embeddings (cached); 2. a streaming session with the Slow-Fast
Memory; 3. per chunk: few-step denoising + commit pass; 4. the chunk's latents through the streaming VAE
decoder. `timings` splits time and peak memory into text encoding, denoising and decoding.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import ConfigError, ModelConfig, RunConfig, VideoConfig
from context_forcing.memory.layout import parse_layout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.wan_adapter import model_config_from_diffusers
from context_forcing.presets import get_preset
from context_forcing.wan.loader import CAST_POLICIES, load_transformer
from context_forcing.wan.text_encoder import UMT5PromptEncoder
from context_forcing.wan.vae import WanVAECodec

PRESET = "wan2.1-1.3b"


@dataclass
class StageTimes:
    """Wall time and peak memory per stage (CUDA: peak allocated bytes; CPU: None, see the report's RSS)."""

    text_s: float = 0.0
    text_peak_bytes: int | None = None
    denoise_chunk_ms: list[float] = field(default_factory=list)
    denoise_peak_bytes: int | None = None
    decode_chunk_ms: list[float] = field(default_factory=list)
    decode_peak_bytes: int | None = None

    def summary(self, steady_from: int) -> dict:
        """Totals, and the denoising median over chunks from `steady_from` (the memory is full from there)."""
        steady = self.denoise_chunk_ms[steady_from:] or self.denoise_chunk_ms
        return {
            "text_encoding": {"seconds": self.text_s, "peak_bytes": self.text_peak_bytes},
            "denoising": {
                "seconds": sum(self.denoise_chunk_ms) / 1000,
                "chunks": len(self.denoise_chunk_ms),
                "steady_chunk_ms": _median(steady),
                "steady_from_chunk": min(steady_from, len(self.denoise_chunk_ms)),
                "peak_bytes": self.denoise_peak_bytes,
            },
            "decoding": {
                "seconds": sum(self.decode_chunk_ms) / 1000,
                "chunk_ms": _median(self.decode_chunk_ms),
                "peak_bytes": self.decode_peak_bytes,
            },
        }


def model_config_for(wan_dir: str | os.PathLike | None) -> ModelConfig:
    """The transformer config of a Wan2.1 diffusers folder (`transformer/config.json`), else the preset's."""
    if wan_dir is not None:
        config = Path(wan_dir) / "transformer" / "config.json"
        if config.is_file():
            return model_config_from_diffusers(json.loads(config.read_text()))
    return get_preset(PRESET).model


def run_config(model: ModelConfig, height: int, width: int, memory: str | None = None) -> RunConfig:
    """The preset's RunConfig for these model sizes and this pixel size (multiples of 8 x the patch)."""
    base = get_preset(PRESET)
    _, ph, pw = model.patch
    step_h, step_w = 8 * ph, 8 * pw
    if height <= 0 or width <= 0 or height % step_h or width % step_w:
        raise ConfigError(
            f"height x width = {height} x {width}: both must be positive multiples of "
            f"{step_h} x {step_w} (VAE downsampling 8 x the patch)"
        )
    video = replace(base.video, latent_height=height // 8, latent_width=width // 8)
    run = replace(base, model=model, video=video)
    if memory is not None:
        run = replace(run, memory=replace(run.memory, layout=parse_layout(memory, run.chunk).name))
    return run


class WanStreamingPipeline:
    """A Wan2.1 causal student + the Wan VAE + umT5, generating long videos chunk by chunk."""

    def __init__(
        self,
        transformer: CausalVideoDiT,
        vae: WanVAECodec,
        text_encoder: UMT5PromptEncoder,
        cast: str = "fp32",
    ) -> None:
        if cast not in CAST_POLICIES:
            raise ValueError(f"cast={cast!r}; allowed: {', '.join(CAST_POLICIES)}")
        self.transformer, self.vae, self.text_encoder, self.cast = transformer, vae, text_encoder, cast
        self.device = next(transformer.parameters()).device
        self.timings = StageTimes()
        self.session = None
        self.attended: list[int] = []  # frames each chunk attended to (itself included), for steady state

    @classmethod
    def from_pretrained(
        cls,
        wan_dir: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        *,
        device: torch.device | str = "cpu",
        cast: str = "fp32",
        text_device: str = "cpu",
        lora: str | os.PathLike | None = None,
        part: str = "auto",
        prompt_cache: str | os.PathLike | None = None,
    ) -> WanStreamingPipeline:
        """From a LOCAL Wan2.1 diffusers folder (vae/, text_encoder/, tokenizer/, transformer/).

        checkpoint: the student's weights in any `wan.loader` layout (a model.pt, a diffusers or our own
        checkpoint directory); None uses `wan_dir`'s transformer (the base Wan model, not a causal student).
        text_device: where umT5 runs ('cpu' by default: 11.4 GB in bf16 stays off the GPU).
        """
        wan_dir = Path(wan_dir)
        if not wan_dir.is_dir():
            raise FileNotFoundError(f"Wan folder {wan_dir} does not exist")
        dtype = CAST_POLICIES.get(cast)
        if dtype is None:
            raise ValueError(f"cast={cast!r}; allowed: {', '.join(CAST_POLICIES)}")
        cfg = model_config_for(wan_dir)
        loaded = load_transformer(
            checkpoint if checkpoint is not None else wan_dir,
            cfg,
            part=part,
            lora=lora,
            cast=cast,
            device=device,
        )
        vae = WanVAECodec.from_pretrained(wan_dir, device=device, dtype=dtype)
        text = UMT5PromptEncoder.from_pretrained(
            wan_dir, device=text_device, dtype=dtype, cache_dir=prompt_cache
        )
        return cls(loaded.model, vae, text, cast)

    def __call__(
        self,
        prompt: str | list[str],
        seconds: float,
        seed: int = 0,
        *,
        height: int | None = None,
        width: int | None = None,
        memory: str | None = None,
    ) -> Iterator[Tensor]:
        """Frames (B, t, H, W, 3) uint8 on the CPU, chunk by chunk, trimmed to `seconds` (16 fps)."""
        for frames, _ in self.stream(prompt, seconds, seed, height=height, width=width, memory=memory):
            yield frames

    def stream(
        self,
        prompt: str | list[str],
        seconds: float,
        seed: int = 0,
        *,
        height: int | None = None,
        width: int | None = None,
        memory: str | None = None,
        opening: Tensor | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(frames (B, t, H, W, 3) uint8, latents (B, c, C, h, w)) per generated chunk.

        opening: a video to continue, (B, T, H, W, 3) uint8 with T = 1 + 4 (n - 1) for n latents, a multiple
        of the chunk (9, 21, 33, ... frames for chunks of 3): encoded, committed to the memory and decoded
        through the stream decoder (so its causal cache continues), then `seconds` more are generated.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        base = get_preset(PRESET).video
        run = run_config(
            self.transformer.cfg, height or 8 * base.latent_height, width or 8 * base.latent_width, memory
        )
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds={seconds!r}; must be a finite number > 0")
        if opening is not None:
            check_opening(opening, run, len(prompts))
        latent_frames = max(1, math.ceil(seconds * run.video.latent_frames_per_second - 1e-9))
        per_latent = run.video.pixel_frames_per_latent
        pixel_frames = per_latent * latent_frames - (0 if opening is not None else per_latent - 1)
        self.timings, self.attended = StageTimes(), []
        cond = self._encode_prompts(prompts)  # 1
        self.session = self._new_session(run, cond, seed)  # 2
        decoder, written = self.vae.stream_decoder(), 0
        if opening is not None:
            latent_frames += self._prefill(decoder, opening)
        while self.session.frames_done < latent_frames:
            latents = self._denoise_chunk()  # 3
            frames = self._decode_chunk(decoder, latents)  # 4
            frames = frames[:, : max(0, pixel_frames - written)]
            written += frames.shape[1]
            yield frames, latents

    # ---- steps --------------------------------------------------------------------------------------

    def _prefill(self, decoder, opening: Tensor) -> int:
        """Encode the opening, commit it to the memory, feed it to the decoder cache; its latent count."""
        latents = self.vae.encode(opening)  # (B, n, C, h, w) normalised
        with self._autocast():
            self.session.prefill(latents.to(self.device))
        decoder.decode(latents)  # pixels discarded: the caller has them; the causal cache must see them
        return latents.shape[1]

    def _encode_prompts(self, prompts: list[str]) -> Conditioning:
        _reset_peak(self.text_encoder.device)
        tic = time.perf_counter()
        embeds = self.text_encoder.encode(prompts)  # (B, 512, D) float32, CPU
        self.timings.text_s = time.perf_counter() - tic
        self.timings.text_peak_bytes = _peak(self.text_encoder.device)
        return Conditioning(prompt_embeds=embeds.to(self.device))

    def _new_session(self, run: RunConfig, cond: Conditioning, seed: int):
        from context_forcing.rollout.session import StreamingSession  # noqa: PLC0415

        with self._autocast():
            return StreamingSession(self.transformer, run, cond, seed=seed)  # the run's memory layout

    def _denoise_chunk(self) -> Tensor:
        _reset_peak(self.device)
        tic = time.perf_counter()
        with self._autocast():
            latents, record = self.session.generate_chunk()
        self.attended.append(max(p.slots for p in record.plans))
        _sync(self.device)
        self.timings.denoise_chunk_ms.append(1000 * (time.perf_counter() - tic))
        self.timings.denoise_peak_bytes = _max(self.timings.denoise_peak_bytes, _peak(self.device))
        return latents.float()

    def _decode_chunk(self, decoder, latents: Tensor) -> Tensor:
        _reset_peak(self.vae.device)
        tic = time.perf_counter()
        frames = decoder.decode(latents)
        self.timings.decode_chunk_ms.append(1000 * (time.perf_counter() - tic))
        self.timings.decode_peak_bytes = _max(self.timings.decode_peak_bytes, _peak(self.vae.device))
        return frames

    def _autocast(self):
        """`official`: bf16 weights, and autocast so fp32 inputs (noise, timesteps) meet them in bf16."""
        if self.cast == "official":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def steady_from_chunk(self) -> int:
        """The first chunk that attends to as many frames as any chunk of the run (the memory is as full as
        it gets from there; the budget when slow memory fills), as `rollout.report` measures steady state."""
        if not self.attended:
            return 0
        return self.attended.index(max(self.attended))


def check_opening(opening: Tensor, run: RunConfig, batch: int) -> None:
    """ValueError unless `opening` is (batch, 1 + 4 (n - 1), H, W, 3) uint8 with n a multiple of the chunk."""
    h, w = 8 * run.video.latent_height, 8 * run.video.latent_width
    per_latent, c = run.video.pixel_frames_per_latent, run.chunk
    if opening.dtype != torch.uint8 or opening.ndim != 5 or tuple(opening.shape[2:]) != (h, w, 3):
        raise ValueError(
            f"opening must be uint8 (B, T, {h}, {w}, 3), got {opening.dtype} {tuple(opening.shape)}"
        )
    if opening.shape[0] != batch:
        raise ValueError(f"opening has batch {opening.shape[0]} for {batch} prompts")
    t = opening.shape[1]
    if (t - 1) % per_latent or ((t - 1) // per_latent + 1) % c:
        allowed = ", ".join(str(1 + per_latent * (c * k - 1)) for k in (1, 2, 3))
        raise ValueError(
            f"opening has {t} frames; it must encode to whole chunks of {c} latents: {allowed}, ... frames"
        )


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_video() -> VideoConfig:
    return get_preset(PRESET).video
