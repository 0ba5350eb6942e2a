"""`evaluate`: PanWorld memory metrics of a model or a reference over eval episodes (reference/benchmarks.md).

Protocols: P1 (continuation) prefills ground truth up to t0 (the first quarter, in whole chunks) and rolls out
with the true actions; M1 compares revisits of content last seen before t0 with ground truth. P2 (free
rollout) generates from prompt and actions; M2 compares revisits with the model's own first visit. Both are
chance-normalised per gap bin and split by sink coverage; counts are pooled over episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from context_forcing.data.panworld import SEED_RANGES, Episode, PanWorldConfig, sample_episode
from context_forcing.eval import dynamics
from context_forcing.eval.identity import identity_scores
from context_forcing.eval.references import CHUNK, chance_episode, mean_fill, oracle_frames
from context_forcing.eval.scores import (EpisodeSums, accumulate, bootstrap, column_errors, effective_context_length,
                                         pooled, revisit_table, sharpness)

REFERENCES = ("ground-truth", "chance", "mean-fill")
PROTOCOLS = ("p1", "p2", "both")
FIDELITY_GATE = 0.7  # a prediction whose sharpness is below this share of the truth's is flagged as blurry


@dataclass
class Case:
    """One eval episode: ground truth, the chance world, labels, and t0 (P1's prefix length)."""

    episode: Episode
    truth: np.ndarray  # (F, H, W, 3)
    chance: np.ndarray
    t0: int
    chance_m2: np.ndarray  # a second chance world: M2's normaliser, so the `chance` reference is scored fairly

    @property
    def labels(self):
        return self.episode.labels(0, len(self.truth))


def make_cases(episodes: int, seconds: float, seed_start: int, world: PanWorldConfig | None = None) -> list[Case]:
    """Eval episodes seed_start, seed_start + 1, ... covering `seconds` (4 frames per second)."""
    world = world or PanWorldConfig()
    frames = max(CHUNK, math.ceil(seconds * 4 - 1e-9))
    padded = -(-frames // CHUNK) * CHUNK  # generation covers whole chunks
    t0 = max(CHUNK, frames // 4 // CHUNK * CHUNK)
    cases = []
    for i in range(episodes):
        episode = sample_episode(world, seed_start + i, padded)
        truth = episode.render(0, frames)
        cases.append(Case(episode, truth, chance_episode(episode).render(0, frames), t0,
                          chance_episode(episode, draw=2).render(0, frames)))
    return cases


def m1_sums(case: Case, pred: np.ndarray) -> EpisodeSums:
    """M1 sums of one episode: frames [t0, F), content last seen before t0, and never-seen content."""
    labels, t0 = case.labels, case.t0
    mask = labels.world_mask[t0:]
    model_err, counts = column_errors(pred, case.truth[t0:], mask)
    chance_err, _ = column_errors(case.chance[t0:], case.truth[t0:], mask)
    gap = labels.gap[t0:]
    frames = np.arange(t0, len(case.truth))[:, None]
    before_t0 = (gap < 0) | (frames - gap < t0)  # new content, or last seen in the prefilled part
    sums = EpisodeSums()
    accumulate(sums, model_err, chance_err, counts, gap, labels.sink_covered[t0:], before_t0, labels.horizon)
    return sums


def m2_sums(case: Case, video: np.ndarray) -> EpisodeSums:
    """M2 sums: each memory-critical column against the video's own frame at its last earlier sighting."""
    labels = case.labels
    gap, cols, wm = labels.gap, labels.columns, labels.world_mask
    t, j = np.nonzero(gap > labels.horizon)
    tp = t - gap[t, j]
    jp = cols[t, j] - case.episode.camera_x[tp]  # the same world column on the earlier frame's screen
    mask = wm[t, :, j] & wm[tp, :, jp]  # (N, H)
    earlier = video[tp, :, jp].astype(np.float64)  # (N, H, 3)
    model_err = np.zeros(gap.shape)
    chance_err = np.zeros(gap.shape)
    counts = np.zeros(gap.shape, dtype=np.int64)
    model_err[t, j] = (((video[t, :, j] - earlier) ** 2).sum(-1) * mask).sum(-1)
    chance_err[t, j] = (((case.chance_m2[t, :, j] - earlier) ** 2).sum(-1) * mask).sum(-1)
    counts[t, j] = mask.sum(-1) * 3
    sums = EpisodeSums()
    accumulate(sums, model_err, chance_err, counts, gap, labels.sink_covered, gap > labels.horizon, labels.horizon)
    return sums


def reference_videos(spec: str, cases: list[Case], protocol: str) -> list[np.ndarray | None]:
    """Frames of a reference: P1 -> frames [t0, F); P2 -> the whole video (None where undefined)."""
    out = []
    for case in cases:
        if spec == "ground-truth":
            video = case.truth
        elif spec == "chance":
            video = case.chance
        elif spec == "mean-fill":
            video = np.concatenate([case.truth[:case.t0], mean_fill(case.truth, case.t0)]) if protocol == "p1" \
                else None
        else:
            video = oracle_frames(case.episode, spec.removeprefix("oracle:"), case.truth, case.chance)[0]
        out.append(None if video is None else (video[case.t0:] if protocol == "p1" else video))
    return out


def restorable_fraction(spec: str, cases: list[Case]) -> float:
    """Share of all memory-critical (frame, column) content the oracle's layout can restore."""
    restored = total = 0
    for case in cases:
        _, restorable = oracle_frames(case.episode, spec.removeprefix("oracle:"), case.truth, case.chance)
        labels = case.labels
        critical = labels.gap > labels.horizon
        restored += int((restorable[critical]).sum())
        total += int(critical.sum())
    return restored / total if total else 0.0


def score_p1(cases: list[Case], predictions: list[np.ndarray]) -> dict:
    """M1, ECL, the retrieval signal, fidelity, identity, motion, drift, resets and cycles of P1 predictions."""
    sums = [m1_sums(c, p) for c, p in zip(cases, predictions)]
    table = revisit_table(sums)
    ecl, lower = effective_context_length({k: v["all"]["score"] for k, v in table.items()})
    critical, new = pooled(sums, "critical").score(), pooled(sums, "new").score()
    videos = [np.concatenate([c.truth[:c.t0], p]) for c, p in zip(cases, predictions)]
    ratio = sharpness(np.concatenate(predictions)) / max(sharpness(np.concatenate([c.truth[c.t0:] for c in cases])),
                                                         1e-9)
    return {
        "revisit_by_gap": table, "ecl_seconds": ecl, "ecl_lower_bound": lower,
        "m1_memory_critical": {"score": critical, "interval": bootstrap(sums, "critical")},
        "m1_new": {"score": new, "interval": bootstrap(sums, "new")},
        "retrieval_signal": None if critical is None or new is None else critical - new,
        "fidelity": {"sharpness_ratio": ratio, "passes": ratio >= FIDELITY_GATE},
        "identity": _identity(cases, videos),
        "motion": _pooled_motion(cases, videos),
        "drift": _mean_drift(cases, videos),
        "resets": _sum_counts([dynamics.resets(v[c.t0 - 1:], c.episode.camera_x[c.t0 - 1:len(v)])
                               for c, v in zip(cases, videos)]),
        "cycles": _sum_counts([dynamics.cycles(v[c.t0:], c.truth[c.t0:]) for c, v in zip(cases, videos)]),
    }


def score_p2(cases: list[Case], videos: list[np.ndarray]) -> dict:
    """M2 and its ECL (read beside M1: a different but self-consistent world scores high on M2)."""
    sums = [m2_sums(c, v) for c, v in zip(cases, videos)]
    table = revisit_table(sums)
    ecl, lower = effective_context_length({k: v["all"]["score"] for k, v in table.items()})
    return {"revisit_by_gap": table, "ecl_seconds": ecl, "ecl_lower_bound": lower,
            "m2_memory_critical": {"score": pooled(sums, "critical").score(), "interval": bootstrap(sums, "critical")},
            "motion": _pooled_motion(cases, videos)}


def _identity(cases: list[Case], videos: list[np.ndarray]) -> dict:
    totals: dict[str, list[int]] = {}
    for case, video in zip(cases, videos):
        for name, (correct, count) in identity_scores(case.episode, video, case.t0).items():
            totals.setdefault(name, [0, 0])
            totals[name][0] += correct
            totals[name][1] += count
    return {name: {"accuracy": c / n if n else None, "frames": n} for name, (c, n) in totals.items()}


def _pooled_motion(cases: list[Case], videos: list[np.ndarray]) -> dict:
    parts = [dynamics.motion(v, c.episode.camera_x[:len(v)]) for c, v in zip(cases, videos)]
    moving = sum(p["moving_frames"] for p in parts)
    correct = sum(p["accuracy_moving"] * p["moving_frames"] for p in parts if p["accuracy_moving"] is not None)
    accuracy = correct / moving if moving else None
    return {"accuracy_moving": accuracy, "moving_frames": moving, "ok": accuracy is not None and accuracy >= 0.5}


def _mean_drift(cases: list[Case], videos: list[np.ndarray]) -> list[dict]:
    per_case = [dynamics.drift(v[c.t0:], c.truth[c.t0:], c.t0) for c, v in zip(cases, videos)]
    windows = min(len(p) for p in per_case)
    return [{key: float(np.mean([p[i][key] for p in per_case])) for key in per_case[0][i]} for i in range(windows)]


def _sum_counts(parts: list[dict]) -> dict:
    keys = parts[0].keys()
    return {k: float(np.mean([p[k] for p in parts])) if isinstance(parts[0][k], float) else sum(p[k] for p in parts)
            for k in keys}


def check_seed_start(seed_start: int, episodes: int) -> None:
    lo, hi = SEED_RANGES["eval"]
    if not lo <= seed_start <= hi - episodes:
        raise ValueError(f"eval episodes need seeds in [{lo}, {hi}); got start {seed_start} for {episodes} episodes")


def evaluate(spec: str, episodes: int, seconds: float, memory: str | None = None, protocol: str = "both",
             seed_start: int | None = None, plots_dir: str | None = None, progress: bool = True) -> dict:
    """Metrics of a checkpoint / run directory, `ground-truth`, `chance`, `mean-fill` or `oracle:LAYOUT`."""
    seed_start = SEED_RANGES["eval"][0] if seed_start is None else seed_start
    check_seed_start(seed_start, episodes)
    cases = make_cases(episodes, seconds, seed_start)
    videos = {p: _videos(spec, cases, p, memory, progress) for p in ("p1", "p2") if protocol in (p, "both")}
    report = {"model": spec, "protocol": protocol, "episodes": episodes, "seconds": len(cases[0].truth) / 4,
              "seed_range": [seed_start, seed_start + episodes], "t0_seconds": cases[0].t0 / 4,
              "memory": memory}
    if "p1" in videos:
        report.update(score_p1(cases, videos["p1"]))
    if "p2" in videos and videos["p2"][0] is not None:
        p2 = score_p2(cases, videos["p2"])
        report.update({"revisit_by_gap_m2": p2["revisit_by_gap"], "ecl_seconds_m2": p2["ecl_seconds"],
                       "ecl_m2_lower_bound": p2["ecl_lower_bound"], "m2_memory_critical": p2["m2_memory_critical"],
                       "motion_p2": p2["motion"]})
    if spec.startswith("oracle:"):
        report["restorable_fraction"] = restorable_fraction(spec, cases)
    if plots_dir is not None:
        from context_forcing.eval.plots import write_plots

        write_plots(report, cases, videos.get("p1"), plots_dir)
    return report


def _videos(spec: str, cases: list[Case], protocol: str, memory: str | None, progress: bool) -> list:
    if spec in REFERENCES or spec.startswith("oracle:"):
        return reference_videos(spec, cases, protocol)
    from context_forcing.eval.protocols import generate
    from context_forcing.memory.layout import parse_layout
    from context_forcing.model.checkpoint import load_model

    run, model = load_model(spec)
    layout = parse_layout(memory, run.chunk) if memory else None
    return generate(model, run, cases, protocol, layout, progress=progress)
