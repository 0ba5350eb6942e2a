"""The model-free context sampler: invariants over random configs, rates, determinism, short histories."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.memory.context_sampler import ContextChoice, sample_context
from context_forcing.memory.plan import PARTS
from context_forcing.training.config import ContextSamplerConfig

configs = st.builds(ContextSamplerConfig, sink=st.integers(0, 4), max_slow=st.integers(0, 12),
                    slow_every=st.integers(1, 8), max_fast=st.integers(0, 9),
                    p_empty=st.sampled_from([0.0, 0.2, 1.0]))


def _check(choice: ContextChoice, history_len: int, cfg: ContextSamplerConfig) -> None:
    frames = choice.frames
    assert all(0 <= f < history_len for f in frames)
    assert list(frames) == sorted(set(frames))  # distinct, strictly increasing
    assert len(choice.parts) == len(frames)
    assert list(choice.parts) == sorted(choice.parts, key=PARTS.index)  # sink | slow | fast
    assert choice.sink in ((), tuple(range(min(cfg.sink, history_len))))
    assert len(choice.slow) <= cfg.max_slow and len(choice.fast) <= cfg.max_fast
    if choice.fast:
        assert choice.fast == tuple(range(choice.fast[0], history_len))  # contiguous, right before the target
    if choice.slow:
        assert choice.slow[0] >= len(choice.sink)


@settings(max_examples=150, deadline=None)
@given(history_len=st.integers(0, 120), cfg=configs, chunk=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_structural_invariants(history_len, cfg, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(4):
        _check(sample_context(history_len, cfg, chunk, g), history_len, cfg)


@settings(max_examples=40, deadline=None)
@given(history_len=st.integers(0, 60), cfg=configs, chunk=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_deterministic_given_the_generator(history_len, cfg, chunk, seed):
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(seed)
        runs.append([sample_context(history_len, cfg, chunk, g) for _ in range(3)])
    assert runs[0] == runs[1]


def test_empty_context_frequency_matches_p_empty():
    cfg = ContextSamplerConfig(p_empty=0.25)
    g = torch.Generator().manual_seed(0)
    empty = sum(not sample_context(60, cfg, 3, g).frames for _ in range(2000)) / 2000
    assert abs(empty - 0.25) < 0.03


def test_no_empty_context_without_p_empty():
    for sink in (0, 3):
        cfg = ContextSamplerConfig(sink=sink, p_empty=0.0)
        g = torch.Generator().manual_seed(1)
        assert all(sample_context(h, cfg, 3, g).frames for h in (1, 2, 5, 40) for _ in range(50))


def test_fast_counts_are_whole_chunks_and_sizes_vary():
    cfg = ContextSamplerConfig(sink=3, max_slow=12, slow_every=6, max_fast=6, p_empty=0.0)
    g = torch.Generator().manual_seed(2)
    choices = [sample_context(96, cfg, 3, g) for _ in range(400)]
    assert {len(c.fast) for c in choices} == {0, 3, 6}
    assert {len(c.slow) for c in choices} == set(range(13))
    assert all(c.sink == (0, 1, 2) for c in choices)


def test_slow_frames_are_about_one_per_slow_every():
    cfg = ContextSamplerConfig(sink=3, max_slow=12, slow_every=6, max_fast=6, p_empty=0.0)
    g = torch.Generator().manual_seed(3)
    gaps = []
    for _ in range(300):
        c = sample_context(200, cfg, 3, g)
        gaps += [b - a for a, b in zip(c.slow, c.slow[1:])]
    assert all(1 <= gap <= 11 for gap in gaps)  # one per bin of 6 frames, jittered within its bin
    assert abs(sum(gaps) / len(gaps) - 6) < 0.5


def test_short_histories():
    cfg = ContextSamplerConfig(sink=3, max_slow=12, slow_every=6, max_fast=6, p_empty=0.0)
    g = torch.Generator().manual_seed(4)
    assert sample_context(0, cfg, 3, g) == ContextChoice()
    assert sample_context(1, cfg, 3, g) == ContextChoice(sink=(0,))
    assert sample_context(2, cfg, 3, g) == ContextChoice(sink=(0, 1))
    for _ in range(50):
        choice = sample_context(5, cfg, 3, g)
        assert choice.sink == (0, 1, 2) and choice.fast in ((), (4,), (3, 4)) and len(choice.slow) <= 1
        _check(choice, 5, cfg)
