"""A short eval for a student while it trains: P1 on a few fixed eval episodes, the headline memory figures.

`probe_student` streams the live network (no checkpoint) through the same session and scoring as
`context-forcing eval`, on `episodes` eval episodes of `seconds` (default 32 s: revisit gaps up to 24-48 s),
and returns the M1 effective context length, the M1 revisit score of every gap bin with revisits, the fidelity
(sharpness) ratio and the mean absolute error of the continuation. With `free_rollout`, also P2 (the model
generates the whole episode from the first frame on, as `eval` does): its M2 effective context length and its
sharpness ratio in the first and the last segment of the rollout (the drift of a free rollout, which P1,
restarted from ground truth, does not show). It draws no training randomness.
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
                  seconds: float = 32.0, free_rollout: bool = False) -> dict[str, float]:
    """M1 figures of the live student on fixed eval episodes, and with `free_rollout` the P2 drift figures
    (module docstring); restores training mode. The P1 figures do not depend on `free_rollout`."""
    was_training = model.training
    cases = list(_cases(episodes, seconds, run.chunk))
    try:
        videos = {protocol: generate_videos(model, run, cases, protocol, layout, seed=0, batch_size=episodes,
                                            progress=False)
                  for protocol in (("p1", "p2") if free_rollout else ("p1",))}
    finally:
        model.train(was_training)
    report = score_videos(cases, videos, draws=50)
    figures = {"ecl_m1": float(report["ecl_seconds"]),
               "sharpness_ratio": float(report["fidelity"]["p1"]["sharpness_ratio"])}
    for name, groups in report["revisit_by_gap"]["m1"].items():
        score = groups["all"]["score"]
        if score is not None:
            figures[f"m1_{name}"] = float(score)
    mae = [np.abs(v[c.t0:c.frames].astype(np.float32) - c.truth[c.t0:c.frames].astype(np.float32)).mean()
           for v, c in zip(videos["p1"], cases)]
    figures["continuation_mae"] = float(np.mean(mae))
    if free_rollout:
        figures["ecl_m2"] = float(report["ecl_seconds_m2"])
        summary = report["drift_summary"]["p2"]
        if summary is not None:
            sharpness = summary["measures"]["sharpness_ratio"]
            figures["p2_sharpness_first"] = float(sharpness["first"])
            figures["p2_sharpness_last"] = float(sharpness["last"])
    return figures
