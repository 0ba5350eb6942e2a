"""`evaluate`: PanWorld memory metrics of a model checkpoint or a non-learned reference (benchmarks.md).

Steps: (1) resolve the spec, protocols and eval seeds; (2) sample the eval episodes with their chance worlds;
(3) produce P1 / P2 videos (a model through a streaming session, or a reference from ground truth);
(4) score them (`scoring.score_videos`); (5) add what only some specs have (oracles' restorable fraction);
(6) write plots.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from context_forcing.data.panworld import SEED_RANGES, PanWorldConfig
from context_forcing.eval.cases import eval_frames, make_cases, prefix_frames
from context_forcing.eval.metrics import FRAMES_PER_SECOND
from context_forcing.eval.references import REFERENCE_CHUNK, REFERENCES, is_reference, reference_videos
from context_forcing.eval.scoring import BOOTSTRAP_DRAWS, score_videos

if TYPE_CHECKING:
    from context_forcing.config import RunConfig
    from context_forcing.memory.layout import MemoryLayout
    from context_forcing.model.dit import CausalVideoDiT

PROTOCOLS = ("p1", "p2", "both")
__all__ = ["PROTOCOLS", "REFERENCES", "LoadedModel", "check_seed_start", "evaluate", "load_for_eval",
           "resolve_seed_range"]


def resolve_seed_range(episodes: int, seed_range: int | tuple[int, int] | None) -> tuple[int, int]:
    """[start, stop) of the eval seeds: None -> from the eval split's first seed; an int -> from it; a pair
    must hold exactly `episodes` seeds. ValueError unless every seed lies in the eval split."""
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
    lo, hi = SEED_RANGES["eval"]
    if seed_range is None:
        seed_range = lo
    if isinstance(seed_range, int):
        start, stop = seed_range, seed_range + episodes
    else:
        start, stop = (int(s) for s in seed_range)
        if stop - start != episodes:
            raise ValueError(f"seed_range {[start, stop]} holds {stop - start} seeds for {episodes} episodes")
    if not (lo <= start and stop <= hi):
        raise ValueError(f"eval seeds must lie in [{lo}, {hi}), got [{start}, {stop})")
    return start, stop


def check_seed_start(seed_start: int, episodes: int) -> None:
    """ValueError unless seeds seed_start .. seed_start + episodes - 1 are all eval seeds."""
    resolve_seed_range(episodes, seed_start)


def _protocols(protocol: str) -> tuple[str, ...]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return ("p1", "p2") if protocol == "both" else (protocol,)


def evaluate(spec: str, episodes: int, seconds: float, memory: str | None = None, protocol: str = "both",
             seed_range: int | tuple[int, int] | None = None, plots_dir: str | Path | None = None,
             progress: bool = True, *, world: PanWorldConfig | None = None, seed: int = 0,
             batch_size: int = 8, bootstrap_draws: int = BOOTSTRAP_DRAWS) -> dict:
    """PanWorld metrics of `spec` on `episodes` eval episodes of `seconds` each: the report, a JSON dict.

    spec: a checkpoint or run directory, `ground-truth`, `chance`, `mean-fill` or `oracle:LAYOUT` (see
    `references`); memory: a layout name overriding a checkpoint's (models only); protocol: p1 | p2 | both;
    seed_range: the first eval seed, or [start, stop) holding `episodes` seeds (default: the eval split's
    first seeds); plots_dir: where to write PNGs (see `plots.write_plots`); world: PanWorld settings (None:
    the benchmark's default world); seed: the model's noise seed; batch_size: episodes per streaming session.
    The library sets no torch threads: on a shared CPU one thread is often much faster (oversubscription).

    Report keys: model, memory, protocol, episodes, seed_range, seconds, frames, t0_seconds, world (settings
    that differ from the default); ecl_seconds / ecl_lower_bound (M1) and ecl_seconds_m2 / ecl_m2_lower_bound
    (None for a protocol not run); ecl_by_split; revisit_by_gap {m1, m2} -> bin (those the episode length
    measures whole: 192-384 frames from 96 s on) -> {all, sink, no_sink} -> {score, interval, pixels[,
    mean_fill]}; m1_memory_critical, m1_new, m1_by_last_visit (bin -> {prefill, rollout}: where the column
    was last visible), m2_memory_critical, memory_critical_by_split; retrieval_signal;
    per protocol: fidelity, identity, motion (+ passes), drift, drift_summary (first vs last 16 s), resets,
    cycles; drift_within_interval (P2's); bootstrap; oracles: restorable_fraction, restorable_by_gap,
    admission_rate; models: preset, noise_seed, admission_rate (admitted / candidates over every session,
    prefill included; None without admission), admissions, candidates, cost_per_chunk {chunks, batch,
    ms_median (a generated chunk of a whole batch), ms_per_episode_median, flops (per sample, analytic),
    attended_frames}; wall_seconds.
    """
    tic = time.perf_counter()
    # 1. what to run
    protocols = _protocols(protocol)
    start, stop = resolve_seed_range(episodes, seed_range)
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    world = world or PanWorldConfig()
    loaded = None
    if is_reference(spec):
        if memory is not None:
            raise ValueError(f"memory is only for a model checkpoint, not {spec!r} (an oracle names its own)")
        chunk = REFERENCE_CHUNK
    else:
        loaded = load_for_eval(spec, memory, world)
        chunk = loaded.run.chunk
    # 2. episodes, 3. videos
    cases = make_cases(range(start, stop), seconds, chunk, world)
    if loaded is None:
        videos, extra = reference_videos(spec, cases, protocols)
    else:
        from context_forcing.eval.protocols import StreamCost

        cost = StreamCost()
        videos = {p: loaded.generate(cases, p, seed, batch_size, progress, cost) for p in protocols}
        extra = {"memory": loaded.layout.name, "preset": loaded.run.preset, "noise_seed": seed,
                 **cost.summary()}
    # 4. scores, 5. spec-specific fields
    frames = eval_frames(seconds)
    report = {"model": spec, "memory": extra.pop("memory", None), "protocol": protocol, "episodes": episodes,
              "seed_range": [start, stop], "seconds": frames / FRAMES_PER_SECOND, "frames": frames,
              "t0_seconds": prefix_frames(frames, chunk) / FRAMES_PER_SECOND,
              "world": _world_overrides(world)}
    report.update(score_videos(cases, videos, bootstrap_draws))
    report.update(extra)
    report["wall_seconds"] = time.perf_counter() - tic
    # 6. plots
    if plots_dir is not None:
        from context_forcing.eval.plots import write_plots

        write_plots(report, cases, videos, plots_dir)
    return report


def _world_overrides(world: PanWorldConfig) -> dict:
    """PanWorld settings that differ from the default world (empty for the benchmark's default)."""
    default = PanWorldConfig()
    return {f.name: getattr(world, f.name) for f in dataclasses.fields(world)
            if getattr(world, f.name) != getattr(default, f.name)}


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A checkpoint ready to generate eval videos with `layout` (its own or the `memory` override)."""

    run: RunConfig
    model: CausalVideoDiT
    layout: MemoryLayout

    def generate(self, cases, protocol: str, seed: int, batch_size: int, progress: bool, cost=None) -> list:
        from context_forcing.eval.protocols import generate_videos

        return generate_videos(self.model, self.run, cases, protocol, self.layout, seed, batch_size,
                               progress, cost)


def load_for_eval(spec: str, memory: str | None, world: PanWorldConfig) -> LoadedModel:
    """Load a checkpoint or run directory; ConfigError unless it makes PanWorld frames and `memory` parses."""
    from context_forcing.eval.protocols import check_eval_run
    from context_forcing.memory.layout import run_layout
    from context_forcing.model.checkpoint import load_model

    run, model = load_model(spec)
    check_eval_run(run, world)
    layout = run_layout(run, memory)
    return LoadedModel(run, model, layout)
