"""One optimiser update with gradient accumulation and norm clipping, shared by every stage.

With `accumulation` micro-batches each contributing `loss / accumulation`, the summed gradient is that of the
mean loss over all micro-batches, i.e. of one batch `accumulation` times larger (for mean-reduced losses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from context_forcing.training.config import OptimConfig
from context_forcing.training.distributed import full


def adamw(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with a component's OptimConfig over the parameters that require gradients (frozen ones carry no
    optimiser state)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas,
                             weight_decay=cfg.weight_decay)


def scaled_backward(loss: Tensor, accumulation: int) -> None:
    """Backpropagate one micro-batch's share, `loss / accumulation`, adding to the parameters' gradients."""
    (loss / accumulation).backward()


def clip_and_step(optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip the gradients' total norm to `clip` (0: none), step, zero them; return the pre-clip norm."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
    if clip > 0 and params:
        torch.nn.utils.clip_grads_with_norm_(params, clip, norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(full(norm))  # under FSDP2 the norm of DTensor gradients is a DTensor


def accumulate_step(optimizer: torch.optim.Optimizer, micro_loss: Callable[[int], Tensor], accumulation: int,
                    clip: float) -> tuple[float, float]:
    """Backward `micro_loss(i)` for i < accumulation, then clip and step; return (mean loss, grad norm)."""
    optimizer.zero_grad(set_to_none=True)  # a stage's earlier no-grad work may have left stale gradients
    total = 0.0
    for i in range(accumulation):
        loss = micro_loss(i)
        scaled_backward(loss, accumulation)
        total += float(loss.detach())
    return total / accumulation, clip_and_step(optimizer, clip)
