"""Eval plots as PNG (matplotlib, Agg backend): revisit score vs gap (one line per report), drift over time,
and a filmstrip of generated vs ground-truth frames at the longest revisits. Files are written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from context_forcing.eval.metrics import BIN_NAMES, GAP_BINS, bin_centre_seconds
from context_forcing.io.files import atomic_write

FILMSTRIP_FRAMES = 8
FILMSTRIP_SCALE = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _label(report: dict) -> str:
    from context_forcing.eval.table import model_name

    return model_name(report)


def _revisit_line(ax, report: dict, metric: str) -> None:
    table = (report.get("revisit_by_gap") or {}).get(metric)
    if not table:
        return
    xs, ys, below, above = [0.0], [1.0], [0.0], [0.0]  # the curve starts at (0 s, 1.0), as ECL's does
    for (lo, hi), name in zip(GAP_BINS, BIN_NAMES):
        cell = (table.get(name) or {}).get("all")  # reports hold the bins their episode length measures
        if not cell or cell["score"] is None:
            continue
        interval = cell["interval"] or [cell["score"], cell["score"]]
        xs.append(bin_centre_seconds(lo, hi))
        ys.append(cell["score"])
        below.append(max(cell["score"] - interval[0], 0.0))
        above.append(max(interval[1] - cell["score"], 0.0))
    # oracles: dashed, the ceilings of their memories
    ceiling = str(report.get("model")).startswith("oracle:")
    ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=_label(report),
                linestyle="--" if ceiling else "-", alpha=0.6 if ceiling else 1.0)


def plot_revisits(results: list[dict], path: str | Path) -> None:
    """Revisit score S = 1 - E/E_chance vs gap (bin centres, s) with bootstrap intervals, one line per result;
    M1 (vs ground truth) on the left, M2 (vs the model's own first visit) on the right."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, metric, title in zip(axes, ("m1", "m2"), ("M1: P1 revisits vs ground truth",
                                                      "M2: P2 revisits vs own first visit")):
        for report in results:
            _revisit_line(ax, report, metric)
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # the ECL threshold
        ax.axhline(0.0, color="grey", linewidth=0.5)  # chance
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("gap since last seen (s)")
    axes[0].set_ylabel("revisit score (1 = truth, 0 = chance)")
    labelled = axes[1] if axes[1].get_legend_handles_labels()[0] else axes[0]  # P1 only: no M2 lines
    labelled.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: lines stay visible
    _save(fig, path)


def plot_drift(results: list[dict], path: str | Path, protocol: str = "p1") -> None:
    """Per-window MAE to ground truth and sharpness ratio over time, one line per result."""
    plt = _pyplot()
    fig, (mae, sharp) = plt.subplots(1, 2, figsize=(12, 3.5))
    for report in results:
        rows = (report.get("drift") or {}).get(protocol) or []
        t = [(r["start_seconds"] + r["stop_seconds"]) / 2 for r in rows]
        mae.plot(t, [r["mae"] for r in rows], marker=".", label=_label(report))
        sharp.plot(t, [r["sharpness_ratio"] for r in rows], marker=".", label=_label(report))
    mae.set_ylabel("mean |generated - true| (0-255)")
    sharp.set_ylabel("sharpness generated / true")
    sharp.axhline(1.0, color="grey", linewidth=0.5)
    for ax in (mae, sharp):
        ax.set_xlabel(f"time (s), {protocol.upper()}")
    sharp.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)


def filmstrip(truth: np.ndarray, generated: np.ndarray, frames: list[int],
              scale: int = FILMSTRIP_SCALE) -> np.ndarray:
    """(H', W', 3) uint8: ground truth (top row) above generated frames (bottom row) at `frames`, upscaled."""

    def pad(frame: np.ndarray) -> np.ndarray:  # a white border between frames
        return np.pad(frame, ((1, 1), (1, 1), (0, 0)), constant_values=255)

    top = np.concatenate([pad(truth[i]) for i in frames], axis=1)
    bottom = np.concatenate([pad(generated[i]) for i in frames], axis=1)
    return np.concatenate([top, bottom]).repeat(scale, axis=0).repeat(scale, axis=1)


def revisit_frames(gap: np.ndarray, start: int, count: int = FILMSTRIP_FRAMES) -> list[int]:
    """Up to `count` frames >= start with the longest revisit gaps (gap (F, W)), in time order."""
    longest = gap[start:].max(axis=1)
    picked = np.argsort(-longest, kind="stable")[:count] + start
    return sorted(int(t) for t in picked if longest[t - start] > 0)


def write_filmstrip(truth: np.ndarray, generated: np.ndarray, frames: list[int], path: str | Path) -> None:
    plt = _pyplot()
    with atomic_write(path) as tmp:
        plt.imsave(tmp, filmstrip(truth, generated, frames), format="png")


def write_plots(report: dict, cases: list, videos: dict[str, list[np.ndarray]],
                directory: str | Path) -> list[Path]:
    """revisits.png, drift.png and filmstrip.png (first episode: P1 if run, else P2) in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "revisits.png", directory / "drift.png"]
    plot_revisits([report], written[0])
    plot_drift([report], written[1], "p1" if "p1" in videos else "p2")
    protocol = "p1" if "p1" in videos else "p2"
    case = cases[0]
    frames = revisit_frames(case.labels.gap, case.t0 if protocol == "p1" else 0)
    if frames:
        written.append(directory / "filmstrip.png")
        write_filmstrip(case.truth, videos[protocol][0], frames, written[-1])
    return written
