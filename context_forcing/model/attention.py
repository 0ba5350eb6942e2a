"""Self-attention over [context | frames] and cross-attention to the prompt (Wan2.1 layout).

The context (frames from the memory, or the teacher's clean frames when they are part of the input) arrives
as already-rotated K and V per layer in an `AttentionContext`; the model never sees a memory object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from context_forcing.model.rope import apply_rope


@dataclass
class AttentionContext:
    """Context K/V for every layer, prepared once per chunk and reused by all its denoising steps.

    keys / values: per layer (B, H, Lc, head_dim), keys already rotated at their plan positions;
    valid: (B, Lc) bool key-padding mask (samples may hold different numbers of slow frames); None = all.
    """

    keys: list[Tensor]
    values: list[Tensor]
    valid: Tensor | None = None

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]


@dataclass
class PromptContext:
    """Cross-attention K/V of the prompt per layer, (B, H, P, head_dim); computed once per prompt."""

    keys: list[Tensor]
    values: list[Tensor]


def attention_mask(frame_mask: Tensor | None, tokens_per_frame: int, context: AttentionContext | None,
                   batch: int, length: int) -> Tensor | None:
    """Boolean SDPA mask (B, 1, L or 1, Lc + L) from a frame-level mask (B|1, F, F) and context padding.

    None when every query sees every key (the chunk step with an unpadded context): SDPA's fast path.
    """
    context_valid = None if context is None else context.valid
    if frame_mask is None and context_valid is None:
        return None
    device = frame_mask.device if frame_mask is not None else context_valid.device
    if frame_mask is None:
        own = torch.ones(batch, 1, length, dtype=torch.bool, device=device)  # one row broadcasts over queries
    else:
        own = frame_mask.repeat_interleave(tokens_per_frame, 1).repeat_interleave(tokens_per_frame, 2)
        own = own.expand(batch, -1, -1)  # (B, L, L)
    parts = [own]
    if context is not None:
        if context_valid is None:
            context_valid = torch.ones(batch, context.length, dtype=torch.bool, device=device)
        parts.insert(0, context_valid[:, None, :].expand(-1, own.shape[1], -1))  # (B, rows, Lc)
    return torch.cat(parts, dim=-1)[:, None]


class _Attention(nn.Module):
    """Wan2.1 attention parameters: q, k, v, o projections and RMSNorm on q and k across heads."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)


class SelfAttention(_Attention):
    """Multi-head self-attention over [context | frames] with 3-D RoPE."""

    def forward(self, x: Tensor, rope: Tensor, context: AttentionContext | None, layer: int,
                mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, D) -> (B, L, D), plus this input's un-rotated K and V (B, L, H, hd) for the memory."""
        b, length, _ = x.shape
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))  # (B, L, H, hd)
        k = self.norm_k(self.k(x)).unflatten(-1, (self.heads, -1))
        v = self.v(x).unflatten(-1, (self.heads, -1))
        q_rot = apply_rope(q, rope).transpose(1, 2)  # (B, H, L, hd)
        k_rot = apply_rope(k, rope).transpose(1, 2)
        v_t = v.transpose(1, 2)
        if context is not None:
            k_rot = torch.cat([context.keys[layer], k_rot], dim=2)  # (B, H, Lc + L, hd)
            v_t = torch.cat([context.values[layer], v_t], dim=2)
        out = F.scaled_dot_product_attention(q_rot, k_rot, v_t, attn_mask=mask)
        return self.o(out.transpose(1, 2).reshape(b, length, -1)), (k, v)


class CrossAttention(_Attention):
    """Attention from video tokens to the prompt tokens (no RoPE, no mask: Wan attends to padding too)."""

    def prompt_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded prompt (B, P, D) -> K, V (B, H, P, hd)."""
        k = self.norm_k(self.k(text)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = self.v(text).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return k, v

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, length, _ = x.shape
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, L, hd)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(b, length, -1))
