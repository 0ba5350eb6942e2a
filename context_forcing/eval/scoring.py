"""Score P1 / P2 videos of any source (model or reference) on the eval cases: every metric of the report.

`score_videos(cases, videos)` is the whole scoring step of `evaluate`: M1 (P1) and M2 (P2) per gap bin and
sink split with bootstrap intervals, their ECLs, the retrieval signal, the fidelity gate, M3 identity, motion,
M4 drift (per window, and the first vs the last 16 s of each rollout), M5 resets and M6 cycles. Videos are
whole (padded, H, W, 3) uint8 arrays, P1 ones starting with the ground-truth prefix.
"""

from __future__ import annotations

import numpy as np

from context_forcing.eval import dynamics
from context_forcing.eval.cases import EvalCase
from context_forcing.eval.identity import IDENTITY_GROUPS, identity_counts
from context_forcing.eval.metrics import (
    BIN_NAMES,
    NOISE_GATE,
    SPLITS,
    RevisitSums,
    bootstrap_weights,
    difference_interval,
    effective_context_length,
    percentile_interval,
    score_table,
    sharpness,
)
from context_forcing.eval.references import mean_fill_video
from context_forcing.eval.revisits import m1_sums, m2_sums

FIDELITY_GATE = 0.7  # generated sharpness below this share of ground truth's is flagged as blur (pitfall 3)
BOOTSTRAP_DRAWS = 1000
LEVEL = 0.95  # central bootstrap interval


def revisit_tables(sums: RevisitSums, weights: np.ndarray) -> tuple[dict, dict, dict]:
    """(bin -> split -> cell, ECL per split {split: {seconds, lower_bound}}, the ungrouped cells by name);
    bins are those `sums` holds (the episodes' measured bins)."""
    cells = score_table(sums, weights, LEVEL)
    names = [name for name in BIN_NAMES if f"{name}/all" in cells]
    by_gap = {name: {split: cells[f"{name}/{split}"] for split in SPLITS} for name in names}
    ecl = {}
    for split in SPLITS:
        seconds, lower = effective_context_length({name: by_gap[name][split]["score"] for name in names})
        ecl[split] = {"seconds": seconds, "lower_bound": lower}
    return by_gap, ecl, cells


def generated_spans(cases: list[EvalCase], protocol: str) -> list[tuple[int, int]]:
    """[start, stop) of the frames each video generated: P1 from t0, P2 from 0; both up to the episode's
    end."""
    return [(c.t0 if protocol == "p1" else 0, c.frames) for c in cases]


def fidelity(cases: list[EvalCase], videos: list[np.ndarray], protocol: str) -> dict:
    """Sharpness of the generated frames relative to ground truth's; `passes` when at least FIDELITY_GATE (no
    blur); `noisy` when above NOISE_GATE (high-frequency noise, which the blur gate cannot see)."""
    spans = generated_spans(cases, protocol)
    generated = sum(sharpness(v[lo:hi]) * (hi - lo) for v, (lo, hi) in zip(videos, spans))
    truth = sum(sharpness(c.truth[lo:hi]) * (hi - lo) for c, (lo, hi) in zip(cases, spans))
    ratio = generated / max(truth, 1e-9)
    return {"sharpness_ratio": ratio, "passes": bool(ratio >= FIDELITY_GATE), "gate": FIDELITY_GATE,
            "noisy": bool(ratio > NOISE_GATE), "noise_gate": NOISE_GATE}


def identity_table(cases: list[EvalCase], videos: list[np.ndarray], protocol: str,
                   weights: np.ndarray) -> dict:
    """group -> {accuracy, interval, frames}: decoded-correct frames pooled over episodes."""
    counts = [identity_counts(c, v, protocol) for c, v in zip(cases, videos)]
    correct = np.array([[n[g][0] for g in IDENTITY_GROUPS] for n in counts], dtype=np.float64)  # (E, G)
    total = np.array([[n[g][1] for g in IDENTITY_GROUPS] for n in counts], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = (weights @ correct) / (weights @ total)  # (draws, G)
    intervals = percentile_interval(draws, LEVEL)
    table = {}
    for i, group in enumerate(IDENTITY_GROUPS):
        frames = int(total[:, i].sum())
        table[group] = {"accuracy": float(correct[:, i].sum() / frames) if frames else None,
                        "interval": intervals[i] if frames else None, "frames": frames}
    return table


def dynamics_report(cases: list[EvalCase], videos: list[np.ndarray], protocol: str,
                    weights: np.ndarray) -> dict:
    """Motion, drift (per window, and first vs last 16 s), resets and cycles over the generated frames."""
    cfg = cases[0].episode.cfg
    runs = list(zip(cases, videos, generated_spans(cases, protocol)))
    motion = [dynamics.motion_counts(v, c.camera_x, cfg, lo, hi) for c, v, (lo, hi) in runs]
    resets = [dynamics.reset_counts(v, c.camera_x, cfg, lo, hi) for c, v, (lo, hi) in runs]
    cycles = [dynamics.cycle_counts(v, c.camera_x, cfg.frame_width, lo, hi) for c, v, (lo, hi) in runs]
    drift = [dynamics.drift_windows(v, c.truth, lo, hi) for c, v, (lo, hi) in runs]
    segments = [dynamics.drift_segment_means(v, c.truth, lo, hi) for c, v, (lo, hi) in runs]
    lo, hi = generated_spans(cases, protocol)[0]  # the eval's cases share their length
    summary = dynamics.drift_summary(segments, weights, LEVEL, dynamics.drift_segments(lo, hi))
    return {"motion": dynamics.pool_motion(motion), "resets": dynamics.pool_resets(resets),
            "cycles": dynamics.pool_cycles(cycles), "drift": dynamics.pool_drift(drift),
            "drift_summary": summary}


def score_p1(cases: list[EvalCase], videos: list[np.ndarray], weights: np.ndarray) -> dict:
    """M1 (with the mean-fill reference on the same pixels), its ECL, the retrieval signal, identity against
    the true attributes, fidelity and dynamics of P1 videos."""
    sums = RevisitSums.stack([m1_sums(c, v, mean_fill_video(c, "p1")) for c, v in zip(cases, videos)])
    by_gap, ecl, cells = revisit_tables(sums, weights)
    signal, interval = difference_interval(sums, "critical", "new", weights, LEVEL)
    return {
        "revisit_by_gap": by_gap, "ecl": ecl, "memory_critical": cells["critical"], "new": cells["new"],
        "by_split": {split: cells[f"critical/{split}"] for split in ("sink", "no_sink")},
        "by_last_visit": {name: {where: cells[f"{name}/last_{where}"] for where in ("prefill", "rollout")}
                          for name in by_gap},
        "retrieval_signal": {"score": signal, "interval": interval,
                             "memory_critical": cells["critical"]["score"], "new": cells["new"]["score"]},
        "fidelity": fidelity(cases, videos, "p1"), "identity": identity_table(cases, videos, "p1", weights),
        **dynamics_report(cases, videos, "p1", weights),
    }


def score_p2(cases: list[EvalCase], videos: list[np.ndarray], weights: np.ndarray) -> dict:
    """M2 and its ECL, identity self-consistency, fidelity and dynamics of P2 videos."""
    sums = RevisitSums.stack([m2_sums(c, v) for c, v in zip(cases, videos)])
    by_gap, ecl, cells = revisit_tables(sums, weights)
    return {"revisit_by_gap": by_gap, "ecl": ecl, "memory_critical": cells["critical"],
            "by_split": {split: cells[f"critical/{split}"] for split in ("sink", "no_sink")},
            "fidelity": fidelity(cases, videos, "p2"),
            "identity": identity_table(cases, videos, "p2", weights),
            **dynamics_report(cases, videos, "p2", weights)}


def score_videos(cases: list[EvalCase], videos: dict[str, list[np.ndarray]], draws: int = BOOTSTRAP_DRAWS,
                 seed: int = 0) -> dict:
    """The report's metric fields for the protocols in `videos` ({"p1": [...], "p2": [...]}, either optional).

    Headline fields (`ecl_seconds`, ..., `drift_within_interval` of the P2 drift summary) are None for a
    protocol that was not run. Per-protocol fields (identity, fidelity, motion, drift, drift_summary, resets,
    cycles) map "p1" / "p2" to their values.
    """
    weights = bootstrap_weights(len(cases), draws, seed)  # the same resampled episodes for every metric
    parts = {p: (score_p1 if p == "p1" else score_p2)(cases, v, weights) for p, v in videos.items()}
    p1, p2 = parts.get("p1"), parts.get("p2")
    report = {
        "ecl_seconds": p1["ecl"]["all"]["seconds"] if p1 else None,
        "ecl_lower_bound": p1["ecl"]["all"]["lower_bound"] if p1 else None,
        "ecl_seconds_m2": p2["ecl"]["all"]["seconds"] if p2 else None,
        "ecl_m2_lower_bound": p2["ecl"]["all"]["lower_bound"] if p2 else None,
        "ecl_by_split": {m: part["ecl"] for m, part in (("m1", p1), ("m2", p2)) if part},
        "revisit_by_gap": {m: part["revisit_by_gap"] for m, part in (("m1", p1), ("m2", p2)) if part},
        "m1_memory_critical": p1["memory_critical"] if p1 else None,
        "m1_new": p1["new"] if p1 else None,
        "m1_by_last_visit": p1["by_last_visit"] if p1 else None,
        "m2_memory_critical": p2["memory_critical"] if p2 else None,
        "memory_critical_by_split": {m: part["by_split"] for m, part in (("m1", p1), ("m2", p2)) if part},
        "retrieval_signal": p1["retrieval_signal"] if p1 else None,
        "bootstrap": {"draws": draws, "level": LEVEL, "over": "episodes"},
    }
    for key in ("fidelity", "identity", "motion", "drift", "drift_summary", "resets", "cycles"):
        report[key] = {p: part[key] for p, part in parts.items()}
    free = (p2 or {}).get("drift_summary")  # the free rollout's: P1 continues from ground truth
    report["drift_within_interval"] = None if free is None else free["drift_within_interval"]
    report["motion"]["passes"] = all(part["motion"]["passes"] for part in parts.values())
    return report
