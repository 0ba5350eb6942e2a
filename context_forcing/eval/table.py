"""Several eval reports -> one Markdown table."""

from __future__ import annotations

from context_forcing.eval.scores import GAP_BINS, bin_name


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(reports: list[dict]) -> str:
    """One row per report: M1 per gap bin, ECL (M1, M2), retrieval signal, restorable fraction, motion, gate."""
    bins = [bin_name(a, b) for a, b in GAP_BINS]
    head = ["model", *[f"M1 {b}" for b in bins], "ECL s", "ECL M2 s", "retrieval", "restorable", "motion",
            "sharpness"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        m1 = [_fmt(r.get("revisit_by_gap", {}).get(b, {}).get("all", {}).get("score")) for b in bins]
        ecl = _fmt(r.get("ecl_seconds"), 1) + ("+" if r.get("ecl_lower_bound") else "")
        ecl2 = _fmt(r.get("ecl_seconds_m2"), 1) + ("+" if r.get("ecl_m2_lower_bound") else "")
        motion = r.get("motion", {}).get("accuracy_moving")
        fidelity = r.get("fidelity", {})
        gate = _fmt(fidelity.get("sharpness_ratio")) + ("" if fidelity.get("passes", True) else " (blurry)")
        cells = [str(r.get("model")), *m1, ecl, ecl2, _fmt(r.get("retrieval_signal")),
                 _fmt(r.get("restorable_fraction")), _fmt(motion), gate]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
