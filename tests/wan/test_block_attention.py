"""Block-structured attention (FrameMask) equals attention under the dense token mask it stands for."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from context_forcing.model.attention import (
    AttentionContext,
    FrameMask,
    attention_mask,
    dense_token_mask,
    masked_attention,
    plan_frame_mask,
    rotate,
)
from context_forcing.rollout.teacher import teacher_inputs

T = 3  # tokens per frame


def random_frame_mask(batch: int, frames: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, frames, frames, generator=g) < 0.5
    return mask | torch.eye(frames, dtype=torch.bool)  # every frame sees itself


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_context", [False, True])
def test_frame_mask_equals_dense_token_mask(seed, with_context) -> None:
    b, h, frames, hd, lc = 2, 2, 5, 8, 4
    g = torch.Generator().manual_seed(100 + seed)
    q = torch.randn(b, h, frames * T, hd, generator=g)
    k = torch.randn(b, h, lc * with_context + frames * T, hd, generator=g)
    v = torch.randn(b, h, lc * with_context + frames * T, hd, generator=g)
    context = None
    if with_context:
        valid = torch.tensor([[True, False, True, True], [True, True, True, True]])
        context = AttentionContext([k[:, :, :lc]], [v[:, :, :lc]], valid)
    frame_mask = random_frame_mask(b, frames, seed)
    planned = attention_mask(frame_mask, T, context, b, frames * T)
    assert isinstance(planned, FrameMask)
    dense = dense_token_mask(frame_mask, T, context, b)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    torch.testing.assert_close(masked_attention(q, k, v, planned), expected, atol=1e-6, rtol=1e-6)
    # the check can fail: another mask gives another output
    other = plan_frame_mask(
        random_frame_mask(b, frames, seed + 50),
        T,
        k.shape[2] - frames * T,
        None if context is None else context.valid,
        b,
    )
    assert (masked_attention(q, k, v, other) - expected).abs().max() > 1e-3


def test_teacher_forward_equals_dense_mask_forward(monkeypatch) -> None:
    """The whole model on a padded teacher sequence: block-structured vs the old dense token mask."""
    from context_forcing.conditioning import Conditioning
    from context_forcing.model import dit as dit_module
    from context_forcing.model.dit import CausalVideoDiT

    from .conftest import TINY, randomize_

    cfg = dataclasses.replace(TINY, freq_dim=64)
    model = randomize_(CausalVideoDiT(cfg, None), 1)
    g = torch.Generator().manual_seed(2)
    b, n, t = 2, 4, 3
    valid = torch.tensor([[True, True, True, True], [True, False, True, False]])
    latents = torch.randn(b, n + t, 4, 4, 4, generator=g)
    cond = Conditioning(prompt_embeds=torch.randn(b, 5, 32, generator=g))
    inputs = teacher_inputs(latents[:, :n], valid, cond, latents[:, n:], cond)
    timesteps = inputs.timesteps(torch.tensor([700.0, 300.0]))
    with torch.no_grad():
        prompt = model.encode_prompt(cond)
        blocks = model(
            inputs.latents, timesteps, prompt, inputs.temporal, frame_mask=inputs.frame_mask
        ).velocity
        monkeypatch.setattr(
            dit_module,
            "attention_mask",
            lambda fm, tpf, ctx, batch, length: dense_token_mask(fm, tpf, ctx, batch),
        )
        dense = model(
            inputs.latents, timesteps, prompt, inputs.temporal, frame_mask=inputs.frame_mask
        ).velocity
    torch.testing.assert_close(blocks, dense, atol=1e-5, rtol=1e-5)
    assert dense.abs().max() > 0.1


def test_plan_uses_views_for_causal_prefixes_and_never_a_token_mask() -> None:
    frames = 42
    causal = torch.ones(frames, frames, dtype=torch.bool).tril()[None]
    plan = plan_frame_mask(causal, 1560, 0, None, 1)  # paper-scale geometry: planned, nothing expanded
    assert plan.shared and len(plan.groups[0]) == frames
    assert all(
        isinstance(index, slice) and index == slice(0, (i + 1) * 1560)
        for i, (_, _, index) in enumerate(plan.groups[0])
    )
    assert attention_mask(None, 4, None, 2, 8) is None  # the chunk step: plain SDPA
    with pytest.raises(ValueError, match="row 1 of sample 0 sees no frame"):
        plan_frame_mask(torch.tensor([[[True, False], [False, False]]]), 2, 0, None, 1)


def test_half_precision_rope_is_applied_in_float64() -> None:
    from context_forcing.model.rope import apply_rope, rope_rotation

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 6, 2, 32, generator=g)
    rope = rope_rotation(torch.arange(2.0)[None] * 500, torch.zeros(1, 2, 3, 2), 32, 10000.0, torch.float32)
    x = x.bfloat16()
    exact = apply_rope(x.double(), rope.to(torch.complex128)).to(torch.bfloat16)  # one rounding, at the end
    half = rotate(x, rope)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half, exact, atol=0, rtol=0)
    assert not torch.equal(apply_rope(x, rope), exact)  # bf16 sines and cosines round differently
