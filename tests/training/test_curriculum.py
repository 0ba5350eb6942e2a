"""Stage 2's rollout-length curriculum: n_max ramps linearly; sampled lengths are whole chunks in range."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from context_forcing.training.config import CurriculumConfig
from context_forcing.training.curriculum import n_max, sample_rollout_length


def test_n_max_curriculum():
    cfg = CurriculumConfig(n_min=84, n_max_start=84, n_max_end=105, ramp_steps=600, target=21)
    assert n_max(0, cfg) == 84
    assert n_max(300, cfg) == 94  # 84 + 21 * 300 / 600 = 94.5, floored
    assert n_max(600, cfg) == 105
    assert n_max(10_000, cfg) == 105
    assert [n_max(s, cfg) for s in range(0, 700, 50)] == sorted(n_max(s, cfg) for s in range(0, 700, 50))


@settings(max_examples=60, deadline=None)
@given(n_min=st.integers(1, 60), extra_start=st.integers(0, 20), extra_end=st.integers(0, 40),
       ramp=st.integers(1, 50), step=st.integers(0, 80), chunk=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_sampled_rollout_length_is_whole_chunks_within_range(n_min, extra_start, extra_end, ramp, step, chunk,
                                                             seed):
    start = n_min + extra_start
    cfg = CurriculumConfig(n_min=n_min, n_max_start=start, n_max_end=start + extra_end, ramp_steps=ramp,
                           target=1)
    hi = n_max(step, cfg)
    assume(-(-n_min // chunk) * chunk <= hi)
    g = torch.Generator().manual_seed(seed)
    for _ in range(5):
        n = sample_rollout_length(step, cfg, chunk, g)
        assert n % chunk == 0 and n_min <= n <= hi


def test_sampled_rollout_length_covers_the_whole_range():
    cfg = CurriculumConfig(n_min=84, n_max_start=84, n_max_end=105, ramp_steps=600, target=21)
    g = torch.Generator().manual_seed(0)
    assert {sample_rollout_length(0, cfg, 3, g) for _ in range(20)} == {84}
    assert {sample_rollout_length(900, cfg, 3, g) for _ in range(300)} == set(range(84, 106, 3))


def test_sampled_rollout_length_rejects_a_range_without_whole_chunks():
    cfg = CurriculumConfig(n_min=13, n_max_start=14, n_max_end=14, ramp_steps=1, target=1)
    with pytest.raises(ValueError, match="chunk"):
        sample_rollout_length(0, cfg, 3, torch.Generator().manual_seed(0))
