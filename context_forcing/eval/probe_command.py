"""The `probe-teacher` command: `add_probe_arguments(parser)` declares the flags, `run_probe_command(args)`
validates them before any work, probes the teacher checkpoint (eval/teacher_probe.py) and writes the report.

    context-forcing probe-teacher CHECKPOINT [--episodes 16] [--history 90] [--sample-steps 20] [--levels 0.1]
                                  [--context 3,12,6] [--guidance G] [--report R.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from context_forcing.config import ConfigError


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="teacher checkpoint or run directory")
    parser.add_argument("--episodes", type=int, default=16, help="eval episodes (default 16)")
    parser.add_argument("--history", type=int, default=90,
                        help="frames before the one-chunk target (default 90; whole chunks)")
    parser.add_argument("--context", default="3,12,6", metavar="SINK,SLOW,FAST",
                        help="context frames before the target: sink (the first frames), slow (one per 6 "
                             "frames back from fast), fast (the last frames); default 3,12,6 "
                             "(memory-shaped); 3,0,18 is a sink + window")
    parser.add_argument("--sample-steps", type=int, default=20,
                        help="Euler steps of the teacher's own samples for the sharpness ratio (0: skip)")
    parser.add_argument("--guidance", type=float,
                        help="CFG weight of the teacher's own samples (default: the checkpoint's sampler "
                             "guidance; 1 = no guidance)")
    parser.add_argument("--levels", default="0.1",
                        help="comma-separated low noise levels s in (0, 1) at which to report x0_error_s<s> "
                             "next to input_error_s<s> (default 0.1)")
    parser.add_argument("--report",
                        help="JSON report to write (atomically); the figures are printed either way")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def run_probe_command(args: argparse.Namespace) -> int:
    from context_forcing.io.files import atomic_write_json, check_writable
    from context_forcing.model.checkpoint import CheckpointError, read_config

    if args.episodes < 1:
        raise ConfigError(f"--episodes: got {args.episodes!r}; must be an integer >= 1")
    if args.sample_steps < 0:
        raise ConfigError(f"--sample-steps: got {args.sample_steps!r}; must be an integer >= 0")
    try:
        levels = tuple(float(x) for x in args.levels.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--levels: got {args.levels!r}; "
                          f"must be comma-separated numbers in (0, 1)") from None
    if not all(0 < level < 1 for level in levels):
        raise ConfigError(f"--levels: got {args.levels!r}; every level must lie in (0, 1)")
    shape = _context_shape(args.context)
    if args.guidance is not None and not args.guidance >= 0:
        raise ConfigError(f"--guidance: got {args.guidance!r}; "
                          f"must be a number >= 0 (1 = no guidance, 0 = unconditional)")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: got {args.threads!r}; must be an integer >= 1")
    if args.report is not None:
        if not args.report.endswith(".json"):
            raise ConfigError(f"--report: got {args.report!r}; must be a file name ending in .json")
        try:
            check_writable(args.report)
        except ValueError as error:
            raise ConfigError(f"--report: {error}") from None
    try:
        run = read_config(args.checkpoint)
    except (CheckpointError, OSError, ValueError) as error:
        raise ConfigError(f"CHECKPOINT: {error}") from None
    import torch

    from context_forcing.eval.teacher_probe import build_probe_set, probe_teacher
    from context_forcing.model.checkpoint import load_model, resolve_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    probe = build_probe_set(run, args.episodes, args.history, shape=shape)  # validates geometry and history
    start = time.time()
    _, model = load_model(args.checkpoint)
    figures = probe_teacher(model, run, probe, sample_steps=args.sample_steps, guidance=args.guidance,
                            levels=levels)
    report = {"checkpoint": str(resolve_checkpoint(args.checkpoint)), "episodes": args.episodes,
              "history": args.history, "context": dict(zip(("sink", "slow", "fast"), shape)),
              "sample_steps": args.sample_steps,
              "guidance": run.sampler.guidance if args.guidance is None else args.guidance, **figures,
              "wall_s": time.time() - start}
    if args.report:
        atomic_write_json(args.report, report)
    print(json.dumps(report, indent=2))
    if args.report:
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


def _context_shape(text: str) -> tuple[int, int, int]:
    """--context SINK,SLOW,FAST as three integers >= 0, at least one frame."""
    parts = text.split(",")
    try:
        shape = tuple(int(x) for x in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 0 or sum(shape) == 0:
        raise ConfigError(f"--context: got {text!r}; must be SINK,SLOW,FAST: three integers >= 0, "
                          f"not all 0 (e.g. 3,12,6 or 3,0,18)")
    return shape  # type: ignore[return-value]
