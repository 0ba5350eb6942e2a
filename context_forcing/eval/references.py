"""Non-learned references computed from ground truth: `ground-truth`, `chance`, `mean-fill`, `oracle:LAYOUT`.

Each returns whole videos (padded, H, W, 3) uint8 per protocol, in the same form a model's P1 / P2 videos
take, so the same scoring runs on all of them. P1 videos start with the ground-truth prefix [0, t0).

- `ground-truth`: the episode itself (scores 1 on M1 and M2).
- `chance`: the `wrong` world of `cases` (not a normalising one): a plausible but memoryless guess (M1 ~0;
  M2 1, since a different world is self-consistent, so M2 is read beside M1, never alone).
- `mean-fill`: P1: every frame from t0 on is the per-pixel mean of the prefix; P2: every frame is the
  per-pixel mean of the whole episode. A blurry guess that squared error rewards (pitfall 3); the P2 version
  is a frozen video (M2 near 1, as the mean frame hardly varies along x; motion fails: pitfall 4).
- `oracle:LAYOUT`: perfect retrieval from that layout. The memory's own planner and admission policy
  (`memory.plan.simulate` with `memory.policy.make_decider`) run on ground-truth frames; for `similarity` the
  summary of a candidate chunk is its frames' pixels in latent units (pixel / 127.5 - 1, the pixel codec's
  latents), averaged over the chunk's frames and flattened. A frame's screen column is *restorable* when its
  world column is visible in at least one frame that frame's chunk plan attends to. As a "model" the oracle
  predicts ground truth where restorable and the `wrong` world elsewhere (in P2 also ground truth on
  columns first seen in the current chunk: any world is a valid invention, and the oracle invents the true
  one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from context_forcing.eval.cases import EvalCase
from context_forcing.eval.metrics import bin_name, measured_bins
from context_forcing.memory.layout import MemoryLayout, parse_layout
from context_forcing.memory.plan import simulate
from context_forcing.memory.policy import make_decider

REFERENCES = ("ground-truth", "chance", "mean-fill")
ORACLE_PREFIX = "oracle:"
REFERENCE_CHUNK = 3  # references plan and prefill in the chunks of PanWorld's presets


def is_reference(spec: str) -> bool:
    """Whether `spec` names a non-learned reference (rather than a checkpoint)."""
    return spec in REFERENCES or spec.startswith(ORACLE_PREFIX)


def oracle_layout(spec: str, chunk: int = REFERENCE_CHUNK) -> MemoryLayout:
    """The layout of `oracle:LAYOUT` (ConfigError naming the grammar if it does not parse)."""
    return parse_layout(spec.removeprefix(ORACLE_PREFIX), chunk)


def mean_fill_video(case: EvalCase, protocol: str) -> np.ndarray:
    """P1: the prefix, then its per-pixel mean; P2: the per-pixel mean of the episode's frames, frozen."""
    source = case.truth[:case.t0] if protocol == "p1" else case.truth[:case.frames]
    mean = np.round(source.astype(np.float64).mean(axis=0)).astype(np.uint8)  # (H, W, 3)
    video = np.broadcast_to(mean, case.truth.shape).copy()
    if protocol == "p1":
        video[:case.t0] = case.truth[:case.t0]
    return video


@dataclass(frozen=True, eq=False)
class OraclePlan:
    """What a layout's memory would hold on ground truth: restorable (padded, W) bool per screen column;
    admission_rate: share of candidates admitted to slow memory (None without admission)."""

    layout: MemoryLayout
    restorable: np.ndarray
    admission_rate: float | None


def chunk_summaries(frames: np.ndarray) -> torch.Tensor:
    """(F, H*W*3) float64 flattened frames in the pixel codec's latent units, pixel / 127.5 - 1."""
    return torch.from_numpy(frames.reshape(len(frames), -1).astype(np.float64) / 127.5 - 1.0)


def oracle_plan(case: EvalCase, layout: MemoryLayout) -> OraclePlan:
    """Run the memory's planner and admission policy on the episode's ground truth (module docstring)."""
    c, cfg = layout.chunk, case.episode.cfg
    if case.padded % c:
        raise ValueError(f"episode of {case.padded} frames is not made of whole chunks of {c}")
    flat = chunk_summaries(case.truth)
    decide, decisions = make_decider(layout.policy, lambda frames: flat[list(frames)].mean(dim=0))
    plans = simulate(layout, case.padded // c, decide)
    screen = np.arange(cfg.frame_width)
    seen = np.zeros((case.padded, cfg.world_width), dtype=bool)  # world columns each frame's plan attends to
    for k, plan in enumerate(plans):
        if plan.frames:
            columns = case.camera_x[list(plan.frames)][:, None] + screen  # (context frames, W)
            seen[k * c:(k + 1) * c, columns.ravel()] = True
    on_screen = case.camera_x[:, None] + screen  # (padded, W) world column of each screen column
    restorable = np.take_along_axis(seen, on_screen, axis=1)
    rate = float(np.mean(decisions)) if decisions else None
    return OraclePlan(layout, restorable, rate)


def oracle_video(case: EvalCase, plan: OraclePlan, protocol: str) -> np.ndarray:
    """Ground truth where restorable (P2: or first seen in the frame's own chunk),
    the `wrong` world elsewhere.

    In P2 a chunk is generated jointly, so content the oracle invents (the truth) on a chunk's first sight of
    a column stays on the chunk's later frames; those gaps are <= chunk - 1 < h, so M2 is unchanged, but
    without this the oracle's P2 flickered where the camera explores (motion, drift, resets).
    """
    shown = plan.restorable.copy()  # (padded, W)
    if protocol == "p2":
        chunk_start = np.arange(case.frames) // plan.layout.chunk * plan.layout.chunk  # (F,)
        shown[:case.frames] |= case.labels.first_seen >= chunk_start[:, None]  # new ones included
    video = np.where(shown[:, None, :, None], case.truth, case.wrong)
    if protocol == "p1":
        video[:case.t0] = case.truth[:case.t0]
    return video


def restorable_summary(cases: list[EvalCase], restorable: list[np.ndarray]) -> dict:
    """Share of memory-critical columns (all frames of all episodes, pooled) that a layout can restore
    (`OraclePlan.restorable` per case), overall and per measured gap bin."""
    bins = measured_bins(cases[0].frames)  # the eval's cases share their length
    hit = np.zeros(len(bins) + 1)
    total = np.zeros(len(bins) + 1)
    for case, mask in zip(cases, restorable):
        critical, gap, shown = case.labels.memory_critical(), case.labels.gap, mask[:case.frames]
        selections = [critical & (gap >= lo) & (gap < hi) for lo, hi in bins] + [critical]
        hit += [(shown & s).sum() for s in selections]
        total += [s.sum() for s in selections]
    share = [float(h / t) if t else None for h, t in zip(hit, total)]
    names = [bin_name(lo, hi) for lo, hi in bins]
    return {"restorable_fraction": share[-1], "restorable_by_gap": dict(zip(names, share[:-1])),
            "memory_critical_columns": int(total[-1])}


def reference_videos(spec: str, cases: list[EvalCase], protocols: tuple[str, ...]
                     ) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Videos of a reference per protocol, and extra report fields (oracles: restorable fraction,
    admission)."""
    extra: dict = {}
    if spec.startswith(ORACLE_PREFIX):
        layout = oracle_layout(spec)
        plans = [oracle_plan(case, layout) for case in cases]
        rates = [p.admission_rate for p in plans if p.admission_rate is not None]
        extra = {**restorable_summary(cases, [p.restorable for p in plans]), "memory": layout.name,
                 "admission_rate": float(np.mean(rates)) if rates else None}
        return {p: [oracle_video(c, plan, p) for c, plan in zip(cases, plans)] for p in protocols}, extra
    if spec == "ground-truth":
        return {p: [c.truth for c in cases] for p in protocols}, extra
    if spec == "chance":
        videos = {p: [c.wrong.copy() for c in cases] for p in protocols}
        for video, case in zip(videos.get("p1", []), cases):
            video[:case.t0] = case.truth[:case.t0]
        return videos, extra
    if spec == "mean-fill":
        return {p: [mean_fill_video(c, p) for c in cases] for p in protocols}, extra
    raise ValueError(f"unknown reference {spec!r}; allowed: {', '.join(REFERENCES)} or {ORACLE_PREFIX}LAYOUT")
