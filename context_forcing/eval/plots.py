"""Eval plots (PNG, matplotlib Agg): revisit score vs gap, drift over time, a filmstrip at revisits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from context_forcing.eval.scores import GAP_BINS, bin_centre_seconds, bin_name
from context_forcing.io.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_revisits(reports: list[dict], path: str | Path, key: str = "revisit_by_gap") -> None:
    """Revisit score (chance-normalised) per gap bin, one line per report, with bootstrap intervals."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for report in reports:
        table = report.get(key)
        if not table:
            continue
        xs, ys, lo, hi = [], [], [], []
        for a, b in GAP_BINS:
            cell = table[bin_name(a, b)]["all"]
            if cell["score"] is None:
                continue
            xs.append(bin_centre_seconds(a, b))
            ys.append(cell["score"])
            interval = cell["interval"] or (cell["score"], cell["score"])
            lo.append(cell["score"] - interval[0])
            hi.append(interval[1] - cell["score"])
        ax.errorbar([0.0] + xs, [1.0] + ys, yerr=[[0] + lo, [0] + hi], marker="o", capsize=3,
                    label=str(report.get("model")))
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("gap since last seen (s)")
    ax.set_ylabel("revisit score S = 1 - E/E_chance")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_drift(report: dict, path: str | Path) -> None:
    """Per-window distance of generated to true frames over time."""
    plt = _pyplot()
    rows = report.get("drift") or []
    fig, ax = plt.subplots(figsize=(6, 3))
    t = [r["start_seconds"] for r in rows]
    for key in ("mae", "colour", "sharpness"):
        ax.plot(t, [r[key] for r in rows], marker=".", label=key)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("distance (0-255)")
    ax.legend(fontsize=7)
    _save(fig, path)


def filmstrip(truth: np.ndarray, generated: np.ndarray, frames: list[int], scale: int = 4) -> np.ndarray:
    """Rows of true (top) and generated (bottom) frames at the given indices, upscaled: (H', W', 3) uint8."""
    pad = lambda f: np.pad(f, ((1, 1), (1, 1), (0, 0)), constant_values=255)  # noqa: E731
    top = np.concatenate([pad(truth[i]) for i in frames], axis=1)
    bottom = np.concatenate([pad(generated[i]) for i in frames], axis=1)
    return np.concatenate([top, bottom]).repeat(scale, 0).repeat(scale, 1)


def write_plots(report: dict, cases: list, p1_videos: list | None, directory: str | Path) -> None:
    """revisits.png, drift.png and filmstrip.png (first episode, frames with the longest revisit gaps)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plot_revisits([report], directory / "revisits.png")
    if "revisit_by_gap_m2" in report:
        plot_revisits([report], directory / "revisits_m2.png", key="revisit_by_gap_m2")
    if report.get("drift"):
        plot_drift(report, directory / "drift.png")
    if p1_videos and p1_videos[0] is not None:
        case = cases[0]
        gaps = case.labels.gap[case.t0:].max(axis=1)  # per generated frame: its longest revisit gap
        picked = sorted(np.argsort(-gaps, kind="stable")[:8].tolist())
        strip = filmstrip(case.truth[case.t0:], p1_videos[0], picked)
        _save_image(strip, directory / "filmstrip.png")


def _save(fig, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _save_image(image: np.ndarray, path: str | Path) -> None:
    plt = _pyplot()
    with atomic_write(path) as tmp:
        plt.imsave(tmp, image)
