"""The eval episodes: ground truth, labels, the P1 prefix and the chance worlds of each (benchmarks.md).

Chance (the normaliser of every revisit score) is "the same prompt and camera with a different world seed": a
layout drawn from another random stream with the episode's prompt attributes (palette, subject class, landmark
density), shown along the episode's own camera path. Its landmarks, pillars, ground texture, shrine and hidden
subject attributes are another world's. Per episode:

- `chance`: CHANCE_WORLDS such worlds; their mean error normalises every score (M1 and M2). One world alone
  makes a noisy denominator (measured: per-episode S of an independent wrong world ranged -0.67..0.34 with one
  normalising world; four cut the spread of 4-episode means roughly fourfold);
- `wrong`: one more world, what the `chance` reference predicts and what an oracle shows where it cannot
  restore, so that their scores of ~0 test the normalisation instead of being 0 by construction.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from context_forcing.data.panworld import (
    Episode,
    EpisodeLabels,
    PanWorldConfig,
    episode_labels,
    render_episode,
    sample_episode,
)
from context_forcing.data.panworld.episode import place_shrine, revisit_constraints
from context_forcing.data.panworld.path import subject_visibility
from context_forcing.data.panworld.world import pillar_columns, sample_layout, subject_sprites
from context_forcing.eval.metrics import FRAMES_PER_SECOND

CHANCE_STREAM = 0x4348414E  # separates chance-world randomness from the episode's own stream
CHANCE_WORLDS = 4  # normalising worlds per episode (draws 1..4); draw 0 is the wrong guess
WRONG = 0


def eval_frames(seconds: float) -> int:
    """Latent frames of `seconds` of video (4 per second, rounded up)."""
    return max(1, math.ceil(seconds * FRAMES_PER_SECOND - 1e-9))


def prefix_frames(frames: int, chunk: int) -> int:
    """t0 of protocol P1: the first quarter of the episode, rounded down to whole chunks (at least one)."""
    return max(chunk, frames // 4 // chunk * chunk)


def chance_world(episode: Episode, draw: int) -> Episode:
    """The episode's camera path and prompt attributes in another world (see the module docstring)."""
    cfg, true = episode.cfg, episode.layout
    rng = np.random.default_rng([episode.seed, CHANCE_STREAM, draw])
    while True:  # the landmark count follows the density, a prompt attribute: keep drawing until it matches
        layout = sample_layout(cfg, rng, episode.seed)
        if layout.density == true.density:
            break
    subject = dataclasses.replace(layout.subject, shape=true.subject.shape, colour=true.subject.colour)
    layout = dataclasses.replace(layout, palette=true.palette, subject=subject)
    pillars = pillar_columns(cfg, layout.pillars)
    visibility = subject_visibility(cfg, episode.camera_x, pillars, subject_sprites(cfg, subject)[1][0])
    cons = revisit_constraints(cfg, episode.frames)
    change, shrine_x = place_shrine(cfg, rng, episode.camera_x, pillars, visibility, cons.change_lo,
                                    cons.change_hi)
    return dataclasses.replace(episode, layout=layout, shrine_x=shrine_x, state_change_frame=change)


@dataclass(frozen=True, eq=False)
class EvalCase:
    """One eval episode. Videos cover all `padded` frames (whole chunks, what generation produces); metrics
    read the first `frames`. truth, wrong: uint8 (padded, H, W, 3); chance: uint8 (CHANCE_WORLDS, padded, H,
    W, 3); labels: of frames [0, frames)."""

    episode: Episode
    frames: int
    t0: int
    truth: np.ndarray
    chance: np.ndarray
    wrong: np.ndarray
    labels: EpisodeLabels

    @property
    def padded(self) -> int:
        return self.episode.frames

    @property
    def camera_x(self) -> np.ndarray:
        return self.episode.camera_x


def make_cases(seeds: range | list[int], seconds: float, chunk: int = 3,
               world: PanWorldConfig | None = None) -> list[EvalCase]:
    """The eval episodes of `seeds`, `seconds` long; each sampled with its length padded to whole chunks."""
    world = world or PanWorldConfig()
    frames = eval_frames(seconds)
    padded = -(-frames // chunk) * chunk
    t0 = prefix_frames(frames, chunk)
    if frames <= t0:
        raise ValueError(f"{seconds} s ({frames} frames) leaves nothing to generate after the P1 prefix of "
                         f"{t0} frames; use more than {chunk / FRAMES_PER_SECOND:g} s")
    cases = []
    for seed in seeds:
        episode = sample_episode(world, seed, padded, split="eval")
        cases.append(EvalCase(episode=episode, frames=frames, t0=t0, truth=render_episode(episode),
                              chance=np.stack([render_episode(chance_world(episode, d))
                                               for d in range(1, CHANCE_WORLDS + 1)]),
                              wrong=render_episode(chance_world(episode, WRONG)),
                              labels=episode_labels(episode, 0, frames)))
    return cases
