"""Non-learned references on PanWorld: ground truth, chance, mean-fill and layout oracles.

- `chance`: the same prompt attributes and camera path in another world (landmarks, pillars, texture, shrine
  and hidden subject attributes of another seed): what a plausible but memoryless guess scores.
- `mean-fill`: every frame from t0 on is the per-pixel mean of the frames before t0 (a blurry guess).
- `oracle:LAYOUT`: perfect retrieval from that layout: the planner and admission policy of the memory run on
  ground-truth frames (the similarity summary is the candidate chunk's mean flattened pixels); a frame shows
  ground truth in every world column some frame of its chunk's plan saw, and the chance world elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from context_forcing.data.panworld import Episode, sample_episode
from context_forcing.memory.layout import MemoryLayout, parse_layout
from context_forcing.memory.plan import MemoryTable, admit, commit_chunk, plan_chunk
from context_forcing.memory.policy import AdmissionState, decide

CHUNK = 3  # PanWorld's presets denoise 3 latent frames per chunk
CHANCE_SEED_OFFSET = 7_919  # the chance world of episode s is built from episode s + this offset


def chance_episode(episode: Episode, draw: int = 1) -> Episode:
    """Same prompt attributes and camera path, another world: another seed's landmarks, pillars, texture,
    shrine and hidden subject attributes (`draw` picks among such worlds)."""
    other = sample_episode(episode.cfg, episode.seed + draw * CHANCE_SEED_OFFSET, 1)
    subject = dataclasses.replace(other.layout.subject, shape=episode.layout.subject.shape,
                                  colour=episode.layout.subject.colour)
    layout = dataclasses.replace(other.layout, palette=episode.layout.palette, density=episode.layout.density,
                                 subject=subject)
    return dataclasses.replace(episode, layout=layout, shrine_x=other.shrine_x)


def mean_fill(frames: np.ndarray, t0: int) -> np.ndarray:
    """Frames [t0, F) all equal to the per-pixel mean of frames [0, t0)."""
    mean = np.round(frames[:t0].astype(np.float64).mean(axis=0)).astype(np.uint8)
    return np.broadcast_to(mean, (len(frames) - t0, *mean.shape)).copy()


def oracle_visibility(episode: Episode, layout: MemoryLayout, frames: np.ndarray) -> np.ndarray:
    """(F, world_width) bool: world columns some context frame of each frame's chunk plan shows."""
    cfg = episode.cfg
    seen_by = np.zeros((len(frames), cfg.world_width), dtype=bool)
    screen = np.arange(cfg.frame_width)
    summaries = torch.from_numpy(frames.reshape(len(frames), -1).astype(np.float64))
    table, state = MemoryTable(), AdmissionState()
    for start in range(0, len(frames), CHUNK):
        plan = plan_chunk(layout, table)
        for f in plan.frames:
            seen_by[start:start + CHUNK, episode.camera_x[f] + screen] = True
        table, candidates = commit_chunk(layout, table)
        for candidate in candidates:
            if layout.admits:
                admitted, state = decide(layout.policy, state, summaries[list(candidate)].mean(dim=0))
                table = admit(layout, table, candidate, admitted)
    return seen_by


def oracle_frames(episode: Episode, spec: str, truth: np.ndarray, chance: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's frames (F, H, W, 3) and, per frame and screen column, whether it could restore it (F, W)."""
    layout = parse_layout(spec, CHUNK)
    seen = oracle_visibility(episode, layout, truth)
    cols = episode.camera_x[:len(truth), None] + np.arange(episode.cfg.frame_width)  # (F, W) world columns on screen
    restorable = np.take_along_axis(seen, cols, axis=1)  # (F, W)
    return np.where(restorable[:, None, :, None], truth, chance), restorable
