"""The chunk step: denoise one chunk against a prepared memory context, then the clean commit pass.

Works with or without autograd (the model writes nothing in place); streaming and training rollouts share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.samplers import student_sample
from context_forcing.diffusion.schedule import timesteps_of
from context_forcing.memory.layout import MemoryLayout
from context_forcing.memory.slow_fast import FrameInputs, SlowFastMemory
from context_forcing.memory.store import StoreShape
from context_forcing.model.attention import AttentionContext, PromptContext
from context_forcing.model.dit import CausalVideoDiT


@dataclass
class ChunkInputs:
    """Everything a chunk step needs besides the latents: positions (B, c), per-frame conditioning, context."""

    prompt: PromptContext
    temporal: Tensor
    cond: Conditioning | None
    context: AttentionContext | None


def velocity_fn(model: CausalVideoDiT, inputs: ChunkInputs, num_train_timesteps: int,
                capture: list | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """v(x, sigma) for the sampler; when `capture` is a list, the first call's K/V are appended to it."""

    def velocity(x: Tensor, sigma: Tensor) -> Tensor:
        want_kv = capture is not None and not capture
        out = model(x, timesteps_of(sigma, num_train_timesteps), inputs.prompt, inputs.temporal, inputs.cond,
                    context=inputs.context, return_kv=want_kv)
        if want_kv:
            capture.append(out.kv)
        return out.velocity

    return velocity


def denoise_chunk(model: CausalVideoDiT, inputs: ChunkInputs, noise: Tensor, sigmas: Tensor,
                  renoise: Callable[[int], Tensor], num_train_timesteps: int = 1000,
                  capture_first_kv: bool = False) -> tuple[Tensor, list | None]:
    """Few-step sampling of one chunk (B, c, C, H, W); optionally the first pass's K/V (official-code option)."""
    capture: list | None = [] if capture_first_kv else None
    x0 = student_sample(velocity_fn(model, inputs, num_train_timesteps, capture), noise, sigmas, renoise)
    return x0, (capture[0] if capture else None)


def commit_pass(model: CausalVideoDiT, inputs: ChunkInputs, clean: Tensor) -> list[tuple[Tensor, Tensor]]:
    """One chunk step of the clean chunk at timestep 0; returns its per-layer un-rotated K/V for the memory."""
    zeros = torch.zeros(clean.shape[:2], device=clean.device)
    return model(clean, zeros, inputs.prompt, inputs.temporal, inputs.cond, context=inputs.context,
                 return_kv=True).kv


def new_memory(run: RunConfig, layout: MemoryLayout, batch: int, device: torch.device) -> SlowFastMemory:
    """An empty Slow-Fast Memory sized for `run`'s model, admitting K/V as `run.memory.admit_kv` says."""
    mc = run.model
    shape = StoreShape(layers=mc.layers, tokens_per_frame=run.tokens_per_frame, heads=mc.heads, head_dim=mc.head_dim,
                       latent=(mc.in_channels, run.video.latent_height, run.video.latent_width),
                       action_dim=mc.action_dim, summary_dim=(len(run.memory.summary_layers) or mc.layers) * mc.dim)
    return SlowFastMemory(layout, shape, batch, run.memory.summary_layers, run.memory.admit_kv, device)


def frame_inputs(model: CausalVideoDiT, run: RunConfig, latents: Tensor, cond: Conditioning) -> FrameInputs:
    """What the memory stores per committed frame besides K/V."""
    b, c = latents.shape[:2]
    actions = cond.actions if cond.actions is not None else latents.new_zeros(b, c, run.model.action_dim)
    pose = cond.pose if cond.pose is not None else latents.new_zeros(b, c, 1)
    return FrameInputs(latents, actions, pose, model.spatial_positions(cond, b, c, run.token_grid, latents.device))
