"""M3 identity: the subject's hidden attributes (badge pattern, accent colour) and its state (the hat),
decoded from frames after occlusions and after the state change (benchmarks.md "Labels and metrics").

The decoders are not learned, so they need no training and cannot be gamed by a feature network's blind spots:

- badge and accent: the subject's class (shape, colour) is in the prompt and it stands at a fixed place on
  screen, so the renderer's own sprites (`world.subject_sprites`) for every badge x accent of that class are
  templates; a frame's body pixels are assigned the template with the smallest squared error (nearest
  template).
- hat: the hat's pixels (its shape is the same for every subject) are compared with the hat colour; the hat is
  present when at least half of them are within `HAT_TOLERANCE` of it in every channel. No world colour
  (landmark, shrine, palette) lies that close, so ground truth decodes exactly; a hat the model blurs away
  reads as no hat.

Only frames with the subject fully visible (no pillar in front, from the camera path) are decoded.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from context_forcing.data.panworld import PanWorldConfig, SubjectAttributes
from context_forcing.data.panworld.world import HAT_RGB, subject_screen_box, subject_sprites
from context_forcing.eval.cases import EvalCase

REEMERGENCE_FRAMES = 3  # frames after an occlusion that test identity (one chunk; later ones copy these)
HAT_TOLERANCE = 24  # max |pixel - hat colour| per channel of a hat pixel (0-255)
HAT_SHARE = 0.5  # share of hat pixels that must match for "hat present"
IDENTITY_GROUPS = ("visible", "after_occlusion", "after_state_change", "hat_after_state_change")


def subject_crops(frames: np.ndarray, cfg: PanWorldConfig) -> np.ndarray:
    """(F, hat_height + subject_height, subject_width, 3) float64: the subject's box, hat rows first."""
    top, left = subject_screen_box(cfg)
    height = cfg.hat_height + cfg.subject_height
    return frames[:, top:top + height, left:left + cfg.subject_width].astype(np.float64)


def attribute_templates(cfg: PanWorldConfig, shape: int, colour: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (badge, accent) of class (shape, colour): labels (N, 2), body rgb (N, Hs, Ws, 3), body mask
    (Hs, Ws)."""
    labels, rgbs = [], []
    for badge, accent in product(range(cfg.badges), range(cfg.accents)):
        rgb, alpha = subject_sprites(cfg, SubjectAttributes(shape, colour, badge, accent))
        labels.append((badge, accent))
        rgbs.append(rgb[0, cfg.hat_height:])
    return np.array(labels), np.stack(rgbs).astype(np.float64), alpha[0, cfg.hat_height:]


def decode_attributes(frames: np.ndarray, cfg: PanWorldConfig, shape: int, colour: int) -> np.ndarray:
    """(F, 2) decoded (badge, accent) per frame: the nearest template over the body's pixels."""
    labels, rgbs, body = attribute_templates(cfg, shape, colour)
    crops = subject_crops(frames, cfg)[:, cfg.hat_height:]  # (F, Hs, Ws, 3)
    pixels, templates = crops[:, body], rgbs[:, body]  # (F, P, 3), (N, P, 3)
    errors = ((pixels[:, None] - templates[None]) ** 2).sum(axis=(2, 3))  # (F, N)
    return labels[errors.argmin(axis=1)]


def decode_hat(frames: np.ndarray, cfg: PanWorldConfig) -> np.ndarray:
    """(F,) bool: the hat is on (see the module docstring)."""
    hat = subject_sprites(cfg, SubjectAttributes(0, 0, 0, 0))[1][1, :cfg.hat_height]  # (hat_height, Ws)
    pixels = subject_crops(frames, cfg)[:, :cfg.hat_height][:, hat]  # (F, P, 3)
    close = (np.abs(pixels - HAT_RGB.astype(np.float64)) <= HAT_TOLERANCE).all(axis=-1)  # (F, P)
    return close.mean(axis=1) >= HAT_SHARE


def identity_frames(visibility: np.ndarray, state_change_frame: int, start: int,
                    stop: int) -> dict[str, np.ndarray]:
    """Frame indices in [start, stop) with the subject fully visible: `after_occlusion` (within
    REEMERGENCE_FRAMES of a frame where it was partly hidden), `after_state_change` (from the change on) and
    `visible` (all of them)."""
    visible = visibility >= 1.0
    hidden = ~visible
    recently_hidden = np.zeros_like(visible)
    for k in range(1, REEMERGENCE_FRAMES + 1):
        recently_hidden[k:] |= hidden[:-k]
    frames = np.arange(len(visibility))
    window = visible & (frames >= start) & (frames < stop)
    changed = (frames >= state_change_frame) & (state_change_frame >= 0)
    return {"after_occlusion": np.flatnonzero(window & recently_hidden),
            "after_state_change": np.flatnonzero(window & changed), "visible": np.flatnonzero(window)}


def identity_counts(case: EvalCase, video: np.ndarray, protocol: str) -> dict[str, tuple[int, int]]:
    """(correct, decoded frames) per group of IDENTITY_GROUPS for one episode (`visible`: the attributes on
    every fully visible frame; `after_state_change`: attributes and hat; `hat_after_state_change`: the hat).

    P1 (frames from t0 on) is scored against the true hidden attributes, and the hat from the true state
    change on. P2 (every frame) can only be scored for persistence, since the model invents the hidden
    attributes and the shrine (the change happens where the subject passes it): attributes against those
    decoded at the video's first fully visible frame, the hat from the first visible frame it is decoded on
    (the video's own state change) on.
    """
    cfg, episode = case.episode.cfg, case.episode
    subject = episode.layout.subject

    def decode(frames: np.ndarray) -> np.ndarray:
        return decode_attributes(video[frames], cfg, subject.shape, subject.colour)

    visible = identity_frames(episode.subject_visibility, -1, 0, case.frames)["visible"]
    if protocol == "p1":
        change, expected = episode.state_change_frame, np.array([subject.badge, subject.accent])
        start = case.t0
    else:
        hats = visible[decode_hat(video[visible], cfg)] if len(visible) else visible
        change = int(hats[0]) if len(hats) else -1
        expected = decode(visible[:1])[0] if len(visible) else None
        start = 0
    picked = identity_frames(episode.subject_visibility, change, start, case.frames)
    counts = {}
    for group in IDENTITY_GROUPS:
        frames = picked["after_state_change" if group == "hat_after_state_change" else group]
        if len(frames) == 0 or expected is None:
            counts[group] = (0, 0)
            continue
        attributes_ok = (decode(frames) == expected).all(axis=1)
        hat_ok = decode_hat(video[frames], cfg)
        ok = {"visible": attributes_ok, "after_occlusion": attributes_ok,
              "after_state_change": attributes_ok & hat_ok, "hat_after_state_change": hat_ok}[group]
        counts[group] = (int(ok.sum()), len(frames))
    return counts
