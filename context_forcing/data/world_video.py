"""`context-forcing world`: render a ground-truth PanWorld episode to MP4 and report its revisit schedule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from context_forcing.data.panworld import (
    PanWorldConfig,
    episode_labels,
    render_episode,
    revisit_schedule,
    sample_episode,
    split_of,
)
from context_forcing.io.files import atomic_write_json
from context_forcing.io.video import write_mp4, write_png

LATENT_FRAMES_PER_SECOND = 4  # PanWorld renders one frame per latent frame


def world_report(seed: int, seconds: float,
                 world: PanWorldConfig | None = None) -> tuple[Any, dict[str, Any]]:
    """The episode of `seed` covering `seconds` and a JSON-ready summary of its ground truth."""
    world = world or PanWorldConfig()
    frames = max(1, math.ceil(seconds * LATENT_FRAMES_PER_SECOND - 1e-9))
    episode = sample_episode(world, seed, frames)
    labels = episode_labels(episode)
    schedule = revisit_schedule(labels)
    report = {
        "seed": seed,
        "split": split_of(seed),
        "frames": frames,
        "seconds": frames / LATENT_FRAMES_PER_SECOND,
        "attempts": episode.attempts,
        "prompt_ids": episode.prompt_ids().tolist(),
        "subject": dataclasses.asdict(episode.layout.subject),
        "state_change_frame": episode.state_change_frame,
        "camera_x": episode.camera_x.tolist(),
        "revisit_schedule": {k: v for k, v in schedule.as_dict().items() if k != "revisits"},
        "revisits": len(schedule.revisits),
        "longest_gap": max((r.gap for r in schedule.revisits), default=0),
    }
    return episode, report


def render_world(seed: int, seconds: float, out: Path, scale: int = 1, report: Path | None = None,
                 quality: str = "lossless", filmstrip: Path | None = None) -> dict[str, Any]:
    """Write the episode's frames (4 per second) to `out` and, optionally, the report and a filmstrip PNG
    (16 frames evenly spaced over the episode)."""
    episode, summary = world_report(seed, seconds)
    frames = render_episode(episode)
    summary["frames_written"] = write_mp4(out, frames, fps=LATENT_FRAMES_PER_SECOND, scale=scale,
                                          quality=quality)
    if filmstrip is not None:
        picked = np.linspace(0, len(frames) - 1, min(16, len(frames))).round().astype(int)
        strip = np.concatenate([np.pad(frames[i], ((1, 1), (1, 1), (0, 0)), constant_values=255)
                                for i in picked], axis=1)
        write_png(filmstrip, strip.repeat(max(scale, 1), 0).repeat(max(scale, 1), 1))
    if report is not None:
        atomic_write_json(report, summary)
    return summary
