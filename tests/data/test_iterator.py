"""PanWorldStream: shapes, agreement with the episodes, teacher histories, determinism, resuming."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from context_forcing.config import ConfigError
from context_forcing.data.iterator import PanWorldStream
from context_forcing.data.panworld import (
    SEED_RANGES,
    PanWorldConfig,
    episode_labels,
    render_episode,
    sample_episode,
)
from context_forcing.presets import panworld, tiny

WORLD = PanWorldConfig()


def stream(**kwargs) -> PanWorldStream:
    options = dict(split="train", seed=3, window=6, batch=2, episode_frames=96)
    options.update(kwargs)
    return PanWorldStream(WORLD, panworld(), **options)


def assert_batches_equal(a, b):
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    for name in ("prompt", "actions", "pose"):
        torch.testing.assert_close(getattr(a.cond, name), getattr(b.cond, name), rtol=0, atol=0)
    assert torch.equal(a.seeds, b.seeds) and torch.equal(a.starts, b.starts) and a.history == b.history
    assert torch.equal(a.memory_critical, b.memory_critical) and a.step == b.step


def test_batches_have_the_documented_shapes_and_ranges():
    batch = next(stream())
    assert batch.latents.shape == (2, 6, 3, 32, 32) and batch.latents.dtype == torch.float32
    assert batch.latents.min() >= -1 and batch.latents.max() <= 1
    assert batch.cond.prompt.shape == (2, 4) and batch.cond.actions.shape == (2, 6, 3)
    assert batch.cond.pose.shape == (2, 6, 1) and batch.cond.spatial_positions is None
    assert batch.memory_critical.shape == batch.new.shape == (2, 6, 8)
    assert batch.memory_critical.dtype == torch.bool
    assert (batch.starts % 3 == 0).all() and (batch.starts + 6 <= 96).all() and batch.history == 0
    lo, hi = SEED_RANGES["train"]
    assert ((batch.seeds >= lo) & (batch.seeds < hi)).all()


def test_samples_are_the_episodes_windows():
    batch = next(stream(spatial_positions=True))
    for b in range(2):
        episode = sample_episode(WORLD, int(batch.seeds[b]), 96)
        start = int(batch.starts[b])
        pixels = torch.from_numpy(render_episode(episode, start, start + 6)).permute(0, 3, 1, 2).float()
        pixels = pixels / 127.5 - 1
        torch.testing.assert_close(batch.latents[b], pixels, rtol=0, atol=1e-6)
        cond = episode.conditioning(start, start + 6, spatial=True)
        torch.testing.assert_close(batch.cond.pose[b], cond.pose[0], rtol=0, atol=0)
        torch.testing.assert_close(batch.cond.spatial_positions[b], cond.spatial_positions[0], rtol=0, atol=0)
        mask = episode_labels(episode, start, start + 6).token_memory_critical()
        assert torch.equal(batch.memory_critical[b], torch.from_numpy(mask))


def test_teacher_mode_yields_histories_from_frame_zero():
    histories = set()
    teacher = stream(history=(6, 30), window=9, episode_frames=64)
    for batch in (next(teacher) for _ in range(6)):
        histories.add(batch.history)
        assert batch.history % 3 == 0 and 6 <= batch.history <= 30
        assert batch.latents.shape[1] == batch.history + 9 and (batch.starts == 0).all()
        assert batch.cond.actions[:, 0, 1].eq(1).all()  # frame 0: no camera move, the episode's start
    assert len(histories) > 1


def test_eval_split_draws_eval_seeds():
    batch = next(stream(split="eval"))
    assert (batch.seeds >= SEED_RANGES["eval"][0]).all()


def test_same_seed_same_batches_different_seed_different():
    a, b, c = stream(seed=5), stream(seed=5), stream(seed=6)
    assert_batches_equal(next(a), next(b))
    assert not torch.equal(next(a).latents, next(c).latents)


def test_resuming_from_a_state_dict_replays_the_trajectory():
    first = stream(seed=9)
    for _ in range(3):
        next(first)
    state = first.state_dict()
    assert state == {"seed": 9, "step": 3} and all(isinstance(v, int) for v in state.values())
    expected = [next(first) for _ in range(2)]
    resumed = stream(seed=0)
    resumed.load_state_dict(state)
    for want in expected:
        assert_batches_equal(next(resumed), want)


def test_window_candidates_prefer_memory_critical_windows():
    plain = stream(seed=1, window=12, batch=4, window_candidates=1)
    boosted = stream(seed=1, window=12, batch=4, window_candidates=6)
    share = [np.mean([next(s).memory_critical.float().mean().item() for _ in range(4)])
             for s in (plain, boosted)]
    assert share[1] > share[0]


def test_sub_token_world_needs_five_way_actions():
    world = replace(WORLD, camera_mode="subtoken")
    with pytest.raises(ConfigError, match="model.action_dim"):
        PanWorldStream(world, panworld())
    run = panworld()
    run = replace(run, model=replace(run.model, action_dim=5))
    batch = next(PanWorldStream(world, run, window=6, batch=1, episode_frames=128))
    assert batch.cond.actions.shape == (1, 6, 5)


@pytest.mark.parametrize("kwargs", [dict(window=7), dict(window=0), dict(history=(4, 5)),
                                    dict(episode_frames=5), dict(split="test")])
def test_invalid_streams_are_rejected(kwargs):
    with pytest.raises(ValueError):
        stream(**kwargs)


def test_a_run_whose_frames_differ_from_the_world_is_rejected():
    with pytest.raises(ConfigError, match="latent size"):
        PanWorldStream(WORLD, tiny())
