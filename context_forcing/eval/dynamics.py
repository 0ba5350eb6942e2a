"""Whole-video checks that revisit scores cannot see: action following (motion), drift, resets and cycles.

A frozen video scores perfect consistency; these expose it (reference/benchmarks.md, pitfalls 2 and 4).
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 8  # px searched when estimating a frame's horizontal shift
DRIFT_WINDOW = 16  # frames per drift window (4 s)
RESET_ERROR = 40.0  # mean absolute error (0-255) after undoing the true camera move that counts as a cut
CYCLE_GAP = 12  # frames: a repeat must be at least this far back
CYCLE_SAME, CYCLE_DIFFERENT = 8.0, 24.0  # generated frames this close while the true frames differ this much


def shifted_error(current: np.ndarray, previous: np.ndarray, shift: int) -> float:
    """Mean |current[:, j] - previous[:, j + shift]| over the columns both frames share."""
    w = current.shape[1]
    if shift >= 0:
        a, b = current[:, : w - shift], previous[:, shift:]
    else:
        a, b = current[:, -shift:], previous[:, : w + shift]
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def estimated_moves(frames: np.ndarray) -> np.ndarray:
    """(F - 1,) horizontal camera move (px) into each frame that best explains it from the previous one."""
    shifts = range(-MAX_SHIFT, MAX_SHIFT + 1)
    return np.array([min(shifts, key=lambda s: (shifted_error(frames[t], frames[t - 1], s), abs(s)))
                     for t in range(1, len(frames))])


def motion(frames: np.ndarray, camera_x: np.ndarray) -> dict[str, float]:
    """Action following: share of frames whose estimated move equals the true camera move (moving frames)."""
    true = np.diff(camera_x)
    est = estimated_moves(frames)
    moving = true != 0
    accuracy = float((est[moving] == true[moving]).mean()) if moving.any() else None
    return {"moving_frames": int(moving.sum()), "accuracy_moving": accuracy,
            "accuracy_all": float((est == true).mean()) if len(true) else None,
            "ok": accuracy is not None and accuracy >= 0.5}


def resets(frames: np.ndarray, camera_x: np.ndarray) -> dict[str, float]:
    """Cuts not explained by the camera: frames whose error after undoing the true move exceeds RESET_ERROR."""
    true = np.diff(camera_x)
    errors = np.array([shifted_error(frames[t], frames[t - 1], int(true[t - 1])) for t in range(1, len(frames))])
    count = int((errors > RESET_ERROR).sum())
    minutes = len(frames) / 4 / 60
    return {"count": count, "per_minute": count / minutes if minutes else 0.0,
            "mean_step_error": float(errors.mean()) if len(errors) else 0.0}


def cycles(frames: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Repetition beyond what the camera explains: frames nearly equal to a generated frame >= CYCLE_GAP back
    whose true counterparts differ."""
    f, g = frames.astype(np.float64), truth.astype(np.float64)
    hits = 0
    for t in range(CYCLE_GAP, len(frames)):
        earlier = np.arange(t - CYCLE_GAP + 1)
        same = np.abs(f[earlier] - f[t]).mean(axis=(1, 2, 3)) < CYCLE_SAME
        different = np.abs(g[earlier] - g[t]).mean(axis=(1, 2, 3)) > CYCLE_DIFFERENT
        hits += int((same & different).any())
    frames_checked = max(len(frames) - CYCLE_GAP, 0)
    return {"frames": hits, "rate": hits / frames_checked if frames_checked else 0.0}


def drift(frames: np.ndarray, truth: np.ndarray, start: int) -> list[dict[str, float]]:
    """Per DRIFT_WINDOW window: distance of colour statistics and of sharpness between generated and true."""
    out = []
    for lo in range(0, len(frames), DRIFT_WINDOW):
        f, g = frames[lo:lo + DRIFT_WINDOW].astype(np.float64), truth[lo:lo + DRIFT_WINDOW].astype(np.float64)
        colour = float(np.abs(f.mean(axis=(0, 1, 2)) - g.mean(axis=(0, 1, 2))).mean() +
                       np.abs(f.std(axis=(0, 1, 2)) - g.std(axis=(0, 1, 2))).mean())
        sharp = float(abs(np.abs(np.diff(f, axis=2)).mean() - np.abs(np.diff(g, axis=2)).mean()))
        out.append({"start_seconds": (start + lo) / 4, "colour": colour, "sharpness": sharp,
                    "mae": float(np.abs(f - g).mean())})
    return out
