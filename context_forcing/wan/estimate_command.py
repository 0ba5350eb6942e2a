"""`context-forcing estimate --preset NAME [--seconds S] [--gpus N] [--batch B] [--json]`."""

from __future__ import annotations

import argparse
import json

from context_forcing.cli_usage import UsageError, positive_float, positive_int


def add_estimate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help="a preset name (e.g. wan2.1-1.3b)")
    parser.add_argument("--seconds", type=float, default=60.0, help="video length (default 60)")
    parser.add_argument(
        "--gpus", type=int, default=1, help="GPUs that FSDP2 shards training state over (default 1)"
    )
    parser.add_argument("--batch", type=int, default=1, help="videos generated together (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def run_estimate_command(args: argparse.Namespace) -> int:
    """Validate, estimate (no model is built), print."""
    from context_forcing.presets import PRESETS, get_preset  # noqa: PLC0415
    from context_forcing.wan.estimate import estimate, format_estimate  # noqa: PLC0415

    if args.preset not in PRESETS:
        raise UsageError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    seconds = positive_float("--seconds", args.seconds)
    gpus, batch = positive_int("--gpus", args.gpus), positive_int("--batch", args.batch)
    result = estimate(get_preset(args.preset), seconds, gpus, batch)
    print(json.dumps(result, indent=2) if args.json else format_estimate(result))
    return 0
