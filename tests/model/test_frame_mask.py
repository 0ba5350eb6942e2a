"""FrameMask: both forms (dense token mask, segment plan over identical samples) equal SDPA under the dense
boolean token mask they stand for, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from context_forcing.conditioning import Conditioning
from context_forcing.model.attention import (
    AttentionContext,
    FrameMask,
    attention_mask,
    dense_token_mask,
    masked_attention,
    plan_frame_mask,
)
from context_forcing.rollout.teacher import teacher_inputs

T = 3  # tokens per frame
FORMS = {"dense": 1 << 20, "segments": 0}  # plan_frame_mask's dense_max


def frame_masks(batch: int, frames: int, seed: int) -> torch.Tensor:
    """Random masks where samples 0 and 2 are equal (non-consecutive identical samples share a plan)."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, frames, frames, generator=g) < 0.5) | torch.eye(frames, dtype=torch.bool)
    mask[2] = mask[0]
    return mask


def qkv(b: int, lk: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, 2, n, 8, generator=g, requires_grad=True) for n in (length, lk, lk))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_context", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_planned_attention_equals_dense_boolean_mask(seed, with_context, form) -> None:
    b, frames, lc = 4, 5, 4 * with_context
    q, k, v = qkv(b, lc + frames * T, frames * T, 100 + seed)
    context = None
    if with_context:
        valid = torch.tensor([[True, False, True, True], [True] * 4, [True, False, True, True], [False] * 4])
        context = AttentionContext([k[:, :, :lc]], [v[:, :, :lc]], valid)
    fm = frame_masks(b, frames, seed)
    planned = plan_frame_mask(fm, T, lc, None if context is None else context.valid, b, dense_max=FORMS[form])
    assert (planned.dense is not None) == (form == "dense")
    if form == "segments":  # samples 0 and 2 run together, 1 and 3 alone
        assert len(planned.groups) == 3
    got = masked_attention(q, k, v, planned)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_token_mask(fm, T, context, b))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    grads = torch.autograd.grad(got.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for a, e in zip(grads, expected_grads):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
    other = plan_frame_mask(frame_masks(b, frames, seed + 50), T, lc,
                            None if context is None else context.valid, b, dense_max=FORMS[form])
    assert (masked_attention(q, k, v, other) - expected).abs().max() > 1e-3  # the check can fail


@pytest.mark.parametrize("form", FORMS)
def test_teacher_mask_with_padding_in_both_forms(form) -> None:
    """The teacher's mask (causal context with per-sample padding, bidirectional target) in both forms."""
    b, n, t = 3, 4, 3
    valid = torch.tensor([[True] * 4, [True, True, False, False], [True] * 4])
    latents = torch.zeros(b, n + t, 1, 1, 1)
    cond = Conditioning(prompt_embeds=torch.zeros(b, 1, 4))
    fm = teacher_inputs(latents[:, :n], valid, cond, latents[:, n:], cond).frame_mask
    q, k, v = qkv(b, (n + t) * T, (n + t) * T, 7)
    planned = plan_frame_mask(fm, T, 0, None, b, dense_max=FORMS[form])
    if form == "segments":  # samples 0 and 2 share a plan: causal context rows, one target group
        assert len(planned.groups) == 2 and len(planned.groups[0]) == n + 1
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_token_mask(fm, T, None, b))
    torch.testing.assert_close(masked_attention(q, k, v, planned), expected, atol=1e-6, rtol=1e-6)


def test_identical_samples_share_one_plan_and_the_form_follows_the_size() -> None:
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    batch = causal.expand(3, -1, -1)
    shared = plan_frame_mask(batch, T, 0, None, 3, dense_max=0)
    assert shared.shared and len(shared.groups) == 1 and len(shared.groups[0]) == 4
    dense = plan_frame_mask(batch, T, 0, None, 3)
    assert isinstance(dense, FrameMask) and dense.dense is not None and dense.dense.shape == (3, 1, 12, 12)
    assert plan_frame_mask(causal[None], T, 0, None, 3).shared  # one (1, F, F) mask: broadcast
    with pytest.raises(ValueError, match="row 1 of sample 2 sees no frame"):
        bad = batch.clone()
        bad[2, 1] = False
        plan_frame_mask(bad, T, 0, None, 3)


def test_key_padding_mask_is_additive_and_equals_the_boolean_one() -> None:
    b, lc, length = 2, 6, 3
    q, k, v = qkv(b, lc + length, length, 3)
    valid = torch.tensor([[True] * 6, [True, True, False, True, False, True]])
    context = AttentionContext([k[:, :, :lc]], [v[:, :, :lc]], valid)
    mask = attention_mask(None, 1, context, b, length)
    assert mask.dtype == k.dtype and mask.shape == (b, 1, 1, lc + length)
    boolean = torch.cat([valid, torch.ones(b, length, dtype=torch.bool)], dim=1)[:, None, None]
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=boolean), atol=0, rtol=0)
