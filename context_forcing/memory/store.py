"""Preallocated per-slot storage: K/V for every layer plus each frame's latent and per-frame conditioning.

A slot holds one latent frame of one sample. Which frame sits in which slot is bookkeeping of
`SlowFastMemory`; the store only reads and writes slots (nanochat-style: tensors allocated once,
explicit write / gather methods). Keys are stored before RoPE so positions can be re-assigned freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LAYERED = ("keys", "values")  # stored per layer: (layers, B, slots, ...)
FIELDS = (*LAYERED, "latents", "actions", "pose", "spatial", "summary")


@dataclass(frozen=True)
class StoreShape:
    layers: int
    tokens_per_frame: int
    heads: int
    head_dim: int
    latent: tuple[int, int, int]  # (C, H, W)
    action_dim: int
    summary_dim: int


class SlotStore:
    """Tensors indexed by (sample, slot); grows by doubling when `capacity` is exceeded
    (the `full` layout)."""

    def __init__(self, shape: StoreShape, batch: int, capacity: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.shape, self.batch, self.device, self.dtype = shape, batch, device, dtype
        self.capacity = 0
        self.keys = self.values = self.latents = self.actions = self.pose = self.spatial = self.summary = None
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        s, b = self.shape, self.batch
        new = {
            "keys": (s.layers, b, capacity, s.tokens_per_frame, s.heads, s.head_dim),  # un-rotated K
            "values": (s.layers, b, capacity, s.tokens_per_frame, s.heads, s.head_dim),
            "latents": (b, capacity, *s.latent),  # clean latents (teacher context, re-caching)
            "actions": (b, capacity, s.action_dim),
            "pose": (b, capacity, 1),
            "spatial": (b, capacity, s.tokens_per_frame, 2),  # RoPE (row, column) per token
            "summary": (b, capacity, s.summary_dim),  # admission summary (mean key) per frame
        }
        for name, dims in new.items():
            tensor = torch.zeros(dims, device=self.device, dtype=self.dtype)
            old = getattr(self, name)
            if old is not None:
                slot_axis = 2 if name in LAYERED else 1
                tensor.narrow(slot_axis, 0, self.capacity).copy_(old)
            setattr(self, name, tensor)
        self.capacity = capacity

    def ensure_capacity(self, slots: int) -> None:
        """Grow (by doubling) so that slot indices < `slots` exist."""
        if slots > self.capacity:
            self._allocate(max(slots, 2 * self.capacity))

    def write(self, sample_slots: Tensor, keys: Tensor, values: Tensor, latents: Tensor, actions: Tensor,
              pose: Tensor, spatial: Tensor, summary: Tensor) -> None:
        """Write n frames per sample at slots (B, n): keys/values (layers, B, n, Lf, H, hd), latents
        (B, n, C, H, W), actions (B, n, A), pose (B, n, 1), spatial (B, n, Lf, 2),
        summary (B, n, S). Stored detached."""
        rows = torch.arange(self.batch, device=sample_slots.device)[:, None]
        self.keys[:, rows, sample_slots] = keys.detach().to(dtype=self.dtype)
        self.values[:, rows, sample_slots] = values.detach().to(dtype=self.dtype)
        self.latents[rows, sample_slots] = latents.detach().to(dtype=self.dtype)
        self.actions[rows, sample_slots] = actions.detach().to(dtype=self.dtype)
        self.pose[rows, sample_slots] = pose.detach().to(dtype=self.dtype)
        self.spatial[rows, sample_slots] = spatial.detach().to(dtype=self.dtype)
        self.summary[rows, sample_slots] = summary.detach().to(dtype=self.dtype)

    def write_kv(self, sample: int, slot: int, keys: Tensor, values: Tensor) -> None:
        """Overwrite one slot's K/V (layers, Lf, H, hd), e.g. with first-pass K/V (official-code option)."""
        self.keys[:, sample, slot] = keys.detach().to(dtype=self.dtype)
        self.values[:, sample, slot] = values.detach().to(dtype=self.dtype)

    def gather(self, sample_slots: Tensor, names: tuple[str, ...] = FIELDS) -> dict[str, Tensor]:
        """Fields `names` at slots (B, n): keys/values (layers, B, n, Lf, H, hd), the rest (B, n, ...).

        One `index_select` of whole slots over the flattened (sample, slot) axis: rows of contiguous memory,
        1.5x faster than indexing by (sample, slot) pairs at the frozen benchmark's sizes; the same values."""
        b, n = sample_slots.shape
        rows = torch.arange(b, device=sample_slots.device)[:, None]
        flat = (rows * self.capacity + sample_slots).flatten()  # (B * n,) into the (B * capacity) axis
        out = {}
        for name in names:
            field = getattr(self, name)
            axis = 1 if name in LAYERED else 0
            out[name] = field.flatten(axis, axis + 1).index_select(axis, flat).unflatten(axis, (b, n))
        return out
