"""CausalVideoDiT: RoPE properties, the three uses agree, autograd, FLOP count."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import context_from_kv, make_cond, make_latents
from context_forcing.model.dit import block_causal_mask
from context_forcing.model.flops import attention_flops, forward_flops
from context_forcing.model.rope import apply_rope, grid_positions, rope_rotation
from context_forcing.rollout.teacher import teacher_inputs


def _scores(q, k, tq, tk, sq, sk, head_dim=24):
    rq = rope_rotation(tq, sq, head_dim, 10000.0, torch.float64)
    rk = rope_rotation(tk, sk, head_dim, 10000.0, torch.float64)
    return (apply_rope(q, rq) * apply_rope(k, rk)).sum(-1)


def test_rope_scores_depend_only_on_position_differences():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 24, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 24, generator=g, dtype=torch.float64)
    spatial = lambda r, c: torch.tensor([[[[r, c]]]], dtype=torch.float64)  # noqa: E731
    base = _scores(q, k, torch.tensor([[3.0]]), torch.tensor([[1.0]]), spatial(2, 5), spatial(0, 1))
    shifted = _scores(q, k, torch.tensor([[103.0]]), torch.tensor([[101.0]]), spatial(9, 12.5),
                      spatial(7, 8.5))
    torch.testing.assert_close(base, shifted, rtol=1e-9, atol=1e-9)
    moved = _scores(q, k, torch.tensor([[4.0]]), torch.tensor([[1.0]]), spatial(2, 5), spatial(0, 1))
    assert not torch.allclose(base, moved)  # the temporal axis does rotate


def test_rope_real_path_matches_complex_path():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, 24, generator=g)
    rotation = rope_rotation(torch.rand(2, 5, generator=g) * 20, torch.rand(2, 5, 1, 2, generator=g) * 8, 24,
                             1e4, torch.float32)  # (2, 5, 1, 12)
    torch.testing.assert_close(apply_rope(x.bfloat16(), rotation).float(), apply_rope(x, rotation),
                               rtol=0.02, atol=0.05)
    # a pair rotated by angle a: (x0, x1) -> (x0 cos a - x1 sin a, x0 sin a + x1 cos a)
    pair = torch.tensor([[[[1.0, 2.0]]]])
    quarter = torch.polar(torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), torch.pi / 2))
    torch.testing.assert_close(apply_rope(pair, quarter), torch.tensor([[[[-2.0, 1.0]]]]), rtol=0, atol=1e-6)


def test_grid_positions_raster_order():
    torch.testing.assert_close(grid_positions(2, 3),
                               torch.tensor([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]],
                                            dtype=torch.float32))


def test_chunk_step_equals_block_causal_sequence_forward(run, model):
    b, f, c = 2, 9, 3
    cond = make_cond(run, b, f)
    prompt = model.encode_prompt(cond)
    x = make_latents(run, b, f)
    pos = torch.arange(f, dtype=torch.float32).expand(b, f)
    t = torch.zeros(b, f)
    t[:, 6:] = torch.tensor([900.0, 500.0, 100.0])  # noisy last chunk, per-frame timesteps
    full = model(x, t, prompt, pos, cond, frame_mask=block_causal_mask(f, c)).velocity
    clean = model(x[:, :6], t[:, :6], prompt, pos[:, :6], cond.frames(slice(0, 6)),
                  frame_mask=block_causal_mask(6, c), return_kv=True)
    context = context_from_kv(model, clean.kv, pos[:, :6], 6, b)
    step = model(x[:, 6:], t[:, 6:], prompt, pos[:, 6:], cond.frames(slice(6, 9)), context=context).velocity
    torch.testing.assert_close(step, full[:, 6:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clean.velocity, full[:, :6], rtol=1e-5, atol=1e-5)


def test_teacher_forward_masks_and_positions(run, model):
    b, n, tlen = 2, 4, 3
    cond = make_cond(run, b, n + tlen)
    prompt = model.encode_prompt(cond)
    x = make_latents(run, b, n + tlen)
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    inputs = teacher_inputs(x[:, :n], valid, cond.frames(slice(0, n)), x[:, n:], cond.frames(slice(n, None)))
    torch.testing.assert_close(inputs.temporal,
                               torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 1, 0, 0, 2, 3, 4.0]]))
    t = inputs.timesteps(torch.tensor([700.0, 300.0]))
    out = model(inputs.latents, t, prompt, inputs.temporal, inputs.cond,
                frame_mask=inputs.frame_mask).velocity
    # changing the target or padding frames leaves the real context frames' outputs unchanged
    other = inputs.latents.clone()
    other[:, n:] += 1.0
    other[1, 2:4] = 5.0
    out2 = model(other, t, prompt, inputs.temporal, inputs.cond, frame_mask=inputs.frame_mask).velocity
    torch.testing.assert_close(out2[0, :n], out[0, :n])
    torch.testing.assert_close(out2[1, :2], out[1, :2])
    # padding does not leak into the target: sample 1's target equals a run with only its 2 real frames
    alone = teacher_inputs(x[1:, :2], torch.ones(1, 2, dtype=torch.bool),
                           cond.select(slice(1, 2)).frames(slice(0, 2)),
                           x[1:, n:], cond.select(slice(1, 2)).frames(slice(n, None)))
    out_alone = model(alone.latents, alone.timesteps(torch.tensor([300.0])),
                      model.encode_prompt(cond.select(slice(1, 2))),
                      alone.temporal, alone.cond, frame_mask=alone.frame_mask).velocity
    torch.testing.assert_close(out[1, n:], out_alone[0, 2:], rtol=1e-5, atol=1e-5)
    # with no context the target is a plain bidirectional forward at positions 0..T-1
    empty = teacher_inputs(x[:, :0], valid[:, :0], cond.frames(slice(0, 0)), x[:, n:],
                           cond.frames(slice(n, None)))
    bidir = model(x[:, n:], t[:, n:], prompt, torch.arange(tlen).float().expand(b, tlen),
                  cond.frames(slice(n, None)))
    got = model(empty.latents, empty.timesteps(torch.tensor([700.0, 300.0])), prompt, empty.temporal,
                empty.cond, frame_mask=empty.frame_mask)
    torch.testing.assert_close(got.velocity, bidir.velocity, rtol=1e-5, atol=1e-5)


def test_chunk_step_works_under_autograd(run, model):
    b = 1
    cond = make_cond(run, b, 6)
    prompt = model.encode_prompt(cond)
    x = make_latents(run, b, 6)
    pos = torch.arange(6, dtype=torch.float32)[None]
    with torch.no_grad():
        clean = model(x[:, :3], torch.zeros(b, 3), prompt, pos[:, :3], cond.frames(slice(0, 3)),
                      return_kv=True)
    context = context_from_kv(model, clean.kv, pos[:, :3], 3, b)
    prompt = model.encode_prompt(cond)
    out = model(x[:, 3:], torch.full((b, 3), 500.0), prompt, pos[:, 3:], cond.frames(slice(3, 6)),
                context=context)
    out.velocity.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["blocks.0.self_attn.q.weight"].abs().sum() > 0
    assert grads["frame_embedding.2.weight"].abs().sum() > 0  # actions and pose reach the network


def test_analytic_flops_match_torch_counter_outside_attention(run, model):
    b, f, ctx = 2, 3, 6
    cond = make_cond(run, b, f + ctx)
    prompt = model.encode_prompt(cond)
    x = make_latents(run, b, f + ctx)
    pos = torch.arange(f + ctx, dtype=torch.float32).expand(b, -1)
    with torch.no_grad():
        clean = model(x[:, :ctx], torch.zeros(b, ctx), prompt, pos[:, :ctx], cond.frames(slice(0, ctx)),
                      return_kv=True)
        context = context_from_kv(model, clean.kv, pos[:, :ctx], ctx, b)
        with FlopCounterMode(display=False) as counter:
            model(x[:, ctx:], torch.ones(b, f), prompt, pos[:, ctx:], cond.frames(slice(ctx, None)),
                  context=context)
    tokens = run.tokens_per_frame
    p = run.text.prompt_len
    expected = (forward_flops(run.model, b, f, tokens, ctx, p)
                - attention_flops(run.model, b, f, tokens, ctx, p))
    assert counter.get_total_flops() == expected
    # 2 layers, width 48
    assert attention_flops(run.model, b, f, tokens, ctx, p) == b * 2 * 4 * 12 * (36 + 4) * 48
