"""Rendering: each frame is a slice of the episode's painted panorama plus the subject sprite and distractors.

The panorama is painted once per episode (`Episode.scene`), so rendering is gathers and masked copies
(~90 000 frames per second on one CPU core once the panorama is painted).
"""

from __future__ import annotations

import numpy as np

from context_forcing.data.panworld.episode import Episode
from context_forcing.data.panworld.world import subject_screen_box


def _subject_pixels(episode: Episode, start: int, stop: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(show (F, Hs, Ws) bool, rgb (F, Hs, Ws, 3)): sprite pixels over the world (not behind pillars)."""
    cfg = episode.cfg
    _, left = subject_screen_box(cfg)
    rgb, alpha = episode.sprites
    state = episode.state_index[start:stop]
    cols = episode.camera_x[start:stop, None] + left + np.arange(cfg.subject_width)  # (F, Ws) world columns
    behind = episode.scene.pillar_columns[cols]  # (F, Ws) pillars are in front of the subject
    return alpha[state] & ~behind[:, None, :], rgb[state]


def render_episode(episode: Episode, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames [start, stop) of `episode` as uint8 (F, H, W, 3)."""
    cfg = episode.cfg
    camera_x = episode.camera_x[start:stop]
    cols = camera_x[:, None] + np.arange(cfg.frame_width)  # (F, W) world columns on screen
    frames = np.ascontiguousarray(episode.scene.image[:, cols].transpose(1, 0, 2, 3))  # (F, H, W, 3)
    top, left = subject_screen_box(cfg)
    show, rgb = _subject_pixels(episode, start, stop)
    region = frames[:, top:top + show.shape[1], left:left + show.shape[2]]  # a view: writes land in frames
    region[show] = rgb[show]
    size = cfg.flicker_size
    for i in np.flatnonzero(episode.flicker_on[start:stop]):
        y, x = episode.flicker_box[start + i]
        frames[i, y:y + size, x:x + size] = episode.flicker_rgb[start + i]
    return frames


def dynamic_mask(episode: Episode, start: int = 0, stop: int | None = None) -> np.ndarray:
    """(F, H, W) bool: pixels that are not the static world (the visible subject and hat, flicker squares)."""
    cfg = episode.cfg
    show, _ = _subject_pixels(episode, start, stop)
    mask = np.zeros((len(show), cfg.frame_height, cfg.frame_width), dtype=bool)
    top, left = subject_screen_box(cfg)
    mask[:, top:top + show.shape[1], left:left + show.shape[2]] = show
    size = cfg.flicker_size
    for i in np.flatnonzero(episode.flicker_on[start:stop]):
        y, x = episode.flicker_box[start + i]
        mask[i, y:y + size, x:x + size] = True
    return mask
