"""Training curves as a PNG: chosen metrics of one or more run directories' `metrics.jsonl`, one panel per
metric, one line per run (`context-forcing curves RUN_DIR ... --keys loss,probe_gap_closed --out FILE.png`).

Per-update metrics are smoothed with a moving mean over `window` updates; probe metrics (logged every few
hundred updates) are drawn as points joined by lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from context_forcing.config import ConfigError
from context_forcing.training.run_dir import METRICS_FILE


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (ConfigError when the run has none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {METRICS_FILE} (not a run directory?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows that hold `key`."""
    picked = [(r["step"], r[key]) for r in rows if key in r]
    if not picked:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*picked)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (the first ones over what exists)."""
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def plot_curves(run_dirs: list[str], keys: list[str], out: str | Path, window: int = 50,
                labels: list[str] | None = None) -> Path:
    """Write the PNG; each run's steps are offset so that runs given in order read as one chain when
    `labels` name stages (no offset otherwise)."""
    from context_forcing.eval.plots import _pyplot, _save

    runs = [read_metrics(d) for d in run_dirs]
    missing = [k for k in keys if not any(series(rows, k)[0].size for rows in runs)]
    if missing:
        raise ConfigError(f"--keys: no run logs {missing}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run_dir, rows, label in zip(run_dirs, runs, labels or run_dirs):
            steps, values = series(rows, key)
            if not steps.size:
                continue
            sparse = key.startswith("probe_")
            ax.plot(steps, values if sparse else moving_mean(values, window), marker="o" if sparse else None,
                    markersize=3, linewidth=1, label=Path(label).name if labels is None else label)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    _save(fig, out)
    plt.close(fig)
    return Path(out)
