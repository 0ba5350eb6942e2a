"""The contract between the training loop (`training/loop.py`) and a stage (teacher, ode-init, stage1, stage2).

The loop owns the run directory, checkpoints, resume, logging, progress, RNG state and the step count; a stage
owns its networks, optimisers, data and the maths of one generator update.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn


class Stage(Protocol):
    """One training stage. `train_step` performs exactly one generator update (with its gradient accumulation
    and, for DMD, its critic updates) and returns scalar metrics for the log (floats, `loss` among them)."""

    name: str

    def networks(self) -> dict[str, nn.Module]:
        """Trainable networks by name (e.g. {"generator": ..., "critic": ...}); saved raw in training_state/."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; their state is saved in training_state/."""
        ...

    def train_step(self, step: int) -> dict[str, float]:
        """One generator update; `step` = updates completed before this one (0-based)."""
        ...

    # Optional: `probe(episodes) -> dict[str, float]`, figures that say whether the stage is learning, logged
    # as `probe_*` every `train.probe_every` updates; it must draw no training randomness (teacher: probe-teacher's
    # figures; students: a short P1 eval).

    def export_weights(self) -> dict[str, Tensor]:
        """What `model.safetensors` holds: the generator's EMA weights where there is an EMA."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """Everything else needed to continue on the same trajectory: EMA weights, data iterator position,
        ERFT banks (tensors allowed; saved with torch.save(weights_only-compatible) or safetensors)."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None:
        ...
