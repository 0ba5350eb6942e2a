"""The streaming chunk step's fast paths (issue 12) equal the plain ones: context K/V buffers vs
concatenation, the fused q/k/v GEMM and its cache, the plain-op RMSNorm and GELU, RoPE / frame embedding
shared by a chunk's calls."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import context_from_kv, make_cond, make_latents
from context_forcing.model.attention import rms_norm
from context_forcing.model.dit import gelu_tanh
from context_forcing.rollout.chunk_step import ChunkInputs, commit_pass


def _chunk_setup(run, model, b=2, ctx=6, f=3):
    cond = make_cond(run, b, ctx + f)
    prompt = model.encode_prompt(cond)
    x = make_latents(run, b, ctx + f)
    pos = torch.arange(ctx + f, dtype=torch.float32).expand(b, -1)
    with torch.no_grad():
        kv = model(x[:, :ctx], torch.zeros(b, ctx), prompt, pos[:, :ctx], cond.frames(slice(0, ctx)),
                   return_kv=True).kv
    context = context_from_kv(model, kv, pos[:, :ctx], ctx, b)
    return prompt, x[:, ctx:], pos[:, ctx:], cond.frames(slice(ctx, None)), context


def test_context_buffers_equal_concatenation_across_calls(run, model):
    prompt, x, pos, cond, context = _chunk_setup(run, model)
    t = torch.full(x.shape[:2], 700.0)
    with torch.enable_grad():  # autograd path: torch.cat of [context | own] per call
        reference = [model(x + i, t, prompt, pos, cond, context=context, return_kv=True) for i in range(3)]
    with torch.no_grad():  # inference path: own K/V written into the per-layer buffers, reused by every call
        fast = [model(x + i, t, prompt, pos, cond, context=context, return_kv=True) for i in range(3)]
    assert len(context._buffers) == run.model.layers
    for ref, out in zip(reference, fast):
        torch.testing.assert_close(out.velocity, ref.velocity.detach(), rtol=0, atol=0)
        for (k_ref, v_ref), (k, v) in zip(ref.kv, out.kv):
            torch.testing.assert_close(k, k_ref.detach(), rtol=0, atol=0)
            torch.testing.assert_close(v, v_ref.detach(), rtol=0, atol=0)
    # the context part of the buffers is the (rotated) context, untouched by the calls
    keys, values = context._buffers[0]
    torch.testing.assert_close(keys[:, :context.length].transpose(1, 2), context.keys[0], rtol=0, atol=0)
    torch.testing.assert_close(values[:, :context.length].transpose(1, 2), context.values[0], rtol=0, atol=0)
    assert not torch.equal(fast[0].velocity, fast[1].velocity)  # the calls do differ


def test_fused_qkv_equals_separate_projections_and_follows_parameter_changes(run, model):
    attn = model.blocks[0].self_attn
    x = torch.randn(2, 5, run.model.dim)
    with torch.no_grad():
        weight, bias, gains = attn.fused_parameters()
        q, k, v = F.linear(x, weight, bias).chunk(3, dim=-1)
        torch.testing.assert_close(q, attn.q(x), rtol=0, atol=0)
        torch.testing.assert_close(k, attn.k(x), rtol=0, atol=0)
        torch.testing.assert_close(v, attn.v(x), rtol=0, atol=0)
        assert attn.fused_parameters()[0] is weight  # cached
        attn.k.weight.add_(1.0)  # an in-place change (an optimiser step, load_state_dict) rebuilds the cache
        rebuilt = attn.fused_parameters()[0]
        assert rebuilt is not weight
        torch.testing.assert_close(rebuilt[run.model.dim:2 * run.model.dim], attn.k.weight, rtol=0, atol=0)
        attn.norm_q.weight.mul_(2.0)
        torch.testing.assert_close(attn.fused_parameters()[2][0], attn.norm_q.weight, rtol=0, atol=0)
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}  # no fused tensor saved
    with torch.enable_grad():
        weight, _, _ = attn.fused_parameters()
        weight.sum().backward()
    assert attn.q.weight.grad is not None and attn.v.weight.grad is not None  # autograd reaches q, k, v


def test_plain_op_rms_norm_equals_the_module_bit_for_bit():
    norm = torch.nn.RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(48))
    x = torch.randn(3, 7, 48) * 5
    torch.testing.assert_close(rms_norm(x, norm), norm(x), rtol=0, atol=0)
    norm, half = norm.bfloat16(), x.bfloat16()
    torch.testing.assert_close(rms_norm(half, norm), norm(half), rtol=0.01, atol=0.01)


def test_gelu_tanh_matches_torch():
    x = torch.linspace(-12, 12, 10001)
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), rtol=1e-6, atol=1e-6)


def test_gelu_tanh_under_autograd_keeps_the_forward_and_has_torch_s_gradient():
    x = torch.linspace(-12, 12, 10001, requires_grad=True)
    y = gelu_tanh(x)
    torch.testing.assert_close(y.detach(), gelu_tanh(x.detach()), rtol=0, atol=0)  # a trained forward's bits
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    (expected,) = torch.autograd.grad((F.gelu(x, approximate="tanh") * weights).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-6)
    small = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_tanh, (small,))  # the backward is the forward's derivative


def test_chunk_calls_share_prepared_frames_with_the_same_result(run, model):
    prompt, x, pos, cond, context = _chunk_setup(run, model)
    inputs = ChunkInputs(prompt, pos, cond, context)
    with torch.no_grad():
        prepared = inputs.prepared(model, x)
        assert inputs.prepared(model, x) is prepared  # computed once per chunk
        shared = commit_pass(model, inputs, x)
        fresh = model(x, torch.zeros(x.shape[:2]), prompt, pos, cond, context=context, return_kv=True).kv
    for (k, v), (k_fresh, v_fresh) in zip(shared, fresh):
        torch.testing.assert_close(k, k_fresh, rtol=0, atol=0)
        torch.testing.assert_close(v, v_fresh, rtol=0, atol=0)
    with torch.enable_grad():
        assert inputs.prepared(model, x) is prepared  # parameter-free: shared by the autograd calls too

