"""Checks revisit scores cannot make: action following (motion), M4 drift, M5 resets and M6 cycles.

A frozen video is perfectly self-consistent (pitfall 4) and copying the last frame wins one-step metrics
(pitfall 2), so every report carries a motion check: the horizontal shift of each generated frame is estimated
by matching it against the previous frame, and compared with the true camera move. Matching uses only the rows
outside the subject's box: the subject stays put on screen while the world scrolls.

Per episode each check returns counts or per-window sums; `pool_*` combine episodes by summing counts. The
drift summary compares the first and the last 16 s of each rollout, averaged over episodes with bootstrap
intervals.
"""

from __future__ import annotations

import numpy as np

from context_forcing.data.panworld import PanWorldConfig
from context_forcing.data.panworld.world import subject_screen_box
from context_forcing.eval.metrics import FRAMES_PER_SECOND, percentile_interval, sharpness

MOTION_PASS = 0.5  # a video passes when at least half of its moving and of its still frames follow the camera
# A cut: the frame differs from the previous one, moved by the true camera move, by a mean |difference|
# (0-255) above RESET_MAE and above RESET_RATIO x the video's median such error (its usual frame-to-frame
# noise). Cuts to another world of the same palette measured 1.3 / 6.1 / 27 at the 0th / 10th / 50th
# percentile (16 episodes): quiet regions of two worlds look alike, so about one cut in ten stays below
# RESET_MAE and is not counted.
RESET_MAE = 8.0
RESET_RATIO = 3.0
CYCLE_GAP = 12  # frames: a repeat must reach at least this far back
# Two PanWorld views sharing no column differ by an RMS of at least 12.7 (0-255; smallest of 48 episodes x
# worlds measured), so generated frames closer than half that at such camera positions repeat content.
CYCLE_SAME = 6.0
DRIFT_WINDOW = 16  # frames per drift window (4 s)
DRIFT_SEGMENT = 64  # frames (16 s): the drift summary compares the first and the last this many of a rollout
DRIFT_MEASURES = ("sharpness_ratio", "colour", "histogram")  # per frame, against the true frame
HISTOGRAM_LEVELS = 4  # per channel: colour histograms of 4**3 bins


def matching_rows(cfg: PanWorldConfig) -> np.ndarray:
    """(H,) bool: rows outside the subject's box (hat included), which scroll with the camera."""
    top, _ = subject_screen_box(cfg)
    rows = np.ones(cfg.frame_height, dtype=bool)
    rows[top:top + cfg.hat_height + cfg.subject_height] = False
    return rows


def shift_errors(frames: np.ndarray, cfg: PanWorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """Shifts (S,) px and errors (F - 1, S): mean |frame[t][:, j] - frame[t - 1][:, j + s]| over matching rows
    and the columns both frames share; a camera moving s px to the right shows the previous frame moved
    left."""
    rows = matching_rows(cfg)
    f = frames[:, rows].astype(np.float32)  # (F, R, W, 3)
    current, previous = f[1:], f[:-1]
    width, reach = f.shape[2], 2 * cfg.token_width
    shifts = np.arange(-reach, reach + 1)
    errors = np.empty((len(current), len(shifts)), dtype=np.float64)
    for i, s in enumerate(shifts):
        a = current[:, :, :width - s] if s >= 0 else current[:, :, -s:]
        b = previous[:, :, s:] if s >= 0 else previous[:, :, :width + s]
        errors[:, i] = np.abs(a - b).mean(axis=(1, 2, 3))
    return shifts, errors


def estimated_moves(frames: np.ndarray, cfg: PanWorldConfig) -> np.ndarray:
    """(F - 1,) px: the shift that best explains each frame from the previous one (ties: smallest |s|)."""
    shifts, errors = shift_errors(frames, cfg)
    order = np.argsort(np.abs(shifts), kind="stable")  # 0, -1, 1, -2, ...: argmin keeps the first of ties
    return shifts[order][errors[:, order].argmin(axis=1)]


def _window(video: np.ndarray, camera_x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames [start - 1, stop) (from 0 if start is 0) and the true camera moves (px) into frames 1.."""
    lo = max(start - 1, 0)
    return video[lo:stop], np.diff(camera_x[lo:stop])


def motion_counts(video: np.ndarray, camera_x: np.ndarray, cfg: PanWorldConfig, start: int,
                  stop: int) -> dict:
    """Frames in [max(start, 1), stop) whose estimated move is the true one, counted moving and still."""
    frames, true = _window(video, camera_x, start, stop)
    estimate = estimated_moves(frames, cfg)
    moving = true != 0
    return {"moving_frames": int(moving.sum()), "moving_correct": int((estimate == true)[moving].sum()),
            "still_frames": int((~moving).sum()), "still_correct": int((estimate == true)[~moving].sum()),
            "abs_error_px": float(np.abs(estimate - true).sum())}


def pool_motion(parts: list[dict]) -> dict:
    """Accuracy on moving and on still frames pooled over episodes; `passes` needs both >= MOTION_PASS."""
    total = {key: sum(p[key] for p in parts) for key in parts[0]}
    moving = total["moving_correct"] / total["moving_frames"] if total["moving_frames"] else None
    still = total["still_correct"] / total["still_frames"] if total["still_frames"] else None
    frames = total["moving_frames"] + total["still_frames"]
    return {"accuracy_moving": moving, "accuracy_still": still,
            "mean_abs_error_px": total["abs_error_px"] / frames if frames else None,
            "moving_frames": total["moving_frames"], "still_frames": total["still_frames"],
            "passes": all(a is None or a >= MOTION_PASS for a in (moving, still)) and frames > 0}


def reset_counts(video: np.ndarray, camera_x: np.ndarray, cfg: PanWorldConfig, start: int, stop: int) -> dict:
    """M5: frames whose error against the previous frame, moved by the true camera move, is a cut (see
    RESET_MAE, RESET_RATIO)."""
    frames, true = _window(video, camera_x, start, stop)
    shifts, errors = shift_errors(frames, cfg)
    explained = errors[np.arange(len(true)), np.searchsorted(shifts, true)]  # (F - 1,)
    threshold = max(RESET_MAE, RESET_RATIO * float(np.median(explained))) if len(explained) else RESET_MAE
    return {"resets": int((explained > threshold).sum()), "frames": len(explained),
            "error_sum": float(explained.sum())}


def pool_resets(parts: list[dict]) -> dict:
    frames = sum(p["frames"] for p in parts)
    count = sum(p["resets"] for p in parts)
    minutes = frames / FRAMES_PER_SECOND / 60
    return {"count": count, "per_minute": count / minutes if minutes else None,
            "mean_explained_error": sum(p["error_sum"] for p in parts) / frames if frames else None,
            "threshold": {"mae": RESET_MAE, "ratio_to_median": RESET_RATIO}}


def _rms_distances(frames: np.ndarray) -> np.ndarray:
    """(F, F) root-mean-square difference between every two frames (0-255), via one Gram matrix."""
    flat = frames.reshape(len(frames), -1).astype(np.float64)
    squares = (flat * flat).sum(axis=1)
    mean_square = (squares[:, None] + squares[None, :] - 2 * flat @ flat.T) / flat.shape[1]
    return np.sqrt(np.maximum(mean_square, 0.0))


def cycle_counts(video: np.ndarray, camera_x: np.ndarray, frame_width: int, start: int, stop: int) -> dict:
    """M6: frames t in [start + CYCLE_GAP, stop) that nearly repeat (RMS < CYCLE_SAME) a generated frame s in
    [start, t - CYCLE_GAP] although the camera views at s and t share no world column: repetition the camera
    does not explain (a loop, or a frozen video)."""
    n = stop - start
    if n <= CYCLE_GAP:
        return {"cycles": 0, "frames": 0}
    close = _rms_distances(video[start:stop]) < CYCLE_SAME  # (n, n)
    x = camera_x[start:stop]
    apart = np.abs(x[:, None] - x[None, :]) >= frame_width  # views share no column
    index = np.arange(n)
    far_back = index[None, :] <= index[:, None] - CYCLE_GAP  # (t, s): s at least CYCLE_GAP earlier
    repeated = (far_back & apart & close).any(axis=1)
    return {"cycles": int(repeated.sum()), "frames": n - CYCLE_GAP}


def pool_cycles(parts: list[dict]) -> dict:
    frames = sum(p["frames"] for p in parts)
    count = sum(p["cycles"] for p in parts)
    return {"count": count, "rate": count / frames if frames else None, "frames": frames}


def _histogram(frames: np.ndarray) -> np.ndarray:
    levels = (frames.astype(np.int64) * HISTOGRAM_LEVELS) // 256  # (..., 3) in [0, levels)
    codes = (levels[..., 0] * HISTOGRAM_LEVELS + levels[..., 1]) * HISTOGRAM_LEVELS + levels[..., 2]
    counts = np.bincount(codes.ravel(), minlength=HISTOGRAM_LEVELS**3).astype(np.float64)
    return counts / counts.sum()


def _histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two frame sets' colour histograms, in [0, 1]."""
    return 0.5 * float(np.abs(_histogram(a) - _histogram(b)).sum())


def drift_windows(video: np.ndarray, truth: np.ndarray, start: int, stop: int) -> list[dict]:
    """M4 per DRIFT_WINDOW window of [start, stop): distance of generated to true frames in pixel statistics.

    mae: mean |generated - true|; colour: mean |difference| of per-channel mean and std; histogram: total
    variation distance of colour histograms; sharpness_ratio: generated / true (below 1: blurrier).
    """
    out = []
    for lo in range(start, stop, DRIFT_WINDOW):
        hi = min(lo + DRIFT_WINDOW, stop)
        g, r = video[lo:hi].astype(np.float64), truth[lo:hi].astype(np.float64)
        colour = (np.abs(g.mean(axis=(0, 1, 2)) - r.mean(axis=(0, 1, 2))).mean()
                  + np.abs(g.std(axis=(0, 1, 2)) - r.std(axis=(0, 1, 2))).mean())
        out.append({"start_seconds": lo / FRAMES_PER_SECOND, "stop_seconds": hi / FRAMES_PER_SECOND,
                    "mae": float(np.abs(g - r).mean()), "colour": float(colour),
                    "histogram": _histogram_distance(video[lo:hi], truth[lo:hi]),
                    "sharpness_ratio": sharpness(video[lo:hi]) / max(sharpness(truth[lo:hi]), 1e-9)})
    return out


def pool_drift(parts: list[list[dict]]) -> list[dict]:
    """Per window, the mean over episodes (episodes share their window boundaries)."""
    pooled = []
    for windows in zip(*parts):
        row = dict(windows[0])
        for key in ("mae", "colour", "histogram", "sharpness_ratio"):
            row[key] = float(np.mean([w[key] for w in windows]))
        pooled.append(row)
    return pooled


def frame_drift(video: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame (F,) of video, truth (F, H, W, 3): the M4 pixel statistics of `drift_windows` frame by frame.

    sharpness_ratio: generated / true sharpness (1: as sharp as the world; a fade or blur lowers it);
    colour: mean |difference| of per-channel mean and std; histogram: colour-histogram total variation.
    Distribution-level, so an invented but plausible world (P2) does not count as drift.
    """
    g, r = video.astype(np.float32), truth.astype(np.float32)

    def frame_sharpness(f: np.ndarray) -> np.ndarray:  # (F,): `metrics.sharpness` of each frame
        across, down = np.abs(np.diff(f, axis=2)), np.abs(np.diff(f, axis=1))
        return (across.mean(axis=(1, 2, 3)) + down.mean(axis=(1, 2, 3))) / 2

    colour = (np.abs(g.mean(axis=(1, 2)) - r.mean(axis=(1, 2))).mean(axis=1)
              + np.abs(g.std(axis=(1, 2)) - r.std(axis=(1, 2))).mean(axis=1))  # (F,)
    histogram = [_histogram_distance(a, b) for a, b in zip(video, truth)]
    return {"sharpness_ratio": frame_sharpness(g) / np.maximum(frame_sharpness(r), 1e-9),
            "colour": colour.astype(np.float64), "histogram": np.asarray(histogram)}


def drift_segments(start: int, stop: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """[lo, hi) of the first and the last segment of the rollout [start, stop): DRIFT_SEGMENT frames each, or
    half the rollout when it is shorter than two segments (they never overlap); None below two frames."""
    length = min(DRIFT_SEGMENT, (stop - start) // 2)
    return None if length < 1 else ((start, start + length), (stop - length, stop))


def drift_segment_means(video: np.ndarray, truth: np.ndarray, start: int, stop: int) -> np.ndarray | None:
    """(2, measures): each DRIFT_MEASURES value averaged over the first (row 0) and the last (row 1)
    segment of the rollout [start, stop) of one episode; None if it is too short."""
    segments = drift_segments(start, stop)
    if segments is None:
        return None
    means = []
    for lo, hi in segments:
        values = frame_drift(video[lo:hi], truth[lo:hi])
        means.append([float(values[m].mean()) for m in DRIFT_MEASURES])
    return np.array(means)


def drift_summary(parts: list[np.ndarray | None], weights: np.ndarray, level: float,
                  segments: tuple[tuple[int, int], tuple[int, int]] | None) -> dict | None:
    """First vs last segment of the rollouts, pooled over episodes (`drift_segment_means` per episode).

    Per measure: the episode mean of each segment with a bootstrap interval (`weights` (draws, episodes));
    `within_interval` when the last segment's mean lies inside the first segment's interval, and
    `drift_within_interval` when every measure's does: "no drift" as a reading. A mean against another
    mean's 95 % interval misses about one time in six per measure even for a stationary video, so each
    measure also carries `change` (last - first) with its paired interval from the same resampled episodes.
    """
    if segments is None or any(p is None for p in parts):
        return None
    values = np.stack(parts)  # (E, 2, measures)
    draws = np.einsum("de,esm->dsm", weights, values) / values.shape[0]  # (draws, 2, measures)
    measures = {}
    for i, name in enumerate(DRIFT_MEASURES):
        first, last = (float(values[:, s, i].mean()) for s in (0, 1))
        (lo, hi), last_interval = (percentile_interval(draws[:, s, i:i + 1], level)[0] for s in (0, 1))
        change = percentile_interval(draws[:, 1, i:i + 1] - draws[:, 0, i:i + 1], level)[0]
        measures[name] = {"first": first, "first_interval": [lo, hi], "last": last,
                          "last_interval": last_interval, "within_interval": bool(lo <= last <= hi),
                          "change": last - first, "change_interval": change}
    (a, b), (c, d) = segments
    return {"first_seconds": [a / FRAMES_PER_SECOND, b / FRAMES_PER_SECOND],
            "last_seconds": [c / FRAMES_PER_SECOND, d / FRAMES_PER_SECOND], "measures": measures,
            "drift_within_interval": all(m["within_interval"] for m in measures.values())}
