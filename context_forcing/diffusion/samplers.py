"""Samplers as small pure functions of a velocity model `v(x, sigma) -> velocity`."""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from context_forcing.diffusion.schedule import add_noise, x0_from_velocity

Velocity = Callable[[Tensor, Tensor], Tensor]  # (x (B, F, C, H, W), sigma (B, F)) -> v


def guided(v_cond: Tensor, v_uncond: Tensor, weight: float) -> Tensor:
    """Classifier-free guidance v_u + w (v_c - v_u) (Ho & Salimans 2022)."""
    return v_uncond + weight * (v_cond - v_uncond)


def student_sample(velocity: Velocity, noise: Tensor, sigmas: Tensor, renoise: Callable[[int], Tensor],
                   exit_step: int | None = None) -> Tensor:
    """Few-step sampling (DMD / Self Forcing): predict x0 at each level, re-noise it to the next; return x0.

    noise: the initial x at sigmas[0] (B, F, C, H, W); renoise(i) draws the fresh noise for level i >= 1;
    exit_step: stop after that step and return its x0 (Self Forcing's random exit; None: run every level).
    """
    if exit_step is not None:
        sigmas = sigmas[:exit_step + 1]
    x = noise
    batch_frames = noise.shape[:2]
    x0 = noise
    for i, sigma in enumerate(sigmas):
        # ints, not the torch.Size: torch probes that with a new name string each call, which CPython 3.11's
        # type cache keeps alive (docs/BENCHMARKS.md, soak)
        level = sigma.expand(*batch_frames)  # (B, F)
        x0 = x0_from_velocity(x, velocity(x, level), level)
        if i + 1 < len(sigmas):
            x = add_noise(x0, renoise(i + 1), sigmas[i + 1])
    return x0


def euler_sample(velocity: Velocity, noise: Tensor, sigmas: Tensor, trajectory: list[Tensor] | None = None,
                 record: Tensor | None = None) -> Tensor:
    """Euler integration of the flow ODE dx/ds = v from sigmas[0] to sigmas[-1] (usually 1 -> 0).

    When `trajectory` is a list, the state x at every grid level in `record` (each level when None) is
    appended to it before the step from that level (ODE init regresses the few-step student on these states).
    """
    x = noise
    batch_frames = noise.shape[:2]
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:]):
        if trajectory is not None and (record is None or bool((record == sigma).any())):
            trajectory.append(x)
        x = x + (next_sigma - sigma) * velocity(x, sigma.expand(batch_frames))
    return x
