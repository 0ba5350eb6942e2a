"""The background prefetch of training clips changes nothing: same clips, same order, same resume."""

from __future__ import annotations

from dataclasses import replace

import torch

from context_forcing.presets import tiny
from context_forcing.training.config import for_preset
from context_forcing.training.data import PanWorldTrainingData


def _draws(data: PanWorldTrainingData, lengths: list[int]) -> list[torch.Tensor]:
    out = []
    for frames in lengths:
        latents, cond = data.next_clip(frames)
        out.append(torch.cat([latents.flatten(1), cond.actions.flatten(1)], dim=1))
    return out


def test_prefetched_clips_equal_rendered_ones_across_lengths_and_resume() -> None:
    run, train = tiny(), for_preset("teacher", "tiny")
    lengths = [6, 6, 6, 3, 3, 6, 6]  # repeats (prefetched), a change of length (a prefetch dropped)
    plain = _draws(PanWorldTrainingData(run, train, prefetch=False), lengths + [6, 6])
    data = PanWorldTrainingData(run, replace(train, prefetch_data=True))
    fetched = _draws(data, lengths)
    assert data._pending is not None  # the next clip is being rendered in the background
    state = data.state_dict()
    fetched += _draws(data, [6])
    data.load_state_dict(state)  # back one step: the pending prefetch (a later step) must not be used
    fetched += _draws(data, [6, 6])
    expected = plain[:8] + plain[7:9]
    assert len(fetched) == len(expected)
    for got, want in zip(fetched, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(plain[0], plain[1])  # consecutive steps draw different clips
