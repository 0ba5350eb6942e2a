"""Self-attention over [context | frames] and cross-attention to the prompt (Wan2.1 layout).

The context (frames from the memory, or the teacher's clean frames when they are part of the input) arrives
as already-rotated K and V per layer in an `AttentionContext`; the model never sees a memory object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # per layer, once allocated: (keys, values) buffers (B, Lc + L, H, hd), the context copied in at the head
    _buffers: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]

    @property
    def allocated(self) -> tuple[int, ...]:
        """The layers whose [context | own] buffers exist (`buffers`, `allocate`)."""
        return tuple(self._buffers)

    def buffers(self, layer: int, own: int) -> tuple[Tensor, Tensor]:
        """Preallocated [context | own] K and V (B, Lc + own, H, hd) of `layer`, the context written once per
        chunk; every call of the chunk writes only its own `own` tokens into the tail (no per-call `cat`).

        For inference only: the tail is overwritten in place by the next call (the autograd path
        concatenates, see `SelfAttention`)."""
        buffers = self._buffers.get(layer)
        if buffers is None or buffers[0].shape[1] != self.length + own:
            keys, values = self.keys[layer], self.values[layer]  # (B, H, Lc, hd)
            b, heads, lc, hd = keys.shape
            buffers = tuple(torch.empty(b, lc + own, heads, hd, dtype=t.dtype, device=t.device)
                            for t in (keys, values))
            buffers[0][:, :lc].copy_(keys.transpose(1, 2))
            buffers[1][:, :lc].copy_(values.transpose(1, 2))
            self._buffers[layer] = buffers
        return buffers

    def allocate(self, own: int) -> None:
        """Every layer's `buffers` now, before any call (a compiled forward then sees one input structure on
        every call of a chunk: one graph instead of two)."""
        for layer in range(len(self.keys)):
            self.buffers(layer, own)


@dataclass
class PromptContext:
    """Cross-attention K/V of the prompt per layer, (B, H, P, head_dim); computed once per prompt."""

    keys: list[Tensor]
    values: list[Tensor]


# (query tokens x key tokens) per sample up to which a frame mask runs as one SDPA call with a token mask. The
# presets stay far below (panworld: at most 336 x 336); beyond it the segment plan avoids O(L^2) memory.
DENSE_MASK_MAX = 1 << 20


@dataclass
class FrameMask:
    """A frame-level attention mask, planned once per forward and reused by every layer; two forms.

    dense: an additive token mask (B|1, 1, L, Lc + L), 0 where a query sees a key and -inf elsewhere, for one
    SDPA call over the whole batch. Short sequences (every preset) take it: one masked call costs about what
    an unmasked one does, where the segment plan issued one call per run of query frames per sample (10 248
    SDPA calls per panworld ode-init update) and its backward 5x the dense one's (issue 12).
    groups: the segment plan of long sequences, never expanded to a (L, L) token mask. At paper scale a dense
    token mask is 42 frames x 1560 tokens squared = 4.3 G entries per sample; here each run of consecutive
    query frames that see the same key frames is one SDPA call over exactly those keys. One plan per set of
    samples with identical masks (`samples`: their batch rows, a slice or a long tensor), each a list of
    (query start, query end, key index) in tokens, key index a slice (contiguous keys: a view) or a long
    tensor (gathered keys); keys are numbered over [context | own frames] as in `SelfAttention`.
    """

    groups: list[list[tuple[int, int, slice | Tensor]]]
    samples: list[slice | Tensor] = field(default_factory=lambda: [slice(None)])
    dense: Tensor | None = None

    @property
    def shared(self) -> bool:
        """One plan (or token mask) for every sample (the batch runs together)."""
        if self.dense is not None:
            return self.dense.shape[0] == 1
        return len(self.groups) == 1 and self.samples[0] == slice(None)


def attention_mask(frame_mask: Tensor | None, tokens_per_frame: int, context: AttentionContext | None,
                   batch: int, length: int) -> Tensor | FrameMask | None:
    """What SelfAttention needs to mask: None (everyone sees everything: SDPA's fast path, the chunk step with
    an unpadded context), an additive key-padding mask (B, 1, 1, Lc + L) in the keys' dtype (a padded context,
    no frame mask; additive because SDPA turns a boolean mask into one on every call), or a `FrameMask`
    planned from a frame-level mask (B|1, F, F) (block-causal and teacher forwards)."""
    context_valid = None if context is None else context.valid
    if frame_mask is None:
        if context_valid is None:
            return None
        own = torch.ones(batch, length, dtype=torch.bool, device=context_valid.device)
        visible = torch.cat([context_valid, own], dim=-1)[:, None, None, :]  # (B, 1, 1, Lc + L)
        return _additive(visible, context.keys[0].dtype)
    context_length = 0 if context is None else context.length
    return plan_frame_mask(frame_mask, tokens_per_frame, context_length, context_valid, batch)


def plan_frame_mask(frame_mask: Tensor, tokens_per_frame: int, context_length: int,
                    context_valid: Tensor | None, batch: int, dense_max: int = DENSE_MASK_MAX) -> FrameMask:
    """Plan a frame mask (B|1, F, F) over [context (Lc tokens, `context_valid` (B, Lc)) | F frames].

    Up to `dense_max` query x key tokens per sample: the additive token mask. Beyond: group consecutive query
    frames with identical mask rows, list each group's visible key tokens, one plan per set of identical
    samples. Reads the (small) frame mask on the host once per forward; every layer reuses the plan.
    """
    t = tokens_per_frame
    masks = frame_mask.detach().to("cpu", torch.bool)  # (S, F, F), S = 1 or B
    valid = None if context_valid is None else context_valid.detach().to("cpu", torch.bool)
    _check_every_row_sees_a_key(masks, context_length, valid)
    length = masks.shape[1] * t
    if length * (context_length + length) <= dense_max:
        return FrameMask([], dense=_dense_frame_mask(frame_mask, t, context_length, context_valid))
    samples, plans = _identical_samples(masks, valid, batch), []
    for rows in samples:
        b = int(rows[0])
        context_keys = torch.arange(context_length) if valid is None else valid[b].nonzero().flatten()
        plans.append(_segment_plan(masks[min(b, masks.shape[0] - 1)], t, context_length, context_keys,
                                   frame_mask.device))
    if len(samples) == 1:
        return FrameMask(plans, [slice(None)])
    return FrameMask(plans, [_rows_index(rows, frame_mask.device) for rows in samples])


def _check_every_row_sees_a_key(masks: Tensor, context_length: int, valid: Tensor | None) -> None:
    """Raise for a query frame that sees no frame and no context token (its softmax would be 0 / 0)."""
    sees = masks.any(dim=-1)  # (S, F)
    if context_length:
        context_any = torch.ones(1, dtype=torch.bool) if valid is None else valid.any(dim=-1)  # (1 | B,)
        sees = sees | context_any[:, None]
    if not bool(sees.all()):
        b, i = (int(x) for x in (~sees).nonzero()[0])
        raise ValueError(f"frame mask row {i} of sample {b} sees no frame and no context; every "
                         f"query frame must see at least one key")


def _dense_frame_mask(frame_mask: Tensor, t: int, context_length: int, context_valid: Tensor | None
                      ) -> Tensor:
    """The additive token mask (B|1, 1, F t, Lc + F t) of a frame mask (B|1, F, F), float32."""
    s, f, _ = frame_mask.shape
    visible = frame_mask.bool()[:, :, None, :, None].expand(s, f, t, f, t).reshape(s, f * t, f * t)
    if context_length:
        if context_valid is None:
            context_valid = visible.new_ones(1, context_length)
        rows = max(s, context_valid.shape[0])
        visible = torch.cat([context_valid.bool()[:, None, :].expand(rows, f * t, -1),
                             visible.expand(rows, -1, -1)], dim=-1)  # (B|1, L, Lc + L)
    return _additive(visible[:, None], torch.float32)  # SDPA broadcasts a shared (1, 1, L, Lk) mask


def _additive(visible: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask as SDPA's additive one: 0 where visible, -inf elsewhere."""
    zeros = torch.zeros_like(visible, dtype=dtype)
    return zeros.masked_fill_(~visible, float("-inf"))


def _identical_samples(masks: Tensor, valid: Tensor | None, batch: int) -> list[list[int]]:
    """Batch rows grouped by identical (frame mask, context validity): each group runs as one batch."""
    if masks.shape[0] == 1 and valid is None:
        return [list(range(batch))]
    groups: dict[bytes, list[int]] = {}
    for b in range(batch):
        key = masks[min(b, masks.shape[0] - 1)].numpy().tobytes()
        if valid is not None:
            key += valid[b].numpy().tobytes()
        groups.setdefault(key, []).append(b)
    return list(groups.values())


def _rows_index(rows: list[int], device: torch.device) -> slice | Tensor:
    """Consecutive rows as a slice (a view), others as a long tensor."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return torch.tensor(rows, dtype=torch.long, device=device)


def _segment_plan(rows: Tensor, t: int, context_length: int, context_keys: Tensor, device: torch.device
                  ) -> list[tuple[int, int, slice | Tensor]]:
    """(query start, query end, key index) per run of consecutive query frames with identical rows (F, F)."""
    plan, i = [], 0
    while i < rows.shape[0]:
        j = i + 1
        while j < rows.shape[0] and torch.equal(rows[j], rows[i]):
            j += 1
        frames = rows[i].nonzero().flatten()
        own = (context_length + frames[:, None] * t + torch.arange(t)).flatten()  # key token indices
        keys = torch.cat([context_keys, own])
        first = int(keys[0]) if keys.numel() else 0
        span = torch.arange(first, first + keys.numel())
        # contiguous keys (causal prefixes, whole sequences): a slice, so SDPA reads a view, no copy
        index = slice(first, first + keys.numel()) if torch.equal(keys, span) else keys.to(device)
        plan.append((i * t, j * t, index))
        i = j
    return plan


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: FrameMask) -> Tensor:
    """SDPA under a FrameMask: one call with its token mask, or segment by segment following its plan, one
    batch per set of identical samples. q (B, H, L, hd), k/v (B, H, Lc + L, hd) -> (B, H, L, hd)."""
    if mask.dense is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense.to(dtype=q.dtype))
    outputs, order = [], []
    for rows, plan in zip(mask.samples, mask.groups):
        pick = (lambda x: x[rows]) if isinstance(rows, slice) else (lambda x: x.index_select(0, rows))
        qs, ks, vs = pick(q), pick(k), pick(v)
        parts = []
        for start, end, index in plan:
            keys = ks[:, :, index] if isinstance(index, slice) else ks.index_select(2, index)
            values = vs[:, :, index] if isinstance(index, slice) else vs.index_select(2, index)
            parts.append(F.scaled_dot_product_attention(qs[:, :, start:end], keys, values))
        outputs.append(torch.cat(parts, dim=2))
        order.append(torch.arange(q.shape[0], device=q.device)[rows])
    if len(outputs) == 1:
        return outputs[0]
    inverse = torch.argsort(torch.cat(order))  # back to batch order
    return torch.cat(outputs, dim=0).index_select(0, inverse)  # (B, H, L, hd)


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
        return apply_rope(x.double(), rope.to(dtype=torch.complex128)).to(dtype=x.dtype)
    return apply_rope(x, rope)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class ParameterKey:
    """Identifies the values of some parameters for a derived cache (the fused q/k/v weights): their storages
    (held, so that no new tensor can reuse an address while the key lives), version counters (bumped by every
    in-place change: optimiser steps, `load_state_dict`), shapes and dtypes."""

    def __init__(self, params: tuple[Tensor, ...]) -> None:
        self.storages = tuple(p.detach() for p in params)
        self.versions = tuple(p._version for p in params)

    def matches(self, params: tuple[Tensor, ...]) -> bool:
        return len(params) == len(self.storages) and all(
            p.data_ptr() == s.data_ptr() and p._version == v and p.shape == s.shape and p.dtype == s.dtype
            for p, s, v in zip(params, self.storages, self.versions))


def rms_norm(x: Tensor, norm: nn.RMSNorm, weight: Tensor | None = None) -> Tensor:
    """`norm(x)` over the last dim as 5 plain ops (torch 2.13's CPU `rms_norm` dispatches ~23 small ops);
    equal to it bit for bit in fp32 (same operations in the same order). Half precision is normalised in fp32
    and cast back, as the fused op does. weight: broadcastable over x (default: `norm.weight`)."""
    eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
    weight = norm.weight if weight is None else weight
    if x.dtype in (torch.bfloat16, torch.float16):
        h = x.float()
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(dtype=x.dtype)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class _Attention(nn.Module):
    """Wan2.1 attention parameters: q, k, v, o projections and RMSNorm on q and k across heads."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self._fused: tuple[ParameterKey, tuple[Tensor, ...]] | None = None  # (parameter key, fused tensors)


class SelfAttention(_Attention):
    """Multi-head self-attention over [context | frames] with 3-D RoPE."""

    def fused_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """[Wq; Wk; Wv] (3D, D), [bq; bk; bv] (3D,) and the q/k RMSNorm gains (2, D): one GEMM, one norm.

        With autograd (gradients reach the parameters), under torch.distributed (FSDP refills unsharded
        parameters' storage in place) or while compiling (frozen weights: inductor folds it), concatenated
        per call. Otherwise cached in a plain attribute (not a parameter or buffer: state_dict keys and shapes
        stay Wan's) and rebuilt whenever one of the parameters changes (storage or version counter: optimiser
        steps, `load_state_dict`, `.to()`). The fused GEMM equals the three separate ones bit for bit (each
        output column: the same dot product).
        """
        params = (self.q.weight, self.k.weight, self.v.weight, self.q.bias, self.k.bias, self.v.bias,
                  self.norm_q.weight, self.norm_k.weight)
        # FSDP refills unsharded parameters' storage in place; a compiled graph folds the concatenation itself
        if torch.is_grad_enabled() or _distributed() or torch.compiler.is_compiling():
            return torch.cat(params[:3]), torch.cat(params[3:6]), torch.stack(params[6:])
        if self._fused is None or not self._fused[0].matches(params):
            self._fused = (ParameterKey(params), (torch.cat(params[:3]), torch.cat(params[3:6]),
                                                  torch.stack(params[6:])))
        return self._fused[1]

    def forward(self, x: Tensor, rope: Tensor, context: AttentionContext | None, layer: int,
                mask: Tensor | FrameMask | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, D) -> (B, L, D), plus this input's un-rotated K and V (B, L, H, hd) for the memory.

        rope: (B, L, 1, hd / 2) rotations. q and k are normalised and rotated together."""
        b, length, _ = x.shape
        weight, bias, gains = self.fused_parameters()
        qkv = F.linear(x, weight, bias).unflatten(-1, (3, self.heads, -1))  # (B, L, 3, H, hd)
        qk = rms_norm(qkv[:, :, :2].flatten(-2), self.norm_q, gains).unflatten(-1, (self.heads, -1))
        k, v = qk[:, :, 1], qkv[:, :, 2]  # (B, L, H, hd) un-rotated, for the memory
        qk_rot = rotate(qk, rope[:, :, None])  # (B, L, 2, H, hd)
        q_rot = qk_rot[:, :, 0].transpose(1, 2)  # (B, H, L, hd)
        if context is None:
            k_rot, v_t = qk_rot[:, :, 1].transpose(1, 2), v.transpose(1, 2)
        elif torch.is_grad_enabled():  # autograd: no in-place writes, concatenate
            # (B, H, Lc + L, hd)
            k_rot = torch.cat([context.keys[layer], qk_rot[:, :, 1].transpose(1, 2)], dim=2)
            v_t = torch.cat([context.values[layer], v.transpose(1, 2)], dim=2)
        else:  # inference: write own K/V into the layer's preallocated [context | own] buffers
            keys, values = context.buffers(layer, length)  # (B, Lc + L, H, hd)
            keys[:, context.length:].copy_(qk_rot[:, :, 1])
            values[:, context.length:].copy_(v)
            k_rot, v_t = keys.transpose(1, 2), values.transpose(1, 2)  # (B, H, Lc + L, hd) views
        if isinstance(mask, FrameMask):
            out = masked_attention(q_rot, k_rot, v_t, mask)
        else:  # None (plain SDPA, the chunk step) or a key-padding row (B, 1, 1, Lk)
            out = F.scaled_dot_product_attention(q_rot, k_rot, v_t, attn_mask=mask)
        return F.linear(out.transpose(1, 2).reshape(b, length, -1), self.o.weight, self.o.bias), (k, v)


class CrossAttention(_Attention):
    """Attention from video tokens to the prompt tokens (no RoPE, no mask: Wan attends to padding too)."""

    def prompt_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded prompt (B, P, D) -> K, V (B, H, P, hd)."""
        k = self.norm_k(self.k(text)).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = self.v(text).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        return k, v

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, length, _ = x.shape
        q = F.linear(x, self.q.weight, self.q.bias)
        q = rms_norm(q, self.norm_q).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, L, hd)
        out = F.scaled_dot_product_attention(q, k, v)
        return F.linear(out.transpose(1, 2).reshape(b, length, -1), self.o.weight, self.o.bias)
