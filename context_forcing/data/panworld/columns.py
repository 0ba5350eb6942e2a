"""Which world columns the camera shows at each frame, and how long ago each was last on screen.

Gap (benchmarks.md "Labels and metrics"): for a world column visible at frame t, g(t) = t - (the last
earlier frame it was visible), or NEW if it was never visible before. A pure function of the camera path,
so episode sampling (revisit constraints) and the labels share it.
"""

from __future__ import annotations

import numpy as np

NEW = -1  # the gap of a column never visible before


def visibility_table(camera_x: np.ndarray, frame_width: int, world_width: int) -> np.ndarray:
    """(F, world_width) bool: world column c is on screen at frame t."""
    cols = np.arange(world_width)[None, :]
    x = np.asarray(camera_x)[:, None]
    return (cols >= x) & (cols < x + frame_width)


def gap_table(visible: np.ndarray) -> np.ndarray:
    """(F, W) int64: for every frame and world column, t - (last frame < t it was visible), NEW if none.

    Read it only where `visible`; vectorised with a running max of the visible frame indices.
    """
    frames = visible.shape[0]
    t = np.arange(frames)[:, None]
    last = np.maximum.accumulate(np.where(visible, t, -1), axis=0)  # last visible frame <= t
    previous = np.vstack([np.full((1, visible.shape[1]), -1), last[:-1]])  # last visible frame < t
    return np.where(previous >= 0, t - previous, NEW)


def column_labels(camera_x: np.ndarray, frame_width: int, world_width: int,
                  sink_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(columns, gap, first_seen, sink_covered), each (F, frame_width), for the on-screen columns."""
    visible = visibility_table(camera_x, frame_width, world_width)
    columns = np.asarray(camera_x)[:, None] + np.arange(frame_width)  # (F, fw) world px columns
    rows = np.arange(len(camera_x))[:, None]
    gap = gap_table(visible)[rows, columns]
    first = np.where(visible.any(axis=0), visible.argmax(axis=0), -1)  # (W,) first visible frame
    sink = visible[:sink_frames].any(axis=0)  # (W,)
    return columns, gap, first[columns], sink[columns]
