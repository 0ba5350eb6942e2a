"""Randomness of one draw site in one update, independent of how the global batch is split across processes.

Batch-level decisions (target length, rollout length, shared exit step) come from a generator keyed by
(seed, step, draw), identical on every process; per-sample randomness (noise, timesteps, context choices,
dropout, ERFT) from generators keyed by the sample's index in the global batch. Randomness is therefore a
pure function of the step, so a resumed run continues exactly, and N processes reproduce one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.diffusion.noise import generator_for

SHARED = -1  # the "sample" index of the batch-level generator


class StepRandom:
    """Generators for draw site `draw` of update `step`: `shared` and one per local sample."""

    def __init__(self, seed: int, step: int, draw: int, samples: range) -> None:
        key = step * 10_000 + draw
        self.shared = generator_for(seed, SHARED, key)
        self.samples = [generator_for(seed, s, key) for s in samples]

    def randn(self, *shape: int) -> Tensor:
        """(B, *shape) standard normal, sample b from its own generator."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.samples])

    def rand(self) -> Tensor:
        """(B,) uniform in [0, 1), one per sample."""
        return torch.cat([torch.rand(1, generator=g) for g in self.samples])


def whole_chunks(generator: torch.Generator, low: int, high: int, chunk: int) -> int:
    """A frame count chunk * k with k uniform in [low, high] (one draw from `generator`)."""
    return chunk * int(torch.randint(low, high + 1, (1,), generator=generator))


class DrawSites:
    """The randomness of one update: a StepRandom per successive draw site (`start` resets at each update)."""

    def __init__(self, seed: int, samples: range) -> None:
        self.seed, self.samples = seed, samples
        self.step, self.count = 0, 0

    def start(self, step: int) -> None:
        self.step, self.count = step, 0

    def next(self) -> StepRandom:
        self.count += 1
        return StepRandom(self.seed, self.step, self.count, self.samples)
