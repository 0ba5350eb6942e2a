"""Several eval reports (the JSON of `evaluate`) -> one Markdown table, one row per report.

Columns: M1 score per gap bin with its bootstrap interval (every bin some report measures; `-` where a
report's episodes are too short for it), M1 in the 4-16 bin on the columns last visible in the prefill (the
ground truth the model was shown: short-term competence, apart from what its own rollout forgot), ECL from M1
and M2 (`36+` marks a lower bound), the retrieval signal S(memory-critical) - S(new), M1 on sink-covered /
other columns, the oracle's restorable fraction, motion (accuracy on moving frames; FAIL when the check
fails), the fidelity gates (sharpness ratio; `blur` below 0.7, `noisy` above 1.5, judged from the ratio so
reports written before the noise gate read alike), drift (the free rollout's sharpness ratio in its first /
last 16 s; `drift:` names the measures whose last-16 s mean left the first-16 s interval), identity (P1
accuracy of the hidden subject attributes after occlusion / after the state change), resets per minute and the
cycle rate (P2's, P1's if only P1 ran), the slow-memory admission rate, and the measured cost of a generated
chunk (ms per episode, i.e. a batch's chunk time over its batch, and analytic GFLOPs per sample). `-` marks
what a report does not have.
"""

from __future__ import annotations

from context_forcing.eval.metrics import BIN_NAMES, NOISE_GATE


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(cell: dict | None) -> str:
    if not cell or cell.get("score") is None:
        return "-"
    interval = cell.get("interval")
    spread = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return f"{cell['score']:.2f}{spread}"


def _last_prefill(report: dict) -> str:
    """M1 4-16 on the columns last visible in the prefill (reports written before the split: `-`)."""
    return _cell(((report.get("m1_by_last_visit") or {}).get("4-16") or {}).get("prefill"))


def _ecl(seconds, lower_bound) -> str:
    return "-" if seconds is None else f"{seconds:.1f}" + ("+" if lower_bound else "")


def _split(report: dict, split: str) -> str:
    """M1 over every memory-critical column of one sink split."""
    m1 = (report.get("memory_critical_by_split") or {}).get("m1") or {}
    return _number((m1.get(split) or {}).get("score"))


def _drift(report: dict) -> str:
    """P2's drift summary (P1's if only P1 ran): sharpness ratio first / last, the measures that drifted."""
    summaries = report.get("drift_summary") or {}
    summary = summaries.get("p2") or summaries.get("p1")
    if not summary:
        return "-"
    sharp = summary["measures"]["sharpness_ratio"]
    drifted = [name for name, m in summary["measures"].items() if not m["within_interval"]]
    flag = f" drift: {', '.join(drifted)}" if drifted else ""
    return f"{sharp['first']:.2f} / {sharp['last']:.2f}{flag}"


def _identity(report: dict) -> str:
    """P1's identity accuracy after occlusion / after the state change."""
    identity = (report.get("identity") or {}).get("p1") or {}
    if not identity:
        return "-"
    return " / ".join(_number((identity.get(k) or {}).get("accuracy"))
                      for k in ("after_occlusion", "after_state_change"))


def _per_protocol(report: dict, key: str, field: str) -> str:
    """A per-protocol measure, P2's when present (the free rollout), else P1's."""
    by_protocol = report.get(key) or {}
    values = by_protocol.get("p2") or by_protocol.get("p1") or {}
    return _number(values.get(field))


def _cost(report: dict) -> str:
    cost = report.get("cost_per_chunk") or {}
    if not cost.get("ms_per_episode_median"):
        return "-"
    return f"{cost['ms_per_episode_median']:.1f} / {cost['flops'] / 1e9:.2f}"


def model_name(report: dict) -> str:
    """A report's row label: the model (the last part of a checkpoint or run path) and the memory
    it ran with."""
    spec = str(report.get("model"))
    if spec.startswith("oracle:") or not report.get("memory"):
        return spec
    return f"{spec.rstrip('/').rsplit('/', 1)[-1]} [{report['memory']}]"


def _bins(reports: list[dict]) -> list[str]:
    """The gap bins any report measures, in gap order."""
    present = {name for r in reports for name in ((r.get("revisit_by_gap") or {}).get("m1") or {})}
    return [name for name in BIN_NAMES if name in present]


def _row(report: dict, bins: list[str]) -> list[str]:
    m1 = (report.get("revisit_by_gap") or {}).get("m1") or {}
    signal = report.get("retrieval_signal") or {}
    motion = report.get("motion") or {}
    protocol = "p1" if "p1" in motion else "p2"
    moving = (motion.get(protocol) or {}).get("accuracy_moving")
    fidelity = (report.get("fidelity") or {}).get(protocol) or {}
    return [model_name(report), *[_cell((m1.get(b) or {}).get("all")) for b in bins], _last_prefill(report),
            _ecl(report.get("ecl_seconds"), report.get("ecl_lower_bound")),
            _ecl(report.get("ecl_seconds_m2"), report.get("ecl_m2_lower_bound")),
            _number(signal.get("score")), _split(report, "sink"), _split(report, "no_sink"),
            _number(report.get("restorable_fraction")),
            _number(moving) + ("" if motion.get("passes", True) else " FAIL"),
            _number(fidelity.get("sharpness_ratio")) + ("" if fidelity.get("passes", True) else " blur")
            + (" noisy" if (fidelity.get("sharpness_ratio") or 0) > NOISE_GATE else ""),
            _drift(report), _identity(report), _per_protocol(report, "resets", "per_minute"),
            _per_protocol(report, "cycles", "rate"), _number(report.get("admission_rate")), _cost(report)]


def markdown_table(reports: list[dict]) -> str:
    """One Markdown table of several eval reports (see the module docstring for the columns)."""
    bins = _bins(reports)
    head = ["model", *[f"M1 {b}" for b in bins], "M1 4-16 last seen in prefill", "ECL s", "ECL M2 s",
            "retrieval", "M1 sink", "M1 no-sink", "restorable", "motion", "sharpness",
            "drift: sharpness first / last 16 s", "identity occl. / state", "resets /min", "cycles",
            "admission", "ms / GFLOP per chunk"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_row(r, bins)) + " |" for r in reports]
    return "\n".join(lines) + "\n"
