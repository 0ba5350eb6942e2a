"""M3 identity: decode the subject's hidden attributes (badge, accent) and its state (hat) from frames.

The decoder is not learned: the subject's class (shape, colour) is in the prompt, so the renderer's sprites for
every badge x accent x state are templates; a frame's subject box is assigned the template with the smallest
squared error over the sprite's pixels. Only frames where the subject is fully visible are decoded.
"""

from __future__ import annotations

import dataclasses
from itertools import product

import numpy as np

from context_forcing.data.panworld import Episode
from context_forcing.data.panworld.world import ACCENT_RGB, BADGES, subject_screen_box, subject_sprites


@dataclasses.dataclass(frozen=True)
class Decoded:
    badge: int
    accent: int
    hat: bool


def templates(episode: Episode) -> tuple[list[Decoded], np.ndarray, np.ndarray]:
    """Every (badge, accent, hat) of the episode's subject class: labels, rgb (N, Hs, Ws, 3), alpha (N, Hs, Ws)."""
    labels, rgbs, alphas = [], [], []
    for badge, accent in product(range(len(BADGES)), range(len(ACCENT_RGB))):
        subject = dataclasses.replace(episode.layout.subject, badge=badge, accent=accent)
        rgb, alpha = subject_sprites(episode.cfg, subject)
        for state in (0, 1):
            labels.append(Decoded(badge, accent, bool(state)))
            rgbs.append(rgb[state])
            alphas.append(alpha[state])
    return labels, np.stack(rgbs), np.stack(alphas)


def decode(episode: Episode, frames: np.ndarray) -> list[Decoded]:
    """The best template for each frame's subject box (frames (F, H, W, 3) on the episode's camera)."""
    labels, rgbs, alphas = templates(episode)
    top, left = subject_screen_box(episode.cfg)
    hs, ws = rgbs.shape[1:3]
    boxes = frames[:, top:top + hs, left:left + ws].astype(np.float64)  # (F, Hs, Ws, 3)
    # compare on the union of all templates' pixels, so "no hat" is penalised where a hat should be
    support = alphas.any(axis=0)  # (Hs, Ws)
    diff = ((boxes[:, None] - rgbs[None].astype(np.float64)) ** 2).sum(-1)  # (F, N, Hs, Ws)
    errors = (diff * support).sum(axis=(2, 3))  # (F, N)
    return [labels[i] for i in errors.argmin(axis=1)]


def identity_frames(episode: Episode, start: int) -> dict[str, np.ndarray]:
    """Frames (>= start) to test: the first fully visible frame after each occlusion, and every fully visible
    frame from the state change on."""
    visible = episode.subject_visibility >= 1.0
    frames = np.arange(episode.frames)
    after_occlusion = frames[1:][visible[1:] & ~visible[:-1]]
    after_change = frames[visible & (frames >= episode.state_change_frame)] if episode.state_change_frame >= 0 \
        else frames[:0]
    return {"after_occlusion": after_occlusion[after_occlusion >= start],
            "after_state_change": after_change[after_change >= start]}


def identity_scores(episode: Episode, frames: np.ndarray, start: int) -> dict[str, tuple[int, int]]:
    """(correct, total) of the hidden attributes after occlusions and of attributes + hat after the change."""
    truth = episode.layout.subject
    out = {}
    for name, picked in identity_frames(episode, start).items():
        picked = picked[picked < len(frames)]
        decoded = decode(episode, frames[picked]) if len(picked) else []
        correct = 0
        for t, d in zip(picked, decoded):
            ok = (d.badge, d.accent) == (truth.badge, truth.accent)
            if name == "after_state_change":
                ok = ok and d.hat == bool(episode.state_index[t])
            correct += int(ok)
        out[name] = (correct, len(picked))
    return out
