"""Rectified-flow schedule, conversions and samplers."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.diffusion import (
    ChunkNoise,
    add_noise,
    euler_sample,
    guided,
    noise_from_velocity,
    shift_sigma,
    student_sample,
    student_sigmas,
    teacher_sigmas,
    velocity_from_x0,
    velocity_target,
    x0_from_velocity,
)


def test_student_timesteps_match_the_paper():
    sigmas = student_sigmas((1000.0, 750.0, 500.0, 250.0), shift=5.0)
    torch.testing.assert_close(sigmas * 1000, torch.tensor([1000.0, 937.5, 833.3333, 625.0]),
                               rtol=0, atol=1e-3)


@settings(max_examples=50, deadline=None)
@given(sigma=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_conversions_round_trip(sigma, seed):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 3, 3, 4, 4, generator=g)
    x_t = add_noise(x0, eps, sigma)
    v = velocity_target(x0, eps)
    torch.testing.assert_close(x0_from_velocity(x_t, v, sigma), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(noise_from_velocity(x_t, v, sigma), eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(velocity_from_x0(x_t, x0, sigma), v, rtol=1e-3, atol=1e-3)


def test_per_frame_noise_levels_broadcast():
    x0, eps = torch.zeros(1, 2, 1, 1, 1), torch.ones(1, 2, 1, 1, 1)
    out = add_noise(x0, eps, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.25, 0.75]))


def test_shift_is_monotone_and_fixes_endpoints():
    s = torch.linspace(0, 1, 11)
    shifted = shift_sigma(s, 5.0)
    assert (shifted[0] == 0 and shifted[-1] == 1 and bool((shifted.diff() > 0).all())
            and bool((shifted >= s).all()))
    sig = teacher_sigmas(8, 3.0)
    assert sig[0] == 1 and sig[-1] == 0 and len(sig) == 9


def test_samplers_recover_x0_with_the_exact_velocity():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 3, 4, 4, generator=g)
    eps = torch.randn_like(x0)
    exact = lambda x, sigma: velocity_from_x0(x, x0, sigma)  # noqa: E731  the ideal denoiser
    sigmas = student_sigmas((1000.0, 750.0, 500.0, 250.0), 5.0)
    out = student_sample(exact, add_noise(x0, eps, sigmas[0]), sigmas, lambda i: torch.randn_like(x0))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    straight = lambda x, sigma: eps - x0  # noqa: E731  the straight flow line
    torch.testing.assert_close(euler_sample(straight, eps, teacher_sigmas(7, 5.0)), x0, rtol=1e-4, atol=1e-4)


def test_guidance():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert guided(c, u, 1.0) == c and guided(c, u, 0.0) == u and guided(c, u, 4.0) == torch.tensor([5.0])


def test_noise_depends_on_sample_not_batch():
    alone = ChunkNoise(7, [2], chunk=5).draw((3, 4))
    batch = ChunkNoise(7, [0, 1, 2], chunk=5).draw((3, 4))
    torch.testing.assert_close(batch[2], alone[0], rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(ChunkNoise(7, [2], chunk=6).draw((3, 4)), alone)
