"""Shared fixtures: tiny models with random (non-degenerate) weights, fp32 on CPU, seeded."""

from __future__ import annotations

import pytest
import torch

from context_forcing.conditioning import Conditioning
from context_forcing.model.attention import AttentionContext
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.rope import grid_positions
from context_forcing.presets import tiny

torch.set_num_threads(1)  # tests run in parallel workers; one thread each is fastest on 2 cores


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones too) so that every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(1 + noise if "norm" in name else noise)  # norm gains near 1 keep attention non-trivial
    return model


@pytest.fixture
def run():
    return tiny()


@pytest.fixture
def model(run):
    torch.manual_seed(0)
    return randomize(CausalVideoDiT(run.model, run.text)).eval()


def make_cond(run, batch: int, frames: int, seed: int = 0) -> Conditioning:
    """Random prompt, one-hot actions and integer poses for `frames` latent frames."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, run.text.vocab_size, (batch, run.text.prompt_len), generator=g)
    moves = torch.randint(0, 3, (batch, frames), generator=g)
    actions = torch.nn.functional.one_hot(moves, 3).float()
    pose = (moves - 1).cumsum(1).float()[..., None]
    return Conditioning(prompt=prompt, actions=actions, pose=pose)


def make_latents(run, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = run.video
    return torch.randn(batch, frames, run.model.in_channels, v.latent_height, v.latent_width, generator=g)


def context_from_kv(model: CausalVideoDiT, kv, temporal: torch.Tensor, frames: int,
                    batch: int) -> AttentionContext:
    """The attention context of `frames` clean frames from a forward's per-layer K/V (tiny: 2x2 tokens)."""
    keys = torch.stack([k for k, _ in kv]).unflatten(2, (frames, -1))
    values = torch.stack([v for _, v in kv]).unflatten(2, (frames, -1))
    spatial = grid_positions(2, 2).expand(batch, frames, -1, -1)
    return model.prepare_context(keys, values, temporal, spatial)
