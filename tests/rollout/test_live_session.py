"""Live sessions: per-chunk conditioning given as the video streams, PanWorld's camera and prompt attributes,
continuation from video frames through the codec."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_cond
from context_forcing.codecs import PixelCodec
from context_forcing.data.episodes import episode_conditioning, ground_truth_pixels, panworld_episodes
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.presets import panworld
from context_forcing.rollout.live import LiveCamera, prompt_ids, prompt_values
from context_forcing.rollout.session import StreamingSession


def test_chunk_conditioning_given_live_equals_the_planned_one(run, model):
    cond = make_cond(run, 2, 12)
    planned = StreamingSession(model, run, cond, seed=3)
    live = StreamingSession(model, run, dataclasses.replace(cond, actions=None, pose=None), seed=3)
    for k in range(4):
        expected, _ = planned.generate_chunk()
        got, _ = live.generate_chunk(frames_cond=cond.frames(slice(3 * k, 3 * k + 3)))
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="frames_cond must cover batch 2 and 3 frames"):
        live.generate_chunk(frames_cond=cond.frames(slice(0, 2)))
    with pytest.raises(ValueError, match="conditioned on actions"):  # nothing is silently left out
        live.generate_chunk()


def test_live_camera_reads_like_an_episode_path():
    run = panworld()
    world = PanWorldConfig()
    episode = panworld_episodes(run, 7, 1, 12)[0]
    camera = LiveCamera(run, episode, x=8)
    right = camera.chunk_conditioning(1)
    assert camera.x == 8 + 3 * world.token_width
    torch.testing.assert_close(right.actions[0], torch.eye(3)[[2, 2, 2]])
    torch.testing.assert_close(right.pose[0, :, 0], torch.tensor([3.0, 4.0, 5.0]))
    assert right.spatial_positions.shape == (1, 3, run.tokens_per_frame, 2)
    torch.testing.assert_close(right.spatial_positions[0, :, 0, 1], torch.tensor([3.0, 4.0, 5.0]))
    # the same path as a sampled episode's gives the same conditioning
    path = dataclasses.replace(episode, camera_x=np.array([8, 12, 16, 20]))
    torch.testing.assert_close(right.pose, episode_conditioning(run, [path], 4).pose[:, 1:])
    left = [camera.chunk_conditioning(-1) for _ in range(3)]
    assert camera.x == 0  # clamped at the edge: the action is the move that happened (0)
    torch.testing.assert_close(left[1].actions[0], torch.eye(3)[[0, 0, 1]])
    torch.testing.assert_close(left[2].actions[0], torch.eye(3)[[1, 1, 1]])
    with pytest.raises(ValueError, match=r"move must be one of \(-1, 0, 1\), got 2"):
        camera.chunk_conditioning(2)
    with pytest.raises(ValueError, match=r"camera x must lie in \[0, 160\], got 161"):
        LiveCamera(run, episode, x=161)


def test_prompt_attributes_number_ids_like_episodes():
    world = PanWorldConfig()
    episode = panworld_episodes(panworld(), 11, 1, 6)[0]
    ids = torch.from_numpy(episode.prompt_ids())
    values = prompt_values(world, ids)
    torch.testing.assert_close(prompt_ids(world, values, 4)[0], ids)
    with pytest.raises(ValueError, match=r"prompt attribute colour must be an integer in \[0, 7\], got 8"):
        prompt_ids(world, {**values, "colour": 8}, 4)
    with pytest.raises(ValueError, match="unknown prompt attribute"):
        prompt_ids(world, {**values, "mood": 1}, 4)


def test_prefill_from_frames_goes_through_the_codec(run, model):
    episodes = panworld_episodes(run, 5, 1, 12)
    cond = episode_conditioning(run, episodes, 12)
    pixels = ground_truth_pixels(run, episodes[0], 0, 6)[None]  # (1, 6, 8, 8, 3) uint8
    from_frames = StreamingSession(model, run, cond, codec=PixelCodec())
    latents = from_frames.prefill_frames(pixels)
    from_latents = StreamingSession(model, run, cond)
    from_latents.prefill(PixelCodec().encode(pixels))
    assert from_frames.memory.tables == from_latents.memory.tables and from_frames.frames_done == 6
    torch.testing.assert_close(from_frames.memory.store.keys, from_latents.memory.store.keys, rtol=0, atol=0)
    torch.testing.assert_close(PixelCodec().decode(latents), pixels, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs a session with a codec"):
        from_latents.prefill_frames(pixels)
    with pytest.raises(ValueError, match="prefill latents must be"):
        from_frames.prefill_frames(pixels[:, :2])
