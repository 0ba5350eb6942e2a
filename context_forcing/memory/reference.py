"""The naive reference memory used by tests: a plain list of per-frame K/V, RoPE applied fresh in float64.

It decides nothing: it replays plans recorded from `SlowFastMemory`, so float noise near tau cannot flip
one path and not the other (DESIGN.md section 5).
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.memory.plan import ChunkPlan
from context_forcing.model.attention import AttentionContext
from context_forcing.model.rope import apply_rope, rope_rotation


class ReferenceMemory:
    """Every committed frame's K/V kept forever, per sample, in a dict frame -> tensors."""

    def __init__(self, batch: int, rope_theta: float) -> None:
        self.frames: list[dict[int, tuple[Tensor, Tensor, Tensor]]] = [{} for _ in range(batch)]
        self.rope_theta = rope_theta

    def commit(self, chunk_frames: list[tuple[int, ...]], kv: list[tuple[Tensor, Tensor]],
               spatial: Tensor) -> None:
        """kv: per layer (B, c * Lf, H, hd) un-rotated; spatial (B, c, Lf, 2)."""
        for b, frames in enumerate(chunk_frames):
            c = len(frames)
            keys = torch.stack([k[b] for k, _ in kv]).unflatten(1, (c, -1))  # (layers, c, Lf, H, hd)
            values = torch.stack([v[b] for _, v in kv]).unflatten(1, (c, -1))
            for i, frame in enumerate(frames):
                self.frames[b][frame] = (keys[:, i].clone(), values[:, i].clone(), spatial[b, i].clone())

    def context(self, plans: list[ChunkPlan], dtype: torch.dtype = torch.float32) -> AttentionContext | None:
        """Context K/V per layer (B, H, n * Lf, hd) for the given plans, rotated in float64, zero-padded."""
        n = max(len(p.frames) for p in plans)
        if n == 0:
            return None
        template = next(self.frames[b][p.frames[0]][0] for b, p in enumerate(plans) if p.frames)
        zero = torch.zeros(template.shape, dtype=torch.float64)  # (layers, Lf, H, hd) padding frame
        per_sample_k, per_sample_v, valid = [], [], []
        for b, plan in enumerate(plans):
            ks, vs = [], []
            for frame, position in zip(plan.frames, plan.positions):
                k, v, spatial = self.frames[b][frame]  # (layers, Lf, H, hd), (Lf, 2)
                rotation = rope_rotation(torch.tensor([[float(position)]]), spatial[None, None], k.shape[-1],
                                         self.rope_theta, torch.float64)  # (1, Lf, 1, hd/2)
                ks.append(apply_rope(k.double(), rotation[0]))
                vs.append(v.double())
            pad = n - len(ks)
            per_sample_k.append(torch.stack(ks + [zero] * pad, dim=1))  # (layers, n, Lf, H, hd)
            per_sample_v.append(torch.stack(vs + [zero] * pad, dim=1))
            valid.append([True] * len(ks) + [False] * pad)
        # (layers, B, H, n*Lf, hd)
        k = torch.stack(per_sample_k, dim=1).flatten(2, 3).transpose(2, 3).to(dtype)
        v = torch.stack(per_sample_v, dim=1).flatten(2, 3).transpose(2, 3).to(dtype)
        lf = k.shape[3] // n
        mask = torch.tensor(valid).repeat_interleave(lf, dim=1)
        return AttentionContext(list(k.unbind(0)), list(v.unbind(0)), None if bool(mask.all()) else mask)
