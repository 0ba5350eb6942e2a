"""Revisit-score arithmetic of PanWorld (benchmarks.md "Labels and metrics"): gap bins, masked squared errors,
pooled chance-normalised scores, bootstrap intervals over episodes, the effective context length (ECL) and the
sharpness used by the fidelity gate. Pure numpy; no model, no episode.

A score S = 1 - E_model / E_chance compares the masked squared error of a prediction with that of the chance
world (same prompt and camera, another world). Errors and pixel counts are summed over episodes before
dividing (pitfall 8: episodes with few revisits must not weigh as much as episodes with many).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

FRAMES_PER_SECOND = 4  # latent frames per second everywhere (DESIGN.md section 2)
# [lo, hi) in frames; an episode measures those it holds whole (`measured_bins`)
GAP_BINS: tuple[tuple[int, int], ...] = ((4, 16), (16, 48), (48, 96), (96, 192), (192, 384))
SPLITS = ("all", "sink", "no_sink")  # sink: the column was visible in the first frames (pitfall 5)
ECL_THRESHOLD = 0.5


def bin_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


BIN_NAMES = tuple(bin_name(lo, hi) for lo, hi in GAP_BINS)


def measured_bins(frames: int) -> tuple[tuple[int, int], ...]:
    """The gap bins episodes of `frames` frames measure: those whose every gap they can hold (hi <= frames).

    A bin cut short by the episode would hold only its shortest gaps yet stand at its centre on the ECL curve.
    192-384 is measured from 96 s (384 frames) on, so 64 s reports keep their four bins up to 96-192 (and
    episodes shorter than 48 s leave out 96-192).
    """
    return tuple((lo, hi) for lo, hi in GAP_BINS if hi <= frames)


def bin_centre_seconds(lo: int, hi: int) -> float:
    """The bin's centre in seconds (4-16 frames -> 2.5 s, ..., 96-192 -> 36 s, 192-384 -> 72 s)."""
    return (lo + hi) / 2 / FRAMES_PER_SECOND


def column_errors(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared error summed over each screen column's masked pixels and channels.

    pred, truth (F, H, W, 3) uint8 or float; mask (F, H, W) bool. Returns errors (F, W) float64 and counts (F,
    W) of pixel channels (masked pixels x 3), so a pooled mean squared error is sum(errors) / sum(counts).
    """
    diff = pred.astype(np.float64) - truth.astype(np.float64)
    per_pixel = np.einsum("fhwc,fhwc->fhw", diff, diff)  # (F, H, W)
    return (per_pixel * mask).sum(axis=1), mask.sum(axis=1).astype(np.int64) * pred.shape[-1]


def group_masks(gap: np.ndarray, sink: np.ndarray, critical: np.ndarray, new: np.ndarray | None,
                bins: tuple[tuple[int, int], ...] = GAP_BINS) -> dict[str, np.ndarray]:
    """Boolean (F, W) selections by name: "BIN/SPLIT" for each gap bin of `bins` and split of the `critical`
    columns, "critical" (every memory-critical column, any gap), "critical/SPLIT" and, if given, "new" (never
    seen)."""
    groups = {}
    for lo, hi in bins:
        name = bin_name(lo, hi)
        in_bin = critical & (gap >= lo) & (gap < hi)
        groups[f"{name}/all"] = in_bin
        groups[f"{name}/sink"] = in_bin & sink
        groups[f"{name}/no_sink"] = in_bin & ~sink
    groups["critical"] = critical
    groups["critical/sink"] = critical & sink
    groups["critical/no_sink"] = critical & ~sink
    if new is not None:
        groups["new"] = new
    return groups


@dataclass(frozen=True)
class RevisitSums:
    """Per-episode sums of squared errors per named group: the model's, chance's, an optional reference's
    (mean-fill) and the pixel-channel counts; arrays (episodes, groups)."""

    groups: tuple[str, ...]
    model: np.ndarray
    chance: np.ndarray
    count: np.ndarray
    reference: np.ndarray | None = None

    @staticmethod
    def of_episode(groups: dict[str, np.ndarray], model: np.ndarray, chance: np.ndarray, count: np.ndarray,
                   reference: np.ndarray | None = None) -> RevisitSums:
        """Sum (F, W) per-column errors and counts inside each group of one episode."""
        names = tuple(groups)

        def total(values: np.ndarray) -> np.ndarray:
            return np.array([[values[groups[g]].sum() for g in names]], dtype=np.float64)  # (1, groups)

        return RevisitSums(names, total(model), total(chance), total(count),
                           None if reference is None else total(reference))

    @staticmethod
    def stack(parts: list[RevisitSums]) -> RevisitSums:
        """Episodes of several RevisitSums (same groups) in one."""
        groups = parts[0].groups
        if any(p.groups != groups for p in parts):
            raise ValueError("RevisitSums of different groups cannot be stacked")

        def join(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        reference = None if any(p.reference is None for p in parts) else join("reference")
        return RevisitSums(groups, join("model"), join("chance"), join("count"), reference)

    @property
    def episodes(self) -> int:
        return self.model.shape[0]

    def column(self, group: str) -> int:
        return self.groups.index(group)


def pooled_score(model: np.ndarray, chance: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """S = 1 - sum(model) / sum(chance) over the episode axis (0), optionally weighted by episode multiplicity
    (weights (draws, episodes) -> scores (draws, groups)); NaN where chance has no error (an empty group)."""
    if weights is None:
        m, c = model.sum(axis=0), chance.sum(axis=0)
    else:
        m, c = weights @ model, weights @ chance
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, 1.0 - m / np.where(c > 0, c, 1.0), np.nan)


def bootstrap_weights(episodes: int, draws: int, seed: int) -> np.ndarray:
    """(draws, episodes) multiplicities of episodes resampled with replacement (seeded; percentile method)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(episodes, size=(draws, episodes))
    weights = np.zeros((draws, episodes))
    np.add.at(weights, (np.arange(draws)[:, None], picks), 1.0)
    return weights


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[list[float] | None]:
    """Per column of samples (draws, groups): the central `level` percentile interval; None if all NaN."""
    out = []
    for column in samples.T:
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            out.append(None)
            continue
        lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
        out.append([float(lo), float(hi)])
    return out


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def score_table(sums: RevisitSums, weights: np.ndarray, level: float = 0.95) -> dict[str, dict]:
    """group -> {score, interval, pixels[, reference]}: pooled scores with bootstrap intervals over episodes.

    `reference` is the pooled score of `sums.reference` (mean-fill) on the same pixels and normaliser.
    """
    point = pooled_score(sums.model, sums.chance)
    intervals = percentile_interval(pooled_score(sums.model, sums.chance, weights), level)
    reference = None if sums.reference is None else pooled_score(sums.reference, sums.chance)
    table = {}
    for i, group in enumerate(sums.groups):
        cell = {"score": _number(point[i]), "interval": intervals[i] if math.isfinite(point[i]) else None,
                "pixels": int(sums.count[:, i].sum()) // 3}
        if reference is not None:
            cell["mean_fill"] = _number(reference[i])
        table[group] = cell
    return table


def difference_interval(sums: RevisitSums, a: str, b: str, weights: np.ndarray, level: float = 0.95
                        ) -> tuple[float | None, list[float] | None]:
    """S(a) - S(b) pooled, and its bootstrap interval from the same resampled episodes."""
    ia, ib = sums.column(a), sums.column(b)
    point = pooled_score(sums.model, sums.chance)
    draws = pooled_score(sums.model, sums.chance, weights)
    interval = percentile_interval((draws[:, ia] - draws[:, ib])[:, None], level)[0]
    return _number(point[ia] - point[ib]), interval


def effective_context_length(bin_scores: dict[str, float | None]) -> tuple[float, bool]:
    """ECL (s) from revisit scores per gap bin (benchmarks.md): join (0 s, 1.0) and each measured bin's
    (centre s, score) piecewise-linearly; ECL is where that curve first falls below 0.5. If it never does,
    the largest measured bin centre, flagged as a lower bound. Returns (seconds, lower_bound)."""
    points = [(0.0, 1.0)]
    for (lo, hi), name in zip(GAP_BINS, BIN_NAMES):
        score = bin_scores.get(name)
        if score is not None and math.isfinite(score):
            points.append((bin_centre_seconds(lo, hi), float(score)))
    for (x0, y0), (x1, y1) in pairwise(points):
        if y1 < ECL_THRESHOLD:  # y0 >= 0.5 here: every earlier point was, and (0 s, 1.0) starts the curve
            return x0 + (y0 - ECL_THRESHOLD) / (y0 - y1) * (x1 - x0), False
    return points[-1][0], True


NOISE_GATE = 1.5  # generated sharpness above this multiple of the truth's is flagged as noise (issue 7):
# residual noise reads as "sharp", which the blur gate (0.7, scoring.FIDELITY_GATE) cannot see


def sharpness(frames: np.ndarray) -> float:
    """Mean absolute difference of horizontally and vertically adjacent pixels (0-255): blur lowers it."""
    f = frames.astype(np.float32)
    return float((np.abs(np.diff(f, axis=-2)).mean() + np.abs(np.diff(f, axis=-3)).mean()) / 2)
