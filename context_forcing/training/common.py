"""Pieces every stage shares: the data contract, optimiser construction, frozen networks, RNG state."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.training.config import OptimConfig
from context_forcing.training.optim import build_adamw


class TrainingData(Protocol):
    """What stages draw from; resumable through a small state dict."""

    def next_conditioning(self, frames: int) -> Conditioning:
        """Conditioning of a batch for `frames` latent frames from episode starts (DMD needs no video)."""
        ...

    def next_clip(self, frames: int) -> tuple[Tensor, Conditioning]:
        """Real latents (B, frames, C, H, W) from episode starts and their conditioning."""
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def adamw(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with a component's OptimConfig over the model's trainable parameters."""
    return build_adamw(model.parameters(), cfg.lr, cfg.betas, cfg.weight_decay)


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients: the teacher of a distillation stage."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
