"""PanWorld episodes at a run's scale: conditioning the model takes,
and ground-truth frames at its latent size."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.panworld import Episode, PanWorldConfig, render_episode, sample_episode


def area_downsample(frames: Tensor, height: int, width: int) -> Tensor:
    """Average-pool the last two dims (..., H, W) of a float tensor to (height, width);
    H, W multiples of them."""
    h, w = frames.shape[-2:]
    if h % height or w % width:
        raise ConfigError(f"frame {h}x{w} is not a multiple of the latent size {height}x{width}")
    if (h, w) == (height, width):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:]) if frames.ndim >= 3 else frames[None]
    pooled = torch.nn.functional.avg_pool2d(flat, (h // height, w // width))
    return pooled.reshape(*frames.shape[:-2], height, width)


def check_panworld_run(run: RunConfig, world: PanWorldConfig) -> None:
    """The run can be driven by PanWorld: pixel codec, 3 channels, a latent size dividing the frame,
    actions."""
    if run.codec.kind != "pixel" or run.model.in_channels != 3:
        raise ConfigError(f"PanWorld needs the pixel codec with 3 channels; preset {run.preset!r} has "
                          f"{run.codec.kind!r} with {run.model.in_channels}")
    if world.frame_height % run.video.latent_height or world.frame_width % run.video.latent_width:
        raise ConfigError(f"the preset's latent frame {run.video.latent_height}x{run.video.latent_width} "
                          f"must divide PanWorld's {world.frame_height}x{world.frame_width}")
    if run.spatial_positions == "world" and (run.video.latent_height, run.video.latent_width) != (
            world.frame_height, world.frame_width):
        raise ConfigError(f"spatial_positions 'world' needs latent frames of PanWorld's size "
                          f"{world.frame_height}x{world.frame_width}, got {run.video.latent_height}x"
                          f"{run.video.latent_width}")
    if run.model.action_dim not in (0, world.action_dim):
        raise ConfigError(f"model.action_dim must be 0 or {world.action_dim}, got {run.model.action_dim}")


def episode_conditioning(run: RunConfig, episodes: list[Episode], frames: int) -> Conditioning:
    """Batched conditioning of frames [0, frames) of each episode, restricted to what the model takes."""
    world = run.spatial_positions == "world"
    parts = [e.conditioning(0, frames, prompt_len=run.text.prompt_len, spatial=world, grid=run.token_grid)
             for e in episodes]
    return Conditioning(prompt=torch.cat([p.prompt for p in parts]),
                        actions=torch.cat([p.actions for p in parts]) if run.model.action_dim else None,
                        pose=torch.cat([p.pose for p in parts]) if run.model.pose_freqs else None,
                        spatial_positions=torch.cat([p.spatial_positions for p in parts]) if world else None)


def ground_truth_pixels(run: RunConfig, episode: Episode, start: int, stop: int) -> Tensor:
    """Frames [start, stop) as uint8 (F, h, w, 3) at the run's latent size (area-downsampled if smaller)."""
    rendered = np.ascontiguousarray(render_episode(episode, start, stop))
    frames = torch.from_numpy(rendered).float()  # (F, H, W, 3)
    small = area_downsample(frames.permute(0, 3, 1, 2), run.video.latent_height, run.video.latent_width)
    return small.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)


def panworld_episodes(run: RunConfig, seed: int, batch: int, frames: int,
                      world: PanWorldConfig | None = None) -> list[Episode]:
    """Episodes seed, seed + 1, ... of `frames` frames (seeds >= 1_000_000 are PanWorld's eval split)."""
    world = world or PanWorldConfig()
    check_panworld_run(run, world)
    return [sample_episode(world, seed + b, frames) for b in range(batch)]


