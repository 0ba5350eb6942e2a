"""Ground-truth labels of a PanWorld episode: per-column gaps, sink coverage, subject state, revisit summary.

Gap (benchmarks.md "Labels and metrics"): for a world column visible at frame t, g(t) = t - (the last
earlier frame it was visible), or NEW if it was never visible before. It is memory-critical at horizon h
when g(t) > h: seen before, but not in the last h frames. Sink-covered: visible in the first
`sink_frames` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from context_forcing.data.panworld.columns import NEW, column_labels
from context_forcing.data.panworld.episode import Episode
from context_forcing.data.panworld.render import dynamic_mask
from context_forcing.data.panworld.world import SubjectAttributes

GAP_BINS: tuple[tuple[int, int | None], ...] = ((4, 16), (16, 48), (48, 96), (96, 192), (192, None))


@dataclass(frozen=True, eq=False)
class EpisodeLabels:
    """Per-frame ground truth of F frames (frame 0 = the first frame labelled; earlier frames are unseen).

    camera_x (F,) px; columns (F, fw) world px columns on screen; gap (F, fw) (NEW = -1);
    first_seen (F, fw) frame of each column's first visit; sink_covered (F, fw);
    world_mask (F, H, fw): the pixel shows the static world (not the subject, hat or a flicker square);
    subject_visibility (F,) share of body pixels not behind a pillar; subject_occluded (F,) = visibility < 1;
    state_changed (F,): the subject has its hat (from `state_change_frame` on, -1 if never).
    """

    camera_x: np.ndarray
    columns: np.ndarray
    gap: np.ndarray
    first_seen: np.ndarray
    sink_covered: np.ndarray
    world_mask: np.ndarray
    subject: SubjectAttributes
    subject_visibility: np.ndarray
    state_change_frame: int
    token_width: int
    horizon: int
    subject_occluded: np.ndarray = field(init=False)
    state_changed: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject_occluded", self.subject_visibility < 1.0)
        frames = np.arange(len(self.camera_x))
        object.__setattr__(self, "state_changed",
                           (frames >= self.state_change_frame) & (self.state_change_frame >= 0))

    @property
    def frames(self) -> int:
        return len(self.camera_x)

    def memory_critical(self, horizon: int | None = None) -> np.ndarray:
        """(F, fw) bool: seen before, but not in the last `horizon` frames (gap > horizon)."""
        return self.gap > (self.horizon if horizon is None else horizon)

    @property
    def new(self) -> np.ndarray:
        """(F, fw) bool: never visible before."""
        return self.gap == NEW

    def _tokens(self, values: np.ndarray) -> np.ndarray:
        return values.reshape(self.frames, -1, self.token_width)  # (F, tokens, token_width)

    @property
    def token_gap(self) -> np.ndarray:
        """(F, tokens): the smallest gap among a token's seen columns; NEW when all its columns are new."""
        gaps = self._tokens(self.gap)
        smallest = np.where(gaps == NEW, np.iinfo(np.int64).max, gaps).min(axis=2)
        return np.where((gaps == NEW).all(axis=2), NEW, smallest)

    def token_memory_critical(self, horizon: int | None = None) -> np.ndarray:
        """(F, tokens) bool: every column of the token is memory-critical."""
        return self._tokens(self.memory_critical(horizon)).all(axis=2)

    @property
    def token_new(self) -> np.ndarray:
        """(F, tokens) bool: every column of the token is new."""
        return self._tokens(self.new).all(axis=2)


def episode_labels(episode: Episode, start: int = 0, stop: int | None = None) -> EpisodeLabels:
    """Labels of frames [start, stop) of `episode`, as if the episode began at `start` (a training window
    sees only itself: its gaps, first visits, sink and state are relative to the window)."""
    cfg = episode.cfg
    camera_x = episode.camera_x[start:stop]
    columns, gap, first, sink = column_labels(camera_x, cfg.frame_width, cfg.world_width, cfg.sink_frames)
    change = episode.state_change_frame - start if episode.state_change_frame >= 0 else -1
    if change < 0 and episode.state_change_frame >= 0:
        change = 0  # the window starts after the change: the hat is there from its first frame
    return EpisodeLabels(
        camera_x=camera_x.copy(), columns=columns, gap=gap, first_seen=first, sink_covered=sink,
        world_mask=~dynamic_mask(episode, start, stop), subject=episode.layout.subject,
        subject_visibility=episode.subject_visibility[start:stop], state_change_frame=int(change),
        token_width=cfg.token_width, horizon=cfg.horizon)


@dataclass(frozen=True)
class Revisit:
    """A run of adjacent on-screen columns at `frame` with the same gap and sink coverage."""

    frame: int
    start: int  # first world px column
    stop: int  # one past the last
    gap: int
    sink_covered: bool


@dataclass(frozen=True)
class RevisitSchedule:
    """Memory-critical revisits, and counts of memory-critical (frame, column) pairs per gap bin and sink."""

    horizon: int
    revisits: tuple[Revisit, ...]
    counts: dict[str, dict[str, int]]  # bin label -> {"sink": n, "no_sink": n, "all": n}
    visible_columns: int
    new_columns: int
    critical_columns: int

    def as_dict(self) -> dict:
        return {"horizon": self.horizon, "visible_columns": self.visible_columns,
                "new_columns": self.new_columns, "critical_columns": self.critical_columns,
                "counts": self.counts, "revisits": [vars(r) for r in self.revisits]}


def bin_label(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi is not None else f"{lo}+"


def revisit_schedule(labels: EpisodeLabels, horizon: int | None = None,
                     bins: tuple[tuple[int, int | None], ...] = GAP_BINS) -> RevisitSchedule:
    """Summarise the memory-critical revisits of an episode (the CLI report's table); bins are [lo, hi)."""
    h = labels.horizon if horizon is None else horizon
    critical = labels.memory_critical(h)
    counts = {}
    for lo, hi in bins:
        in_bin = critical & (labels.gap >= lo) & (labels.gap < (hi if hi is not None else np.inf))
        sink = int((in_bin & labels.sink_covered).sum())
        total = int(in_bin.sum())
        counts[bin_label(lo, hi)] = {"sink": sink, "no_sink": total - sink, "all": total}
    revisits = []
    for t, j in zip(*np.nonzero(critical)):
        key = (int(labels.gap[t, j]), bool(labels.sink_covered[t, j]))
        previous = revisits[-1] if revisits else None
        if (previous is not None and previous.frame == t and previous.stop == labels.columns[t, j]
                and (previous.gap, previous.sink_covered) == key):
            revisits[-1] = Revisit(int(t), previous.start, previous.stop + 1, *key)
        else:
            revisits.append(Revisit(int(t), int(labels.columns[t, j]), int(labels.columns[t, j]) + 1, *key))
    return RevisitSchedule(horizon=h, revisits=tuple(revisits), counts=counts,
                           visible_columns=int(critical.size), new_columns=int(labels.new.sum()),
                           critical_columns=int(critical.sum()))
