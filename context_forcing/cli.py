"""`context-forcing ...`: parse, validate, build the config, call. Nothing else lives here.

Bad arguments exit with status 2 and one line on stderr naming the flag, the bad value and what is allowed,
before any work starts and without creating output files.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

from context_forcing.config import ConfigError
from context_forcing.presets import PRESETS


class UsageError(Exception):
    """A bad command-line value: printed as one line, exit status 2."""


def _positive_float(flag: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{flag}: got {value!r}; must be a finite number > 0")
    return value


def _positive_int(flag: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{flag}: got {value!r}; must be an integer >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="context-forcing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="stream a long video from a (student) checkpoint")
    gen.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    gen.add_argument("--checkpoint", help="checkpoint or run directory (default: random weights, with a warning)")
    gen.add_argument("--seconds", type=float, required=True, help="video length (4 latent frames per second)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="output .mp4 (batch samples side by side)")
    gen.add_argument("--memory", help="memory layout, e.g. sink3-slow12-fast6:similarity0.95:bounded, window-21, full")
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--fps", type=float, help="frames per second of the MP4 (default: the preset's)")
    gen.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling factor for small frames")
    gen.add_argument("--quality", default="lossless", choices=["lossless", "compatible"],
                     help="MP4 encoding: lossless RGB (exact; mpv/VLC/ffmpeg) or compatible yuv420p (browsers)")
    gen.add_argument("--report", help="write a JSON report here")
    gen.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            from context_forcing.rollout.generate import GenerateRequest, run_generate  # heavy imports: lazily

            request = _generate_request(args, GenerateRequest)
            return run_generate(request)
    except (UsageError, ConfigError) as error:
        print(f"context-forcing {args.command}: error: {error}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2


def _generate_request(args: argparse.Namespace, request_type: type):
    """Validate every generate flag before any work; return the request."""
    from context_forcing.io.files import check_writable
    from context_forcing.memory.layout import parse_layout
    from context_forcing.model.checkpoint import CheckpointError, read_config
    from context_forcing.presets import get_preset

    if args.preset not in PRESETS:
        raise UsageError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    run = get_preset(args.preset)
    if args.checkpoint is not None:
        try:
            run = read_config(args.checkpoint)
        except (CheckpointError, ConfigError, OSError, ValueError) as error:
            raise UsageError(f"--checkpoint: {error}") from None
        if run.preset != args.preset:
            raise UsageError(f"--checkpoint: {args.checkpoint!r} was made with preset {run.preset!r}, "
                             f"not --preset {args.preset!r}")
    if run.codec.kind != "pixel":
        raise UsageError(f"--preset: {args.preset!r} needs the {run.codec.kind} codec, which is not available yet; "
                         f"allowed now: presets with the pixel codec ({', '.join(p for p in PRESETS if p != 'wan2.1-1.3b')})")
    seconds = _positive_float("--seconds", args.seconds)
    try:
        layout = parse_layout(args.memory or run.memory.layout, run.chunk)
    except ConfigError as error:
        raise UsageError(f"--memory: {error}") from None
    batch = _positive_int("--batch", args.batch)
    scale = _positive_int("--scale", args.scale)
    fps = _positive_float("--fps", args.fps) if args.fps is not None else float(run.video.fps)
    if args.threads is not None:
        _positive_int("--threads", args.threads)
    if Path(args.out).suffix.lower() != ".mp4":
        raise UsageError(f"--out: got {args.out!r}; must end in .mp4")
    for flag, path in (("--out", args.out), ("--report", args.report)):
        if path is not None:
            try:
                check_writable(path)
            except ValueError as error:
                raise UsageError(f"{flag}: {error}") from None
    return request_type(run=run, checkpoint=args.checkpoint, layout=layout, seconds=seconds, seed=args.seed,
                        batch=batch, out=Path(args.out), fps=fps, scale=scale,
                        report=Path(args.report) if args.report else None, threads=args.threads,
                        quality=args.quality)
