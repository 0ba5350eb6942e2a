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


def adamw(model: torch.nn.Module, cfg: OptimConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with a component's OptimConfig over the parameters that require gradients (frozen ones carry no
    optimiser state).

    fused: torch's fused kernel (CPU too): 27 ms per panworld update against 87 ms for CPU's per-tensor
    default (foreach: 100 ms; issue 12), the same state dict. Its updates differ from the default's in the
    last bit (1e-10 after one tiny stage-2 update), which the DMD stages amplify (2e-5 in the weights after
    the second): beyond tests/training/test_distributed.py's tolerance between a plain and a sharded run. So
    only the teacher stage, where AdamW was 8 % of an update (<= 5 % elsewhere), asks for it."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=cfg.betas,
                             weight_decay=cfg.weight_decay, fused=fused or None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict`, keeping this optimiser's kernel: the saved param groups' flags would
    replace it (states saved before issue 12 say fused None). The state dict is the same for every kernel."""
    flags = [{key: group.get(key) for key in ("fused", "foreach")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, flags):
        group.update(own)


def scaled_backward(loss: Tensor, accumulation: int) -> None:
    """Backpropagate one micro-batch's share, `loss / accumulation`, adding to the parameters' gradients."""
    (loss / accumulation).backward()


def clip_and_step(optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip the gradients' total norm to `clip` (0: none), step, zero them; return the pre-clip norm."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
    total = full(norm)  # under FSDP2 the norm of DTensor gradients is a DTensor
    # clip_grads_with_norm_ scales every gradient by min(1, clip / (norm + 1e-6)), computed here as it does:
    # at 1 that pass is a no-op, skipped
    if clip > 0 and params and float(clip / (total + 1e-6)) < 1:
        torch.nn.utils.clip_grads_with_norm_(params, clip, norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total)


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
