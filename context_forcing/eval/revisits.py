"""M1 and M2 error sums of one episode (benchmarks.md "Labels and metrics").

Only static-world pixels count (`labels.world_mask`: the subject, its hat and flicker squares are excluded),
and every on-screen column is grouped by its gap g(t) = t - (the last earlier frame it was visible), its sink
coverage, and whether it is memory-critical (g > h) or new.

- M1 (protocol P1, continuation): frames [t0, F) of the video against ground truth, on the memory-critical
  columns first seen before t0 (the regions the prefill showed), plus never-seen columns for the retrieval
  signal S(memory-critical) - S(new). Each bin is also split by where the column was last visible: in the
  prefill ("BIN/last_prefill": the model restores ground truth it was shown, short-term competence) or in
  the rollout ("BIN/last_rollout": it restores its own earlier rendering, so a region it forgot once stays
  wrong however short the later gap).
- M2 (protocol P2, free rollout): each memory-critical column of frame t against the video's own frame at the
  column's first visit (same world column, known camera offset).

Gap bins are those the episode's length measures whole (`metrics.measured_bins`).

Both are normalised by the chance worlds (their mean error): for M1 against ground truth, for M2 against the
video's first visit (a different world is what a video that forgot would show).
"""

from __future__ import annotations

import numpy as np

from context_forcing.eval.cases import EvalCase
from context_forcing.eval.metrics import RevisitSums, bin_name, column_errors, group_masks, measured_bins


def m1_sums(case: EvalCase, video: np.ndarray, mean_fill: np.ndarray | None = None) -> RevisitSums:
    """M1 sums of one episode; `video` (>= F, H, W, 3) is the whole P1 video, its first t0 frames the prefill.

    `mean_fill`, if given, is scored on the same pixels (the blur reference every report carries).
    """
    labels, t0, frames = case.labels, case.t0, case.frames
    truth, mask = case.truth[t0:frames], labels.world_mask[t0:]
    model, count = column_errors(video[t0:frames], truth, mask)  # (F - t0, W)
    chance = np.mean([column_errors(world[t0:frames], truth, mask)[0] for world in case.chance], axis=0)
    reference = None if mean_fill is None else column_errors(mean_fill[t0:frames], truth, mask)[0]
    seen_in_prefix = labels.first_seen[t0:] < t0  # a new column's first visit is the frame itself (>= t0)
    critical = labels.memory_critical()[t0:] & seen_in_prefix
    bins = measured_bins(frames)
    groups = group_masks(labels.gap[t0:], labels.sink_covered[t0:], critical, labels.new[t0:], bins)
    last_visit = np.arange(t0, frames)[:, None] - labels.gap[t0:]  # (F - t0, W) frame; meaningful if critical
    for name in (bin_name(lo, hi) for lo, hi in bins):
        groups[f"{name}/last_prefill"] = groups[f"{name}/all"] & (last_visit < t0)
        groups[f"{name}/last_rollout"] = groups[f"{name}/all"] & (last_visit >= t0)
    return RevisitSums.of_episode(groups, model, chance, count, reference)


def m2_sums(case: EvalCase, video: np.ndarray) -> RevisitSums:
    """M2 sums of one episode; `video` (>= F, H, W, 3) is the whole P2 video."""
    labels, frames = case.labels, case.frames
    critical = labels.memory_critical()  # (F, W)
    t, j = np.nonzero(critical)
    first = labels.first_seen[t, j]  # (N,) frame of the column's first visit
    j_first = labels.columns[t, j] - case.camera_x[first]  # (N,) the same world column on that frame's screen
    mask = labels.world_mask[t, :, j] & labels.world_mask[first, :, j_first]  # (N, H) static in both frames
    earlier = video[first, :, j_first].astype(np.float64)  # (N, H, 3)

    def error(current: np.ndarray) -> np.ndarray:
        per_column = np.zeros(critical.shape)
        per_column[t, j] = ((((current[t, :, j] - earlier) ** 2).sum(-1)) * mask).sum(-1)
        return per_column

    count = np.zeros(critical.shape, dtype=np.int64)
    count[t, j] = mask.sum(-1) * 3
    chance = np.mean([error(world[:frames].astype(np.float64)) for world in case.chance], axis=0)
    groups = group_masks(labels.gap, labels.sink_covered, critical, None, measured_bins(frames))
    return RevisitSums.of_episode(groups, error(video[:frames].astype(np.float64)), chance, count)
