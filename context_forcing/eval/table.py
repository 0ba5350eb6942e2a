"""Several eval reports (the JSON of `evaluate`) -> one Markdown table, one row per report.

Columns: M1 score per gap bin with its bootstrap interval, ECL from M1 and M2 (`36+` marks a lower bound), the
retrieval signal S(memory-critical) - S(new), M1 on sink-covered / other columns, the oracle's restorable
fraction, motion (accuracy on moving frames; FAIL when the check fails) and the fidelity gate (sharpness
ratio; `blur` when flagged).
"""

from __future__ import annotations

from context_forcing.eval.metrics import BIN_NAMES


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(cell: dict | None) -> str:
    if not cell or cell.get("score") is None:
        return "-"
    interval = cell.get("interval")
    spread = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return f"{cell['score']:.2f}{spread}"


def _ecl(seconds, lower_bound) -> str:
    return "-" if seconds is None else f"{seconds:.1f}" + ("+" if lower_bound else "")


def _split(report: dict, split: str) -> str:
    """M1 over every memory-critical column of one sink split."""
    m1 = (report.get("memory_critical_by_split") or {}).get("m1") or {}
    return _number((m1.get(split) or {}).get("score"))


def _row(report: dict) -> list[str]:
    m1 = (report.get("revisit_by_gap") or {}).get("m1") or {}
    signal = report.get("retrieval_signal") or {}
    motion = report.get("motion") or {}
    protocol = "p1" if "p1" in motion else "p2"
    moving = (motion.get(protocol) or {}).get("accuracy_moving")
    fidelity = (report.get("fidelity") or {}).get(protocol) or {}
    name = str(report.get("model"))
    if report.get("memory") and not name.startswith("oracle:"):
        name += f" [{report['memory']}]"
    return [name, *[_cell((m1.get(b) or {}).get("all")) for b in BIN_NAMES],
            _ecl(report.get("ecl_seconds"), report.get("ecl_lower_bound")),
            _ecl(report.get("ecl_seconds_m2"), report.get("ecl_m2_lower_bound")),
            _number(signal.get("score")), _split(report, "sink"), _split(report, "no_sink"),
            _number(report.get("restorable_fraction")),
            _number(moving) + ("" if motion.get("passes", True) else " FAIL"),
            _number(fidelity.get("sharpness_ratio")) + ("" if fidelity.get("passes", True) else " blur")]


def markdown_table(reports: list[dict]) -> str:
    """One Markdown table of several eval reports (see the module docstring for the columns)."""
    head = ["model", *[f"M1 {b}" for b in BIN_NAMES], "ECL s", "ECL M2 s", "retrieval", "M1 sink",
            "M1 no-sink", "restorable", "motion", "sharpness"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in reports]
    return "\n".join(lines) + "\n"
