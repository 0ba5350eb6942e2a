"""The chunk step: denoise one chunk against a prepared memory context, then the clean commit pass.

Works with or without autograd (the model writes nothing in place); streaming and training rollouts share it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.diffusion.samplers import Velocity, student_sample
from context_forcing.diffusion.schedule import timesteps_of
from context_forcing.model.attention import AttentionContext, PromptContext
from context_forcing.model.dit import CausalVideoDiT, ModelOutput, PreparedFrames


@dataclass
class ChunkInputs:
    """Everything a chunk step needs besides the latents:
    positions (B, c), per-frame conditioning, context."""

    prompt: PromptContext
    temporal: Tensor
    cond: Conditioning | None
    context: AttentionContext | None
    forward: Callable[..., ModelOutput] | None = None  # what runs the model's forward (a CompiledForward)
    _prepared: tuple[int, PreparedFrames] | None = field(default=None, repr=False, compare=False)

    def prepared(self, model: CausalVideoDiT, latents: Tensor) -> PreparedFrames:
        """RoPE rotations and attention mask of this chunk, computed once for all its calls (4 denoising
        passes + the commit pass share them; parameter-free, so also under autograd)."""
        if self._prepared is None or self._prepared[0] != id(model):
            b, f, _, h, w = latents.shape
            grid = (h // model.cfg.patch[1], w // model.cfg.patch[2])
            self._prepared = (id(model), model.prepare_frames(self.temporal, self.cond, b, f, grid,
                                                              latents.device, self.context))
        return self._prepared[1]

    def run(self, model: CausalVideoDiT, x: Tensor, timesteps: Tensor, return_kv: bool) -> ModelOutput:
        """The model's forward of this chunk's latents x at per-frame timesteps (B, c), through `forward`."""
        forward = self.forward or model
        return forward(x, timesteps, self.prompt, self.temporal, self.cond, context=self.context,
                       return_kv=return_kv, prepared=self.prepared(model, x))


def velocity_fn(model: CausalVideoDiT, inputs: ChunkInputs, num_train_timesteps: int,
                capture: list | None = None, graph_step: int | None = None) -> Velocity:
    """v(x, sigma) for the sampler; when `capture` is a list, the first call's detached K/V are appended to
    it; with `graph_step`, only that call (0-based) records an autograd graph (Self Forcing's exit step)."""
    calls = 0

    def velocity(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal calls
        want_kv = capture is not None and not capture
        records = graph_step is None or calls == graph_step
        calls += 1
        with contextlib.nullcontext() if records else torch.no_grad():
            t = timesteps_of(sigma, num_train_timesteps)
            out = inputs.run(model, x, t, want_kv)
        if want_kv:
            capture.append([(k.detach(), v.detach()) for k, v in out.kv])
        return out.velocity

    return velocity


def denoise_chunk(model: CausalVideoDiT, inputs: ChunkInputs, noise: Tensor, sigmas: Tensor,
                  renoise: Callable[[int], Tensor], num_train_timesteps: int = 1000,
                  capture_first_kv: bool = False, exit_step: int | None = None) -> tuple[Tensor, list | None]:
    """Few-step sampling of one chunk (B, c, C, H, W) up to `exit_step` (None: every level), only the exit
    step recording a graph; optionally the first pass's K/V (memory admit_kv = first_pass)."""
    capture: list | None = [] if capture_first_kv else None
    velocity = velocity_fn(model, inputs, num_train_timesteps, capture, exit_step)
    x0 = student_sample(velocity, noise, sigmas, renoise, exit_step)
    return x0, (capture[0] if capture else None)


def commit_pass(model: CausalVideoDiT, inputs: ChunkInputs, clean: Tensor) -> list[tuple[Tensor, Tensor]]:
    """One chunk step of the clean chunk at timestep 0;
    returns its per-layer un-rotated K/V for the memory."""
    zeros = torch.zeros(*clean.shape[:2], device=clean.device)
    return inputs.run(model, clean, zeros, return_kv=True).kv
