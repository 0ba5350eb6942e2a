"""DMD losses and timesteps: exact gradients, masking, normalisation, timestep range."""

import torch

from context_forcing.diffusion.schedule import shift_sigma
from context_forcing.distill.dmd import dmd_gradient, dmd_loss, dmd_timesteps, flow_matching_loss

SHAPE = (2, 5, 3, 2, 2)  # (B, F, C, H, W)


def _latents(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(3))


MASK = torch.tensor([[True, True, False, True, False], [False, True, True, True, True]])


def test_dmd_loss_gradient_is_grad_over_masked_elements_and_zero_elsewhere():
    x, real, fake = _latents(0)
    x = x.requires_grad_()
    grad = dmd_gradient(x.detach(), real, fake, MASK)
    dmd_loss(x, grad, MASK).backward()
    count = MASK.sum() * (3 * 2 * 2)
    m = MASK[..., None, None, None].expand(SHAPE)
    torch.testing.assert_close(x.grad[m], (grad / count)[m], rtol=1e-12, atol=1e-12)
    assert torch.equal(x.grad[~m], torch.zeros_like(x.grad[~m]))


def test_dmd_loss_ignores_unmasked_frames_even_with_nonfinite_gradient():
    x, real, fake = _latents(1)
    x = x.requires_grad_()
    grad = torch.full(SHAPE, float("nan"), dtype=x.dtype)
    grad[MASK] = 1.0
    loss = dmd_loss(x, grad, MASK)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.5, dtype=x.dtype), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(x.grad).all()


def test_dmd_loss_mean_is_over_masked_frames_only():
    """Adding frames without gradient must not dilute the loss (official code's flaw 5)."""
    x, real, fake = _latents(2)
    full = torch.ones(SHAPE[:2], dtype=torch.bool)
    grad = dmd_gradient(x, real, fake, full)
    part = torch.zeros_like(full)
    part[:, :2] = True
    sub = dmd_loss(x[:, :2], grad[:, :2], None)
    torch.testing.assert_close(dmd_loss(x, torch.where(part[..., None, None, None], grad, 0), part), sub)


def test_dmd_gradient_vanishes_when_fake_equals_real():
    x, real, _ = _latents(3)
    x = x.requires_grad_()
    grad = dmd_gradient(x.detach(), real, real.clone(), MASK)
    assert torch.equal(grad, torch.zeros_like(grad))
    dmd_loss(x, grad, MASK).backward()
    assert torch.equal(x.grad, torch.zeros_like(x.grad))


def test_dmd_gradient_normalised_per_sample_and_over_masked_frames():
    x, real, fake = _latents(4)
    grad = dmd_gradient(x, real, fake, MASK)
    scale = torch.tensor([3.0, 0.25], dtype=x.dtype)[:, None, None, None, None]
    scaled = dmd_gradient(x * scale, real * scale, fake * scale, MASK)
    torch.testing.assert_close(scaled, grad, rtol=1e-12, atol=1e-12)  # sample-wise scale invariance
    m = MASK[..., None, None, None]
    norm = torch.stack([(x - real)[b][MASK[b]].abs().mean() for b in range(2)])
    expected = torch.where(m, (fake - real) / norm[:, None, None, None, None], 0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    # unmasked frames do not enter the normaliser
    x2 = torch.where(m, x, x + 100.0)
    torch.testing.assert_close(dmd_gradient(x2, real, fake, MASK), grad, rtol=1e-12, atol=1e-12)


def test_dmd_gradient_carries_no_graph():
    x, real, fake = (t.requires_grad_() for t in _latents(5))
    assert not dmd_gradient(x, real, fake, None).requires_grad


def test_flow_matching_loss_zero_for_exact_velocity_and_ignores_unmasked_frames():
    x0, noise, junk = _latents(6)
    v = noise - x0
    assert float(flow_matching_loss(v, x0, noise)) == 0.0
    wrong = torch.where(MASK[..., None, None, None], v, junk)
    assert float(flow_matching_loss(wrong, x0, noise, MASK)) == 0.0
    assert float(flow_matching_loss(wrong, x0, noise)) > 0.0


def test_flow_matching_loss_value_and_weight():
    x0, noise, v = _latents(7)
    per_frame = ((v - (noise - x0)) ** 2).mean(dim=(2, 3, 4))
    loss = flow_matching_loss(v, x0, noise, MASK)
    torch.testing.assert_close(loss, per_frame[MASK].mean(), rtol=1e-12, atol=0)
    w = torch.tensor([2.0, 0.5], dtype=x0.dtype)
    expected = (per_frame * w[:, None])[MASK].sum() / MASK.sum()
    torch.testing.assert_close(flow_matching_loss(v, x0, noise, MASK, w), expected, rtol=1e-12, atol=0)


def test_dmd_timesteps_in_bounds_and_shifted_toward_noise():
    g = torch.Generator().manual_seed(0)
    t = dmd_timesteps(4000, 20.0, 980.0, 5.0, g)
    assert t.shape == (4000,) and t.dtype == torch.float32
    assert float(t.min()) >= 20.0 and float(t.max()) <= 980.0
    clamped = dmd_timesteps(4000, 300.0, 700.0, 1.0, torch.Generator().manual_seed(0))
    assert float(clamped.min()) == 300.0 and float(clamped.max()) == 700.0  # clamped, not resampled
    torch.testing.assert_close((clamped == 300.0).float().mean(), torch.tensor(0.3), rtol=0, atol=0.03)
    plain = dmd_timesteps(4000, 20.0, 980.0, 1.0, torch.Generator().manual_seed(0))
    assert float(t.mean()) > float(plain.mean()) + 100  # the shift moves mass toward t = 1000
    # the median sits at the shifted median noise level
    torch.testing.assert_close(t.median().double(), 1000 * shift_sigma(0.5, 5.0), rtol=0.02, atol=0)
