"""Randomness derived from (seed, sample, chunk), so a sample's video does not depend on its batch."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def generator_for(seed: int, sample: int, chunk: int) -> torch.Generator:
    """A CPU generator seeded by a hash of (seed, sample, chunk); collisions are negligible."""
    digest = hashlib.sha256(f"context-forcing:{seed}:{sample}:{chunk}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class ChunkNoise:
    """Noise for one chunk of a batch: one generator per sample, drawn in a fixed order."""

    def __init__(self, seed: int, samples: list[int], chunk: int) -> None:
        self.generators = [generator_for(seed, s, chunk) for s in samples]

    def draw(self, shape: tuple[int, ...], device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal (B, *shape), sample b from its own generator."""
        out = torch.stack([torch.randn(shape, generator=g) for g in self.generators])
        return out.to(device=device, dtype=dtype)
