"""Revisit scores on PanWorld: masked errors per gap bin, chance normalisation, pooling, bootstrap, ECL.

Definitions (reference/benchmarks.md): a world column visible at frame t was last seen `gap` frames earlier;
it is memory-critical when gap > h. Errors are squared pixel errors over the column's static-world pixels
(the subject, hat and flicker excluded), summed per gap bin and pooled over episodes before dividing;
S = 1 - E_model / E_chance, where the chance prediction is the same prompt and camera in another world.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# gap bins in frames (reference/benchmarks.md); centres in seconds at 4 frames per second
GAP_BINS: tuple[tuple[int, int], ...] = ((4, 16), (16, 48), (48, 96), (96, 192))
FRAMES_PER_SECOND = 4
SPLITS = ("all", "sink", "no_sink")


def bin_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


def bin_centre_seconds(lo: int, hi: int) -> float:
    return (lo + hi) / 2 / FRAMES_PER_SECOND


@dataclass
class BinSums:
    """Pooled sums of one bin: squared errors of the model and of chance, and the pixel-channel count."""

    model: float = 0.0
    chance: float = 0.0
    count: int = 0

    def add(self, other: BinSums) -> None:
        self.model += other.model
        self.chance += other.chance
        self.count += other.count

    def score(self) -> float | None:
        """S = 1 - E_model / E_chance (None when the bin is empty)."""
        return None if self.count == 0 or self.chance <= 0 else 1.0 - self.model / self.chance


@dataclass
class EpisodeSums:
    """One episode's sums per (bin, split), plus the never-seen ("new") content."""

    bins: dict[tuple[str, str], BinSums] = field(default_factory=dict)
    new: BinSums = field(default_factory=BinSums)
    critical: BinSums = field(default_factory=BinSums)

    def get(self, name: str, split: str) -> BinSums:
        return self.bins.setdefault((name, split), BinSums())


def column_errors(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared error summed over each screen column's masked pixels and channels: ((F, W), counts (F, W))."""
    diff = (pred.astype(np.float64) - truth.astype(np.float64)) ** 2  # (F, H, W, 3)
    err = (diff.sum(axis=-1) * mask).sum(axis=1)  # (F, W)
    return err, mask.sum(axis=1) * 3


def accumulate(sums: EpisodeSums, model_err: np.ndarray, chance_err: np.ndarray, counts: np.ndarray,
               gap: np.ndarray, sink: np.ndarray, select: np.ndarray, horizon: int) -> None:
    """Add per-column errors (F, W) of the selected columns to the bins of their gaps (and new content)."""
    critical = select & (gap > horizon)
    for lo, hi in GAP_BINS:
        in_bin = critical & (gap >= lo) & (gap < hi)
        for split, part in (("all", in_bin), ("sink", in_bin & sink), ("no_sink", in_bin & ~sink)):
            sums.get(bin_name(lo, hi), split).add(BinSums(float(model_err[part].sum()),
                                                          float(chance_err[part].sum()), int(counts[part].sum())))
    sums.critical.add(BinSums(float(model_err[critical].sum()), float(chance_err[critical].sum()),
                              int(counts[critical].sum())))
    new = select & (gap < 0)
    sums.new.add(BinSums(float(model_err[new].sum()), float(chance_err[new].sum()), int(counts[new].sum())))


def pooled(episodes: list[EpisodeSums], key: tuple[str, str] | str) -> BinSums:
    """Sum a bin (or "new" / "critical") over episodes."""
    total = BinSums()
    for e in episodes:
        total.add(getattr(e, key) if isinstance(key, str) else e.bins.get(key, BinSums()))
    return total


def bootstrap(episodes: list[EpisodeSums], key: tuple[str, str] | str, draws: int = 1000,
              level: float = 0.9, seed: int = 0) -> tuple[float, float] | None:
    """Percentile interval of the pooled score over episodes resampled with replacement."""
    if not episodes or pooled(episodes, key).score() is None:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        score = pooled([episodes[i] for i in rng.integers(len(episodes), size=len(episodes))], key).score()
        if score is not None:
            scores.append(score)
    lo, hi = np.percentile(scores, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def revisit_table(episodes: list[EpisodeSums]) -> dict[str, dict]:
    """bin -> split -> {score, interval, pixels}; pooled over episodes."""
    table = {}
    for lo, hi in GAP_BINS:
        name = bin_name(lo, hi)
        table[name] = {split: {"score": pooled(episodes, (name, split)).score(),
                               "interval": bootstrap(episodes, (name, split)),
                               "pixels": pooled(episodes, (name, split)).count // 3}
                       for split in SPLITS}
    return table


def effective_context_length(bin_scores: dict[str, float | None]) -> tuple[float, bool]:
    """ECL (seconds): the curve through (0 s, 1.0) and the bins' (centre, score), joined linearly, first falls
    below 0.5 there; if it never does, the largest centre measured, flagged as a lower bound."""
    points = [(0.0, 1.0)] + [(bin_centre_seconds(lo, hi), bin_scores[bin_name(lo, hi)]) for lo, hi in GAP_BINS
                             if bin_scores.get(bin_name(lo, hi)) is not None]
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if y1 < 0.5:
            return x0 + (y0 - 0.5) / (y0 - y1) * (x1 - x0) if y0 >= 0.5 else x0, False
    return points[-1][0], True


def sharpness(frames: np.ndarray) -> float:
    """Mean absolute horizontal and vertical pixel difference: blur lowers it."""
    f = frames.astype(np.float64)
    return float((np.abs(np.diff(f, axis=2)).mean() + np.abs(np.diff(f, axis=1)).mean()) / 2)
