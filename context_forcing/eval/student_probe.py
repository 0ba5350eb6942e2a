"""A short eval for a student while it trains: P1 on a few fixed eval episodes, the headline memory figures.

`probe_student` streams the live network (no checkpoint) through the same session and scoring as
`context-forcing eval`, on `episodes` eval episodes of `seconds` (default 32 s: revisit gaps up to 24-48 s),
and returns the M1 effective context length, the M1 revisit score of every gap bin with revisits, the fidelity
(sharpness) ratio and the mean absolute error of the continuation. It draws no training randomness.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from context_forcing.config import RunConfig
from context_forcing.eval.cases import EvalCase, make_cases
from context_forcing.eval.protocols import generate_videos
from context_forcing.eval.scoring import score_videos
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT

EVAL_SEED = 1_000_000


@lru_cache(maxsize=2)
def _cases(episodes: int, seconds: float, chunk: int) -> tuple[EvalCase, ...]:
    return tuple(make_cases(range(EVAL_SEED, EVAL_SEED + episodes), seconds, chunk))


def probe_student(model: CausalVideoDiT, run: RunConfig, layout: MemoryLayout, episodes: int = 4,
                  seconds: float = 32.0) -> dict[str, float]:
    """M1 figures of the live student on fixed eval episodes (module docstring); restores training mode."""
    was_training = model.training
    cases = list(_cases(episodes, seconds, run.chunk))
    try:
        videos = generate_videos(model, run, cases, "p1", layout, seed=0, batch_size=episodes, progress=False)
    finally:
        model.train(was_training)
    report = score_videos(cases, {"p1": videos}, draws=50)
    figures = {"ecl_m1": float(report["ecl_seconds"]),
               "sharpness_ratio": float(report["fidelity"]["p1"]["sharpness_ratio"])}
    for name, groups in report["revisit_by_gap"]["m1"].items():
        score = groups["all"]["score"]
        if score is not None:
            figures[f"m1_{name}"] = float(score)
    mae = [np.abs(v[c.t0:c.frames].astype(np.float32) - c.truth[c.t0:c.frames].astype(np.float32)).mean()
           for v, c in zip(videos, cases)]
    figures["continuation_mae"] = float(np.mean(mae))
    return figures
