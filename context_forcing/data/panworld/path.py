"""The PanWorld camera: a clamped random walk toward random targets, with random speeds and pauses."""

from __future__ import annotations

import numpy as np

from context_forcing.data.panworld.config import PanWorldConfig


def sample_camera_path(cfg: PanWorldConfig, frames: int, rng: np.random.Generator,
                       occluded_at: np.ndarray) -> np.ndarray:
    """Camera x (frames,) int64 px in [0, max_camera_x], moving at most one action per frame.

    Segments: pick a target (uniform over camera positions; with probability `revisit_bias` an earlier
    target instead; with probability `back_and_forth` an excursion U{1..excursion_max} tokens away, after
    which the next segment returns to where it began), move toward it on each frame with a per-segment
    probability U(min_speed, 1) (subtoken mode: 1 or 2 px per move), then pause U{0..max_pause} frames,
    except while the subject is behind a pillar (`occluded_at[x]`), so occlusions last ~4-16 frames. The
    camera does not move into frame 0. Aperiodic: every segment draws new targets, speeds and pauses.
    """
    unit = cfg.move_px
    last = cfg.max_camera_x // unit  # camera positions, in action units: 0..last
    max_step = 1 if cfg.camera_mode == "token" else 2
    x = int(rng.integers(last + 1))
    path = np.empty(frames, dtype=np.int64)
    if frames == 0:
        return path
    path[0], n = x, 1
    targets, origin = [x], None  # origin: where an excursion began, the next segment's target
    while n < frames:
        if origin is not None and origin != x:
            target, origin = origin, None
        elif rng.random() < cfg.back_and_forth:
            target, origin = _excursion(cfg, rng, x, last), x
        else:
            target, origin = _next_target(cfg, rng, x, last, targets), None
        targets.append(target)
        speed = rng.uniform(cfg.min_speed, 1.0)
        step = int(rng.integers(1, max_step + 1))
        while x != target and n < frames:
            if rng.random() < speed:
                x += int(np.sign(target - x)) * min(step, abs(target - x))
            path[n], n = x, n + 1
        pause = 0 if occluded_at[x * unit] else int(rng.integers(cfg.max_pause + 1))
        path[n:n + pause] = x
        n += pause
    return path * unit


def _excursion(cfg: PanWorldConfig, rng: np.random.Generator, x: int, last: int) -> int:
    reach = cfg.excursion_max * cfg.token_width // cfg.move_px  # in action units
    distance = int(rng.integers(1, reach + 1))
    direction = 1 if rng.random() < 0.5 else -1
    if not 0 <= x + direction * distance <= last:
        direction = -direction
    return int(np.clip(x + direction * distance, 0, last))


def _next_target(cfg: PanWorldConfig, rng: np.random.Generator, x: int, last: int, targets: list[int]) -> int:
    earlier = [t for t in targets if t != x]
    if earlier and rng.random() < cfg.revisit_bias:
        return earlier[int(rng.integers(len(earlier)))]
    target = int(rng.integers(last))  # uniform over the other `last` positions
    return target + 1 if target >= x else target


def subject_visibility(cfg: PanWorldConfig, camera_x: np.ndarray, pillar_columns: np.ndarray,
                       body: np.ndarray) -> np.ndarray:
    """(F,) float: share of the subject's body pixels not hidden by a pillar; `body` (Hs, Ws) alpha."""
    left = (cfg.frame_width - cfg.subject_width) // 2
    per_column = body.sum(axis=0)  # (Ws,)
    hidden = pillar_columns[camera_x[:, None] + left + np.arange(cfg.subject_width)]  # (F, Ws)
    return 1.0 - (hidden * per_column).sum(axis=1) / per_column.sum()


def occlusion_by_position(cfg: PanWorldConfig, pillar_columns: np.ndarray) -> np.ndarray:
    """(max_camera_x + 1,) bool: whether a pillar covers any subject column at each camera x."""
    left = (cfg.frame_width - cfg.subject_width) // 2
    xs = np.arange(cfg.max_camera_x + 1)
    return pillar_columns[xs[:, None] + left + np.arange(cfg.subject_width)].any(axis=1)
