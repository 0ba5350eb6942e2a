"""A Slow-Fast Memory sized for a run's model, and what it stores per committed frame besides K/V."""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.memory.layout import MemoryLayout
from context_forcing.memory.slow_fast import FrameInputs, SlowFastMemory
from context_forcing.memory.store import StoreShape
from context_forcing.model.dit import CausalVideoDiT


def new_memory(run: RunConfig, layout: MemoryLayout, batch: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> SlowFastMemory:
    """An empty Slow-Fast Memory for `run`'s model, following `layout` (admit_kv included), storing in `dtype`
    (the model's: a bf16 model keeps a bf16 cache, half the bytes)."""
    if not isinstance(layout, MemoryLayout):
        raise TypeError(f"layout must be a MemoryLayout (parse_layout / run_layout parse names), got "
                        f"{layout!r}")
    mc = run.model
    summary_dim = (len(run.memory.summary_layers) or mc.layers) * mc.dim  # mean keys of the summary layers
    latent = (mc.in_channels, run.video.latent_height, run.video.latent_width)
    shape = StoreShape(layers=mc.layers, tokens_per_frame=run.tokens_per_frame, heads=mc.heads,
                       head_dim=mc.head_dim, latent=latent, action_dim=mc.action_dim, summary_dim=summary_dim)
    return SlowFastMemory(layout, shape, batch, run.memory.summary_layers, device, dtype)


def frame_inputs(model: CausalVideoDiT, run: RunConfig, latents: Tensor, cond: Conditioning) -> FrameInputs:
    """What the memory stores per committed frame besides K/V: latents (B, c, C, H, W), their conditioning."""
    b, c = latents.shape[:2]
    actions = cond.actions if cond.actions is not None else latents.new_zeros(b, c, run.model.action_dim)
    pose = cond.pose if cond.pose is not None else latents.new_zeros(b, c, 1)
    spatial = model.spatial_positions(cond, b, c, run.token_grid, latents.device)  # (B, c, Lf, 2)
    return FrameInputs(latents, actions, pose, spatial)
