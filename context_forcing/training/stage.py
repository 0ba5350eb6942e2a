"""The contract between the training loop (`training/loop.py`) and a stage (teacher, ode-init, stage1,
stage2), and `BaseStage`, what every stage shares.

The loop owns the run directory, checkpoints, resume, logging, progress, RNG state and the step count; a stage
owns its networks, optimisers, data and the maths of one generator update.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from context_forcing.training.config import TrainConfig
from context_forcing.training.data import TrainingData
from context_forcing.training.optim import accumulate_step
from context_forcing.training.randomness import DrawSites


class Stage(Protocol):
    """One training stage. `train_step` performs exactly one generator update (with its gradient accumulation
    and, for DMD, its critic updates) and returns scalar metrics for the log (floats, `loss` among them)."""

    name: str

    def networks(self) -> dict[str, nn.Module]:
        """Trainable networks by name (e.g. {"generator": ..., "critic": ...});
        saved raw in training_state/."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; their state is saved in training_state/."""
        ...

    def train_step(self, step: int) -> dict[str, float]:
        """One generator update; `step` = updates completed before this one (0-based)."""
        ...

    # Optional: `probe(episodes) -> dict[str, float]`, figures that say whether the stage is learning, logged
    # as `probe_*` every `train.probe_every` updates; it must draw no training randomness
    # (teacher: probe-teacher's figures; students: a short P1 eval).

    def export_weights(self) -> dict[str, Tensor]:
        """What `model.safetensors` holds: the generator's EMA weights where there is an EMA."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """Everything else needed to continue on the same trajectory: EMA weights, data iterator position,
        ERFT banks (tensors allowed; saved with torch.save(weights_only-compatible) or safetensors)."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None:
        ...


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients: the teacher of a distillation stage."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class BaseStage:
    """What every stage shares: one network it trains whose EMA it exports (`network`), a data source whose
    position is saved, randomness keyed by the step (`random`), and the accumulate-clip-step-EMA update.
    Subclasses set `network`, `ema`, `data`, `train` and `random` and implement `_micro_loss`."""

    network: nn.Module
    ema: Any
    data: TrainingData
    train: TrainConfig
    random: DrawSites

    def export_weights(self) -> dict[str, Tensor]:
        return self.ema.export(self.network)

    def extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict(), "data": self.data.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])  # an obsolete "rng" entry is ignored (keyed randomness)
        self.data.load_state_dict(state["data"])

    def _micro_loss(self) -> Tensor:
        """One micro-batch's loss (the accumulation backpropagates it)."""
        raise NotImplementedError

    def _update(self, step: int, optimizer: torch.optim.Optimizer, clip: float) -> dict[str, float]:
        """`accumulation` micro-batch losses (each backpropagated as loss / accumulation), clip, step, EMA."""
        self.random.start(step)
        loss, norm = accumulate_step(optimizer, lambda _: self._micro_loss(), self.train.accumulation, clip)
        self.ema.update(self.network, step + 1)
        return {"loss": loss, "grad_norm": norm}
