"""PanWorld steered live: a camera moved one chunk at a time, and prompts written as the world's attributes.

A live session cannot take its actions from a pre-sampled camera path; `LiveCamera` turns each chunk's move
into that chunk's per-frame conditioning (one-hot actions, pose, world-column spatial map) exactly as an
episode's own path would (it reuses `Episode.conditioning` on the chunk's path), for
`StreamingSession.generate_chunk(frames_cond=...)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from context_forcing.conditioning import NULL_TOKEN, Conditioning
from context_forcing.config import RunConfig
from context_forcing.data.panworld import Episode, PanWorldConfig

PROMPT_ATTRIBUTES = ("palette", "shape", "colour", "density")  # PanWorld's prompt, in id order


def attribute_sizes(world: PanWorldConfig) -> dict[str, int]:
    """Values per prompt attribute (each value in [0, size))."""
    return dict(zip(PROMPT_ATTRIBUTES, world.prompt_sizes))


def prompt_ids(world: PanWorldConfig, values: dict[str, int], prompt_len: int) -> Tensor:
    """Attribute values -> token ids (1, prompt_len), as `Episode.prompt_ids` numbers them; ValueError naming
    a bad or missing attribute."""
    sizes = attribute_sizes(world)
    unknown = sorted(set(values) - set(sizes))
    if unknown:
        raise ValueError(
            f"unknown prompt attribute(s) {', '.join(unknown)}; allowed: {', '.join(PROMPT_ATTRIBUTES)}"
        )
    ids, offset = torch.full((1, prompt_len), NULL_TOKEN, dtype=torch.long), 1
    for i, (name, size) in enumerate(sizes.items()):
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
            raise ValueError(f"prompt attribute {name} must be an integer in [0, {size - 1}], got {value!r}")
        ids[0, i] = offset + value
        offset += size
    return ids


def prompt_values(world: PanWorldConfig, ids: Tensor) -> dict[str, int]:
    """Token ids (P,) of a PanWorld prompt -> attribute values (the inverse of `prompt_ids`)."""
    out, offset = {}, 1
    for i, (name, size) in enumerate(attribute_sizes(world).items()):
        out[name] = int(ids[i]) - offset
        offset += size
    return out


class LiveCamera:
    """One PanWorld camera (batch 1) moved chunk by chunk; x in px, clamped to the panorama."""

    def __init__(self, run: RunConfig, episode: Episode, x: int) -> None:
        world = episode.cfg
        if not 0 <= x <= world.max_camera_x:
            raise ValueError(f"camera x must lie in [0, {world.max_camera_x}], got {x}")
        self.run, self.episode, self.world, self.x = run, episode, world, int(x)

    def chunk_conditioning(self, move: int) -> Conditioning:
        """Move every frame of the next chunk by `move` action units (one of `world.moves`; clamped at the
        panorama's edges, where the action becomes the move that happened);
        the chunk's per-frame conditioning (1, c, ...)."""
        if isinstance(move, bool) or not isinstance(move, int) or move not in self.world.moves:
            raise ValueError(f"move must be one of {self.world.moves}, got {move!r}")
        c = self.run.chunk
        path = [self.x]
        for _ in range(c):
            path.append(int(np.clip(path[-1] + move * self.world.move_px, 0, self.world.max_camera_x)))
        # the episode's own conditioning code on this path, so a live chunk reads exactly like a sampled one
        chunk = dataclasses.replace(self.episode, camera_x=np.asarray(path, dtype=np.int64))
        world_positions = self.run.spatial_positions == "world"
        cond = chunk.conditioning(
            1, c + 1, spatial=world_positions, grid=self.run.token_grid, prompt_len=self.run.text.prompt_len
        )
        self.x = path[-1]
        model = self.run.model
        return dataclasses.replace(
            cond,
            actions=cond.actions if model.action_dim else None,
            pose=cond.pose if model.pose_freqs else None,
            spatial_positions=cond.spatial_positions if world_positions else None,
        )
