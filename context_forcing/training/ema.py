"""Exponential moving average of a network's parameters, as in the official code (Self Forcing's EMA_FSDP).

The official trainer creates the EMA (a copy of the weights) once `ema_start` updates are done and from then
on applies `ema = decay * ema + (1 - decay) * weights` after every generator update. Here the EMA always
exists, so checkpoints have one shape: while `updates <= start` it is refreshed to a copy of the weights.

Under FSDP2 the parameters are DTensor shards, and so are the shadows built from them: each process keeps the
EMA of its own shard (1/N of the memory, updated with no communication); checkpoints gather the full shadows
(`distributed.full_on_main`) and loading cuts full shadows back into shards (`distributed.copy_into`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from context_forcing.training.distributed import copy_into


class EMA:
    """Shadow fp32 copies of a module's trainable parameters, updated after each optimiser step."""

    def __init__(self, module: nn.Module, decay: float, start: int) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        if start < 0:
            raise ValueError(f"EMA start must be >= 0, got {start}")
        self.decay, self.start = decay, start
        # fp32 shadows: at decay 0.99 a bf16 shadow would round most updates away.
        self.shadow = {name: p.detach().float().clone() for name, p in _trainable(module)}

    @torch.no_grad()
    def update(self, module: nn.Module, updates: int) -> None:
        """Follow `module` after `updates` generator updates (1-based): copy up to `start`, then decay."""
        for name, p in _trainable(module):
            shadow = self.shadow[name]
            if updates <= self.start:
                shadow.copy_(p.detach())
            else:
                shadow.mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    def export(self, module: nn.Module) -> dict[str, Tensor]:
        """`module.state_dict()` with the EMA in place of the trainable parameters (in their dtypes)."""
        state = dict(module.state_dict())
        canonical = {id(p): name for name, p in _trainable(module)}
        # remove_duplicate=False: a tied weight appears under every name in state_dict(); export the EMA in
        # each.
        for name, p in module.named_parameters(remove_duplicate=False):
            if id(p) in canonical:
                state[name] = self.shadow[canonical[id(p)]].to(p.dtype)
        return state

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore shadows saved by `state_dict`; the names must match exactly."""
        if set(state) != set(self.shadow):
            missing, unexpected = set(self.shadow) - set(state), set(state) - set(self.shadow)
            raise ValueError(f"EMA state does not match the module (missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]})")
        for name, value in state.items():
            copy_into(self.shadow[name], value)  # a shadow may be a DTensor shard under FSDP2


def _trainable(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]
