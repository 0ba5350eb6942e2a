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


@dataclass
class FrameMask:
    """A frame-level attention mask applied segment by segment: never expanded to a (L, L) token mask.

    At paper scale a dense token mask is 42 frames x 1560 tokens squared = 4.3 G entries per sample; here each
    run of consecutive query frames that see the same key frames is one SDPA call over exactly those keys.
    groups: per sample (or one entry shared by the whole batch), a list of (query start, query end, key
    index) in tokens, key index a slice (contiguous keys: a view) or a long tensor (gathered keys); keys are
    numbered over [context | own frames] as in `SelfAttention`.
    """

    groups: list[list[tuple[int, int, slice | Tensor]]]

    @property
    def shared(self) -> bool:
        """One plan for every sample (the batch runs together)."""
        return len(self.groups) == 1


def attention_mask(frame_mask: Tensor | None, tokens_per_frame: int, context: AttentionContext | None,
                   batch: int, length: int) -> Tensor | FrameMask | None:
    """What SelfAttention needs to mask: None (everyone sees everything: SDPA's fast path, the chunk step with
    an unpadded context), a key-padding mask (B, 1, 1, Lc + L) (a padded context, no frame mask), or a
    `FrameMask` planned from a frame-level mask (B|1, F, F) (block-causal and teacher forwards)."""
    context_valid = None if context is None else context.valid
    if frame_mask is None:
        if context_valid is None:
            return None
        own = torch.ones(batch, length, dtype=torch.bool, device=context_valid.device)
        return torch.cat([context_valid, own], dim=-1)[:, None, None, :]  # (B, 1, 1, Lc + L)
    context_length = 0 if context is None else context.length
    return plan_frame_mask(frame_mask, tokens_per_frame, context_length, context_valid, batch)


def plan_frame_mask(frame_mask: Tensor, tokens_per_frame: int, context_length: int,
                    context_valid: Tensor | None, batch: int) -> FrameMask:
    """Group consecutive query frames with identical mask rows; list each group's visible key tokens.

    Reads the (small) frame mask on the host once per forward; every layer reuses the plan.
    """
    t = tokens_per_frame
    masks = frame_mask.detach().to("cpu", torch.bool)
    valid = None if context_valid is None else context_valid.detach().to("cpu", torch.bool)
    samples = 1 if masks.shape[0] == 1 and valid is None else batch
    device = frame_mask.device
    groups = []
    for b in range(samples):
        rows = masks[min(b, masks.shape[0] - 1)]  # (F, F)
        context_keys = (torch.arange(context_length) if valid is None else valid[b].nonzero().flatten())
        plan, i = [], 0
        while i < rows.shape[0]:
            j = i + 1
            while j < rows.shape[0] and torch.equal(rows[j], rows[i]):
                j += 1
            frames = rows[i].nonzero().flatten()
            if frames.numel() == 0 and context_keys.numel() == 0:
                raise ValueError(f"frame mask row {i} of sample {b} sees no frame and no context; every "
                                 f"query frame must see at least one key")
            own = (context_length + frames[:, None] * t + torch.arange(t)).flatten()  # key token indices
            keys = torch.cat([context_keys, own])
            first = int(keys[0]) if keys.numel() else 0
            span = torch.arange(first, first + keys.numel())
            # contiguous keys (causal prefixes, whole sequences): a slice, so SDPA reads a view, no copy
            index = slice(first, first + keys.numel()) if torch.equal(keys, span) else keys.to(device)
            plan.append((i * t, j * t, index))
            i = j
        groups.append(plan)
    return FrameMask(groups)


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: FrameMask) -> Tensor:
    """SDPA segment by segment following a FrameMask plan. q (B, H, L, hd), k/v (B, H, Lc + L, hd)."""
    samples = [slice(None)] if mask.shared else [slice(b, b + 1) for b in range(q.shape[0])]
    rows = []
    for sample, plan in zip(samples, mask.groups):
        parts = []
        for start, end, index in plan:
            keys = k[sample, :, index] if isinstance(index, slice) else k[sample].index_select(2, index)
            values = v[sample, :, index] if isinstance(index, slice) else v[sample].index_select(2, index)
            parts.append(F.scaled_dot_product_attention(q[sample, :, start:end], keys, values))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0)  # (B, H, L, hd)


def dense_token_mask(frame_mask: Tensor, tokens_per_frame: int, context: AttentionContext | None,
                     batch: int) -> Tensor:
    """The (B, 1, L, Lc + L) boolean token mask a FrameMask stands for (a test reference; O(L^2) memory)."""
    own = frame_mask.repeat_interleave(tokens_per_frame, 1).repeat_interleave(tokens_per_frame, 2)
    own = own.expand(batch, -1, -1)  # (B, L, L)
    if context is None:
        return own[:, None]
    valid = context.valid
    if valid is None:
        valid = torch.ones(batch, context.length, dtype=torch.bool, device=own.device)
    return torch.cat([valid[:, None, :].expand(-1, own.shape[1], -1), own], dim=-1)[:, None]


def rotate(x: Tensor, rope: Tensor) -> Tensor:
    """RoPE; half-precision inputs are rotated in float64 and cast back, as the Wan release does (its `freqs`
    stay float64 under `pipeline.to(bf16)`), rather than with bf16 sines and cosines."""
    if x.dtype in (torch.bfloat16, torch.float16):
        return apply_rope(x.double(), rope.to(torch.complex128)).to(x.dtype)
    return apply_rope(x, rope)


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
                mask: Tensor | FrameMask | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, D) -> (B, L, D), plus this input's un-rotated K and V (B, L, H, hd) for the memory."""
        b, length, _ = x.shape
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))  # (B, L, H, hd)
        k = self.norm_k(self.k(x)).unflatten(-1, (self.heads, -1))
        v = self.v(x).unflatten(-1, (self.heads, -1))
        q_rot = rotate(q, rope).transpose(1, 2)  # (B, H, L, hd)
        k_rot = rotate(k, rope).transpose(1, 2)
        v_t = v.transpose(1, 2)
        if context is not None:
            k_rot = torch.cat([context.keys[layer], k_rot], dim=2)  # (B, H, Lc + L, hd)
            v_t = torch.cat([context.values[layer], v_t], dim=2)
        if isinstance(mask, FrameMask):
            out = masked_attention(q_rot, k_rot, v_t, mask)
        else:  # None (plain SDPA, the chunk step) or a key-padding row (B, 1, 1, Lk)
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
