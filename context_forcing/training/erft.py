"""Error-Recycling Fine-Tuning (ERFT, Stable Video Infinity, Li et al. 2025) as the context teacher uses it.

The teacher's own per-frame x0 errors are banked by timestep and recycled: added to the fast (and optionally
slow) context frames and to the clean target before noising, so the teacher learns to continue well from
drifted, self-generated context. Differences from SVI, for a teacher trained from scratch (docs/TRAINING.md):

- nothing is banked or injected before `erft.warmup_steps` updates (an untrained model's errors are noise);
- a full group replaces its oldest entry (`erft.replacement`), so stale early errors age out; SVI's
  "nearest" rule is kept as an option and never evicts the huge early errors;
- an error is what the model got wrong of what it was asked for: s (v* - v), the x0 error implied by the
  velocity error, so injected errors do not compound into the banked ones;
- the target's error comes from the group of the sample's own timestep, the context's from a random group;
- errors are injected as coherent multi-frame slices: a group stores the frames of one prediction one after
  another, and a slice is that many consecutive entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.training.config import ErftConfig


class ErrorBank:
    """Per-frame x0-error banks: `cfg.groups` equal timestep groups of [0, T), up to `cfg.bank_size` each.

    Each group is a ring: entries in insertion order, `_next` the slot the next error goes to once full.
    Buffers live on the CPU and grow on demand (a paper-scale bank is GBs; most runs never fill it).
    """

    def __init__(self, cfg: ErftConfig, frame_shape: tuple[int, ...], num_timesteps: int = 1000) -> None:
        self.cfg, self.frame_shape, self.num_timesteps = cfg, tuple(frame_shape), num_timesteps
        self._buffers: list[Tensor] = [self._empty(0)] * cfg.groups
        self._counts: list[int] = [0] * cfg.groups
        self._next: list[int] = [0] * cfg.groups  # ring position of the oldest entry once a group is full

    def _empty(self, rows: int) -> Tensor:
        return torch.zeros(rows, *self.frame_shape)

    def group_of(self, timesteps: Tensor) -> Tensor:
        """Group index (N,) of each timestep: floor(t * groups / T), clamped so t = T joins the last group."""
        g = torch.floor(timesteps.double().cpu() * self.cfg.groups / self.num_timesteps).long()
        return g.clamp(0, self.cfg.groups - 1)

    def count(self, group: int) -> int:
        return self._counts[group]

    def entries(self, group: int) -> Tensor:
        """The stored errors of one group in insertion order (oldest first): (count, *frame_shape)."""
        n, start = self._counts[group], self._next[group]
        stored = self._buffers[group][:n]
        return torch.cat([stored[start:], stored[:start]]) if start else stored

    def add(self, errors: Tensor, timesteps: Tensor) -> None:
        """Bank errors (N, *frame_shape) at timesteps (N,), in order;
        a full group replaces per `cfg.replacement`."""
        if tuple(errors.shape[1:]) != self.frame_shape or errors.shape[0] != timesteps.shape[0]:
            raise ValueError(f"erft: expected errors (N, {self.frame_shape}) with N timesteps, got "
                             f"{tuple(errors.shape)} and {tuple(timesteps.shape)}")
        if self.cfg.bank_size == 0:
            return
        errors = errors.detach().to("cpu", torch.float32)
        for error, group in zip(errors, self.group_of(timesteps).tolist()):
            self._add_one(group, error)

    def _add_one(self, group: int, error: Tensor) -> None:
        n = self._counts[group]
        if n < self.cfg.bank_size:
            self._reserve(group, n + 1)
            self._buffers[group][n] = error
            self._counts[group] = n + 1
            return
        stored = self._buffers[group]
        if self.cfg.replacement == "nearest":  # SVI: keep diverse errors (early ones never leave)
            stored[int(((stored - error) ** 2).flatten(1).sum(1).argmin())] = error
            return
        stored[self._next[group]] = error
        self._next[group] = (self._next[group] + 1) % n

    def _reserve(self, group: int, rows: int) -> None:
        """Grow a buffer geometrically (amortised O(1) appends) up to the bank size."""
        buffer = self._buffers[group]
        if buffer.shape[0] >= rows:
            return
        grown = self._empty(min(self.cfg.bank_size, max(rows, 2 * buffer.shape[0], 8)))
        grown[:buffer.shape[0]] = buffer
        self._buffers[group] = grown

    def nearest_filled(self, group: int) -> int | None:
        """The filled group nearest to `group` (ties to the lower-noise group), None if the bank is empty."""
        filled = [g for g in range(self.cfg.groups) if self._counts[g] > 0]
        return min(filled, key=lambda g: (abs(g - group), g)) if filled else None

    def sample_slice(self, timestep: float, frames: int, generator: torch.Generator) -> Tensor:
        """`frames` consecutive errors (frames, *frame_shape) from the group of `timestep` (or the nearest
        filled one), starting at a uniform entry and wrapping; zeros when the bank is empty."""
        source = self.nearest_filled(int(self.group_of(torch.tensor([timestep]))[0]))
        if source is None or frames == 0:
            return self._empty(frames)
        entries = self.entries(source)
        start = int(torch.randint(entries.shape[0], (1,), generator=generator))
        return entries[(start + torch.arange(frames)) % entries.shape[0]]

    def std(self) -> float:
        """Standard deviation of all banked errors (0 when empty): the error scale being recycled."""
        stored = [self.entries(g) for g in range(self.cfg.groups) if self._counts[g]]
        return float(torch.cat(stored).std()) if stored else 0.0

    def state_dict(self) -> dict[str, Tensor]:
        """Flat dict of tensors for safetensors: `x0.counts` (groups,), `x0.{g}` per filled group,
        oldest first."""
        state: dict[str, Tensor] = {"x0.counts": torch.tensor(self._counts, dtype=torch.long)}
        for g, n in enumerate(self._counts):
            if n:
                state[f"x0.{g}"] = self.entries(g).clone()  # own storage (safetensors rejects shared views)
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from `state_dict()`; groups and frame shape must match;
        the newest bank_size entries stay."""
        counts = state["x0.counts"].tolist()
        if len(counts) != self.cfg.groups:
            raise ValueError(f"erft bank has {len(counts)} groups, config erft.groups={self.cfg.groups}")
        for g, n in enumerate(counts):
            entries = state[f"x0.{g}"][max(0, n - self.cfg.bank_size):n] if n else self._empty(0)
            if tuple(entries.shape[1:]) != self.frame_shape:
                raise ValueError(f"erft bank frames are {tuple(entries.shape[1:])}, "
                                 f"expected {self.frame_shape}")
            self._buffers[g] = entries.to("cpu", torch.float32).clone()
            self._counts[g] = entries.shape[0]
            self._next[g] = 0


def banked_error(x_t: Tensor, v: Tensor, v_target: Tensor, sigma: Tensor) -> Tensor:
    """The x0 error s (v* - v) of a velocity prediction: what the model got wrong of what it was asked."""
    s = sigma.reshape(*sigma.shape, *([1] * (v.ndim - sigma.ndim))).to(v.dtype)
    return s * (v_target - v)


def inject(context: Tensor, allowed: Tensor, target: Tensor, target_t: Tensor, bank: ErrorBank,
           cfg: ErftConfig, generator: torch.Generator) -> tuple[Tensor, Tensor, dict[str, int]]:
    """ERFT injection (SVI): recycled x0 errors added to context (B, n, ...) and clean target (B, T, ...).

    allowed (B, n) marks the context frames that may be perturbed; target_t (B,) the target's timesteps. Per
    sample: with p_clean nothing; otherwise, independently, the allowed context frames with p_context (a slice
    from a random group) and all target frames with p_target (a slice from the group of target_t).
    Returns (context', target', counts for logging).
    """
    allowed = allowed.bool().to(context.device)
    b = target.shape[0]
    draws = torch.rand(b, 3, generator=generator)  # (B, 3): clean?, context?, target?
    active = draws[:, 0] >= cfg.p_clean
    hit_context = active & (draws[:, 1] < cfg.p_context)
    hit_target = active & (draws[:, 2] < cfg.p_target)
    # (B,) whose group perturbs context
    context_t = torch.randint(bank.num_timesteps, (b,), generator=generator)
    context_frames = allowed & hit_context[:, None].to(context.device)  # (B, n)
    info = {"clean": int((~active).sum()), "context": int(hit_context.sum()), "target": int(hit_target.sum()),
            "context_frames": int(context_frames.sum()),
            "target_frames": int(hit_target.sum()) * target.shape[1]}
    if cfg.bank_size == 0:  # ERFT disabled: decisions are drawn (same generator stream), nothing is added
        return context, target, info
    context, target = context.clone(), target.clone()
    for i in range(b):
        rows = context_frames[i].nonzero().flatten()
        if rows.numel():
            errors = bank.sample_slice(float(context_t[i]), rows.numel(), generator)
            context[i, rows] += errors.to(context.device, context.dtype)
        if hit_target[i]:
            errors = bank.sample_slice(float(target_t[i]), target.shape[1], generator)
            target[i] += errors.to(target.device, target.dtype)
    return context, target, info
