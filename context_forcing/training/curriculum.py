"""Stage 2's rollout-length curriculum N(t) (DESIGN.md section 7): a schedule of training steps, not a loss.

N ~ U{n_min .. n_max(t)} in whole chunks, n_max rising linearly from n_max_start to n_max_end over ramp_steps
(the official code's schedule: 84 -> 105 latent frames over 600 steps).
"""

from __future__ import annotations

import torch

from context_forcing.training.config import CurriculumConfig


def n_max(step: int, cfg: CurriculumConfig) -> int:
    """Stage 2 curriculum: N_max rises linearly from n_max_start to n_max_end over ramp_steps, then stays."""
    done = min(max(step, 0), cfg.ramp_steps)
    return cfg.n_max_start + (cfg.n_max_end - cfg.n_max_start) * done // cfg.ramp_steps


def sample_rollout_length(step: int, cfg: CurriculumConfig, chunk: int, generator: torch.Generator) -> int:
    """Stage 2 rollout length N ~ U{n_min .. n_max(step)} restricted to whole chunks."""
    lo = -(-cfg.n_min // chunk)  # n_min rounded up to whole chunks
    hi = n_max(step, cfg) // chunk  # n_max rounded down
    if hi < lo:
        raise ValueError(f"curriculum: no multiple of the chunk ({chunk}) lies in [n_min={cfg.n_min}, "
                         f"n_max={n_max(step, cfg)}]")
    return chunk * int(torch.randint(lo, hi + 1, (1,), generator=generator))
