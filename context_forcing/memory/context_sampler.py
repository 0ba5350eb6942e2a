"""The model-free context sampler for real data (DESIGN.md section 7): a Slow-Fast-Memory-shaped context.

For one sample whose real history holds frames 0 .. history_len - 1 and whose target starts at history_len,
pick what a student's memory could hold there: sink = the first frames (filled first, as `commit_chunk`
does), fast = whole chunks just before the target, slow = sparse frames in between (one per `slow_every`,
jittered, the most recent kept, as slow memory evicts oldest first). Sizes are randomised down to an empty
context so that Stage 1's teacher queries (empty context, target at positions 0 ..) stay in distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from context_forcing.config import _require

if TYPE_CHECKING:  # torch is imported where a draw happens: the training config (and the CLI) import this
    import torch  # module for `ContextSamplerConfig` and should not pay for torch

SLOW_EVERY = 6  # one slow latent per 1.5 s (6 latent frames), as in the official teacher


@dataclass(frozen=True)
class ContextSamplerConfig:
    """The model-free context sampler for real data (DESIGN.md section 7)."""

    sink: int = 3
    max_slow: int = 12
    slow_every: int = SLOW_EVERY  # jittered
    max_fast: int = 6
    p_empty: float = 0.1  # probability of an empty context (Stage 1's short windows stay in distribution)

    def __post_init__(self) -> None:
        for name in ("sink", "max_slow", "max_fast"):
            _require(getattr(self, name) >= 0, f"context.{name} must be >= 0, got {getattr(self, name)}")
        _require(self.slow_every >= 1, f"context.slow_every must be >= 1, got {self.slow_every}")
        _require(0 <= self.p_empty <= 1, f"context.p_empty must lie in [0, 1], got {self.p_empty}")


@dataclass(frozen=True)
class ContextChoice:
    """Context frames of one sample, absolute history indices per part, each part in time order."""

    sink: tuple[int, ...] = ()
    slow: tuple[int, ...] = ()
    fast: tuple[int, ...] = ()

    @property
    def frames(self) -> tuple[int, ...]:
        """sink, slow, fast frames in attention (and time) order."""
        return self.sink + self.slow + self.fast

    @property
    def parts(self) -> tuple[str, ...]:
        """The part of each frame of `frames`: sink, slow or fast."""
        return ("sink",) * len(self.sink) + ("slow",) * len(self.slow) + ("fast",) * len(self.fast)


def _uniform(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in [low, high]."""
    import torch

    return int(torch.randint(low, high + 1, (1,), generator=generator))


def fast_sizes(available: int, max_fast: int, chunk: int) -> tuple[int, ...]:
    """Allowed fast counts: whole chunks up to min(max_fast, available), any count if no chunk fits."""
    limit = min(max_fast, available)
    step = chunk if limit >= chunk else 1  # whole chunks where possible (the student's fast part is chunked)
    return tuple(range(0, limit + 1, step))


def slow_frames(start: int, stop: int, count: int, every: int, generator: torch.Generator) -> tuple[int, ...]:
    """`count` frames of [start, stop): one per bin of width `every` (bins back from stop), jittered."""
    picked = []
    for k in range(count):
        high, low = stop - k * every, max(stop - (k + 1) * every, start)
        picked.append(_uniform(low, high - 1, generator))
    return tuple(reversed(picked))


def sample_context(history_len: int, cfg: ContextSamplerConfig, chunk: int,
                   generator: torch.Generator) -> ContextChoice:
    """Model-free context sampler (DESIGN.md section 7): random sink | slow | fast frames of a history."""
    import torch

    if history_len <= 0 or bool(torch.rand(1, generator=generator) < cfg.p_empty):
        return ContextChoice()
    sink = tuple(range(min(cfg.sink, history_len)))
    sizes = fast_sizes(history_len - len(sink), cfg.max_fast, chunk)
    n_fast = sizes[_uniform(0, len(sizes) - 1, generator)]
    start, stop = len(sink), history_len - n_fast  # slow frames lie strictly between sink and fast
    bins = min(cfg.max_slow, -(-(stop - start) // cfg.slow_every))
    n_slow = _uniform(0, bins, generator)
    if not sink and n_fast == 0 and n_slow == 0:
        # the non-empty branch must give a context, else empty contexts would exceed p_empty
        n_fast = sizes[1] if len(sizes) > 1 else 0
        stop = history_len - n_fast
        n_slow = 0 if n_fast else min(bins, 1)
    slow = slow_frames(start, stop, n_slow, cfg.slow_every, generator)
    return ContextChoice(sink=sink, slow=slow, fast=tuple(range(stop, history_len)))
