"""Pieces every stage shares: the data contract, optimiser construction, frozen networks, RNG state."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.training.config import OptimConfig
from context_forcing.training.optim import build_adamw, clip_and_step


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


class EmaStage:
    """What every stage shares: one trained network (`self.trained`) with an EMA that is exported, a data source
    whose position is saved, and the accumulate-clip-step-EMA update. Subclasses set `trained`, `ema`, `data`,
    `train` and `random` and implement `_micro_step`."""

    trained: torch.nn.Module
    ema: Any
    data: TrainingData

    def export_weights(self) -> dict[str, torch.Tensor]:
        return self.ema.export(self.trained)

    def extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict(), "data": self.data.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])  # an obsolete "rng" entry (randomness is now keyed by step) is ignored
        self.data.load_state_dict(state["data"])

    def _update(self, step: int, optimizer: torch.optim.Optimizer, clip: float) -> dict[str, float]:
        """`accumulation` micro-steps (each backpropagates loss / accumulation), clip, step, then the EMA."""
        self.random.start(step)
        total = sum(self._micro_step() for _ in range(self.train.accumulation)) / self.train.accumulation
        norm = clip_and_step(optimizer, clip)
        self.ema.update(self.trained, step + 1)
        return {"loss": total, "grad_norm": norm}
