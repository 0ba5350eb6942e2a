"""Rectified-flow schedule (Wan2.1): x_t = (1 - s) x0 + s eps, the network predicts v = eps - x0.

Noise levels s lie in [0, 1]; timesteps fed to the network are t = s * num_train_timesteps. The shift warps
s toward the noise end: s' = shift * s / (1 + (shift - 1) * s) (SD3 / Wan, "timestep shift").
"""

from __future__ import annotations

import torch
from torch import Tensor


def shift_sigma(sigma: Tensor | float, shift: float) -> Tensor:
    """Timestep shift s' = shift s / (1 + (shift - 1) s)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


def student_sigmas(timesteps: tuple[float, ...], shift: float, num_train_timesteps: int = 1000) -> Tensor:
    """Few-step student noise levels: the nominal timesteps (e.g. 1000/750/500/250) warped by the shift."""
    return shift_sigma(torch.tensor(timesteps, dtype=torch.float64) / num_train_timesteps, shift).float()


def teacher_sigmas(steps: int, shift: float) -> Tensor:
    """steps + 1 decreasing noise levels from 1 to 0 for the multi-step Euler sampler."""
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()


def _frames(sigma: Tensor, like: Tensor) -> Tensor:
    """Broadcast a per-frame (B, F) or scalar noise level against latents (B, F, C, H, W)."""
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(*sigma.shape, *([1] * (like.ndim - sigma.ndim)))


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """x_s = (1 - s) x0 + s eps."""
    s = _frames(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Flow-matching target v = eps - x0."""
    return noise - x0


def x0_from_velocity(x_t: Tensor, velocity: Tensor, sigma: Tensor | float) -> Tensor:
    """x0 = x_s - s v."""
    return x_t - _frames(sigma, x_t) * velocity


def noise_from_velocity(x_t: Tensor, velocity: Tensor, sigma: Tensor | float) -> Tensor:
    """eps = x_s + (1 - s) v."""
    return x_t + (1 - _frames(sigma, x_t)) * velocity


def velocity_from_x0(x_t: Tensor, x0: Tensor, sigma: Tensor | float) -> Tensor:
    """v = (x_s - x0) / s, for s > 0."""
    return (x_t - x0) / _frames(sigma, x_t)


def timesteps_of(sigma: Tensor | float, num_train_timesteps: int = 1000) -> Tensor:
    """The network's timestep t = s * num_train_timesteps."""
    return torch.as_tensor(sigma) * num_train_timesteps
