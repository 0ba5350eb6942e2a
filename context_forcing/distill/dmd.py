"""Distribution matching distillation (DMD, Yin et al. 2024; DMD2 / Self Forcing recipe) as pure functions.

Latents are (B, F, C, H, W); frame masks are (B, F) bools saying which frames carry gradient (DMD) or are
targets (flow matching). Losses average over the masked frames only, so frames without gradient (e.g. the
3 of 21 target latents past a chunk's exit step) neither contribute nor dilute the mean (fixes the official
code's flaw 5, reference/context_forcing.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.diffusion.schedule import shift_sigma

_EPS = 1e-8  # floor of the DMD normaliser: a sample already at the teacher's x0 gets a finite (zero) step


def _frame_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """A (B, F) frame mask (all frames when None) broadcast as a bool against latents (B, F, ...)."""
    if mask is None:
        mask = torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return mask.to(device=like.device, dtype=torch.bool).reshape(*mask.shape, *([1] * (like.ndim - 2)))


def dmd_gradient(x: Tensor, x0_real: Tensor, x0_fake: Tensor, mask: Tensor | None = None) -> Tensor:
    """DMD gradient (Yin et al. 2024, eq. 7 weighted as in eq. 8): (x0_fake - x0_real) / mean|x - x0_real|.

    The normaliser is per sample, over its masked frames, and detached; frames outside the mask get 0.
    """
    with torch.no_grad():
        m = _frame_mask(mask, x)  # (B, F, 1, 1, 1)
        per_frame = x[0, 0].numel()
        count = (m.flatten(1).sum(1) * per_frame).clamp_min(1)  # (B,) elements in the sample's masked frames
        dist = torch.where(m, (x - x0_real).abs(), 0).flatten(1).sum(1) / count  # (B,) detached normaliser
        scale = dist.clamp_min(_EPS).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.where(m, (x0_fake - x0_real) / scale, 0)


def dmd_loss(x: Tensor, grad: Tensor, mask: Tensor | None = None) -> Tensor:
    """DMD surrogate loss 0.5 * MSE(x, sg(x - grad)) over masked frames (Yin et al. 2024, eq. 7 as a loss).

    Its gradient is d loss / d x = grad / (#elements in masked frames) on masked frames and exactly 0
    elsewhere, so the generator follows the DMD gradient whatever share of frames carries it.
    """
    m = _frame_mask(mask, x)
    target = (x - grad).detach()
    count = m.expand_as(x).sum()
    residual = torch.where(m, x - target, 0)  # select before squaring: non-finite values outside stay out
    return 0.5 * (residual ** 2).sum() / count.clamp_min(1)


def flow_matching_loss(v_pred: Tensor, x0: Tensor, noise: Tensor, mask: Tensor | None = None,
                       weight: Tensor | None = None) -> Tensor:
    """Rectified-flow matching (Lipman et al. 2023; Wan): MSE(v_pred, eps - x0) over masked (target) frames.

    weight, per sample (B,) or per frame (B, F), scales each frame's error (e.g. a timestep weighting); the
    mean still divides by the number of masked frames.
    """
    m = _frame_mask(mask, v_pred)
    residual = torch.where(m, v_pred - (noise - x0).detach(), 0)  # the target v = eps - x0 is a constant
    per_frame = (residual ** 2).flatten(2).mean(2)  # (B, F)
    if weight is not None:
        per_frame = per_frame * weight.reshape(weight.shape[0], -1)
    return per_frame.sum() / m.sum().clamp_min(1)


def dmd_timesteps(batch: int, t_min: float, t_max: float, shift: float, generator: torch.Generator,
                  num_train_timesteps: int = 1000) -> Tensor:
    """DMD timesteps (official recipe): s ~ U[0, 1] shifted, t = 1000 s clamped to [t_min, t_max].

    One t per sample (B,), shared by all its target frames; on the CPU.
    """
    s = shift_sigma(torch.rand(batch, generator=generator, dtype=torch.float64), shift)
    return (s * num_train_timesteps).clamp(t_min, t_max).float()  # (B,) one t for all of a sample's frames
