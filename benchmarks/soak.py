"""Soak: 30 minutes of video (7200 latent frames) streamed at the panworld preset with the default memory.

A session's state must be O(1) in video length. Prints one JSON document on stdout (progress on stderr):
    .venv/bin/python benchmarks/soak.py            # = make soak; 2-4 minutes on one thread
    .venv/bin/python benchmarks/soak.py --frames 2400 --marks 240 2400   # a shorter run
At 1, 10 and 30 minutes of video it records the size of the session's state (its slot store's tensors plus
its pickled Python-side state: chunk history, per-sample memory records) and then the memory currently
allocated by live Python objects (tracemalloc, started after the model and the conditioning exist; garbage
collected first); the ratios end/start should stay <= 1.05. A peak-RSS high-water mark would hide a slow
leak, so none is reported. After the last figure, `allocated_bytes_in_type_cache_end` says how much of it
only CPython's type-attribute cache kept alive (docs/BENCHMARKS.md, soak).
Weights: the shipped PanWorld student (speed and memory do not depend on them; admission does); memory: the
preset's default `sink3-slow12-fast6:similarity0.95:bounded`.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import statistics
import sys
import time
import tracemalloc

import torch

from context_forcing.data.episodes import episode_conditioning, panworld_episodes
from context_forcing.memory.layout import run_layout
from context_forcing.memory.store import FIELDS
from context_forcing.model.checkpoint import load_model
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.shipped import shipped_checkpoint
from context_forcing.presets import get_preset
from context_forcing.rollout.report import chunk_timings
from context_forcing.rollout.session import StreamingSession

FRAMES_PER_MINUTE = 60 * 4  # 4 latent frames per second (DESIGN.md section 2)
EPISODE_SEED = 1_000_000  # the first eval-split episode


def state_bytes(session: StreamingSession) -> int:
    """Bytes of the session's state: the memory's slot-store tensors + its Python-side records, pickled."""
    store = session.memory.store
    tensors = sum(getattr(store, name).nbytes for name in FIELDS)
    python_side = pickle.dumps((session.records, session.memory.samples, session.last_events))
    return tensors + len(python_side)


def load_student(random_weights: bool) -> tuple:
    """(run, model): the shipped PanWorld student run with the preset's default memory, or random weights."""
    run = get_preset("panworld")
    shipped = shipped_checkpoint("panworld")
    if random_weights or shipped is None:
        torch.manual_seed(0)
        return run, CausalVideoDiT(run.model, run.text).eval()
    loaded, model = load_model(str(shipped))
    return loaded, model.eval()


def soak(frames: int, marks: list[int], random_weights: bool, seed: int) -> dict:
    """Stream `frames` latent frames; figures at each mark (latent frames), ratios last / first mark."""
    run, model = load_student(random_weights)
    weights = "random" if random_weights or shipped_checkpoint("panworld") is None else "shipped student"
    layout = run_layout(run, get_preset("panworld").memory.layout)  # the default memory, whatever was trained
    cond = episode_conditioning(run, panworld_episodes(run, seed, 1, frames), frames)
    tracemalloc.start()
    session = StreamingSession(model, run, cond, seed=seed, layout=layout)
    at_mark: dict[int, dict] = {}
    type_cache_bytes = 0
    tic = time.perf_counter()
    for chunk in session.stream(frames):
        done = session.frames_done
        for mark in marks:
            if mark not in at_mark and done >= mark:
                # the state first: pickling builds lasting caches on first use (copyreg's __slotnames__,
                # torch's storage-type maps, ~3 kB) that would otherwise land between the first two marks
                state = state_bytes(session)
                gc.collect()  # count live objects, not garbage that waits for the cycle collector
                allocated = tracemalloc.get_traced_memory()[0]
                if mark == marks[-1]:  # diagnosis after the last figure (nothing is measured later): the
                    # part only CPython's type-attribute cache keeps (name strings torch makes per call; docs)
                    sys._clear_type_cache()
                    gc.collect()
                    type_cache_bytes = allocated - tracemalloc.get_traced_memory()[0]
                at_mark[mark] = {"minute": round(mark / FRAMES_PER_MINUTE, 2), "latent_frames": done,
                                 "allocated_bytes": allocated,
                                 "state_bytes": state,
                                 "chunk_ms_median": round(statistics.median(session.records.last_ms), 2),
                                 "wall_s": round(time.perf_counter() - tic, 1)}
                print(f"{at_mark[mark]}", file=sys.stderr, flush=True)
    tracemalloc.stop()
    first, previous, last = at_mark[marks[0]], at_mark[marks[-2]], at_mark[marks[-1]]
    after_fill, last_ms = chunk_timings(session.records)
    stats = session.memory.stats
    return {
        "preset": run.preset,
        "memory": layout.name,
        "weights": weights,
        "threads": torch.get_num_threads(),
        "latent_frames": session.frames_done,
        "wall_s": round(time.perf_counter() - tic, 1),
        "admission_rate": round(stats.admissions / stats.candidates, 4) if stats.candidates else None,
        "marks": list(at_mark.values()),
        "allocated_ratio_end_start": round(last["allocated_bytes"] / first["allocated_bytes"], 4),
        # last / second-to-last mark (30 / 10 min): frame indices above 256 are allocated ints, those below
        # CPython's cached small ints, so state that holds frame numbers weighs more after the first minute
        "allocated_ratio_end_previous": round(last["allocated_bytes"] / previous["allocated_bytes"], 4),
        "state_bytes_ratio_end_start": round(last["state_bytes"] / first["state_bytes"], 4),
        "allocated_bytes_in_type_cache_end": type_cache_bytes,  # diagnosis; included in the ratios
        "chunk_ms_after_fill": round(after_fill, 2),
        "chunk_ms_last": round(last_ms, 2),
        "chunk_time_ratio_end_start": round(last_ms / after_fill, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30 * FRAMES_PER_MINUTE,
                        help="latent frames (7200 = 30 min)")
    minutes = [1 * FRAMES_PER_MINUTE, 10 * FRAMES_PER_MINUTE, 30 * FRAMES_PER_MINUTE]
    parser.add_argument("--marks", type=int, nargs="+", default=minutes,
                        help="latent frames at which to measure (default: 1, 10 and 30 minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=EPISODE_SEED)
    parser.add_argument("--random-weights", action="store_true",
                        help="random weights instead of the shipped student")
    args = parser.parse_args()
    marks = sorted(m for m in args.marks if m <= args.frames)
    if len(marks) < 2:
        parser.error(f"--marks: need two marks within --frames {args.frames}, got {args.marks}")
    torch.set_num_threads(args.threads)
    print(json.dumps(soak(args.frames, marks, args.random_weights, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
