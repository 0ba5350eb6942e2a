"""`context-forcing serve`: arguments, checks before any work, then the server until Ctrl-C."""

from __future__ import annotations

import argparse
import socket
import sys

from context_forcing.cli_usage import UsageError

DEFAULT_PORT = 8765


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="panworld", help="preset (default: panworld)")
    parser.add_argument(
        "--checkpoint",
        help="checkpoint or run directory (default: the preset's shipped student; "
        "random weights with a warning when the preset ships none)",
    )
    parser.add_argument("--random-weights", action="store_true", help="serve untrained random weights")
    parser.add_argument(
        "--memory", help="memory layout (default: the checkpoint's), e.g. sink3-slow12-fast6:uniform4"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)"
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=2,
        help="live sessions at once (default 2); further pages are refused until one closes",
    )
    parser.add_argument(
        "--no-pace",
        action="store_true",
        help="generate as fast as the machine can (default: at most real time, 4 latent frames/s)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def serve_config(args: argparse.Namespace):
    """Validate every flag and load the model; UsageError naming the flag otherwise."""
    from context_forcing.codecs import build_codec
    from context_forcing.config import ConfigError
    from context_forcing.memory.layout import run_layout
    from context_forcing.model.checkpoint import CheckpointError, load_model, read_config
    from context_forcing.model.shipped import shipped_checkpoint
    from context_forcing.presets import PRESETS, get_preset
    from context_forcing.serve.app import ServeConfig

    if args.preset not in PRESETS:
        raise UsageError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    if args.checkpoint is not None and args.random_weights:
        raise UsageError("--random-weights: cannot be combined with --checkpoint")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: got {args.port}; must be in [0, 65535]")
    if args.max_sessions < 1:
        raise UsageError(f"--max-sessions: got {args.max_sessions}; must be an integer >= 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: got {args.threads}; must be an integer >= 1")
    checkpoint, label = args.checkpoint, args.checkpoint
    if checkpoint is None and not args.random_weights:
        shipped = shipped_checkpoint(args.preset)
        if shipped is None:
            print(
                f"warning: preset {args.preset!r} ships no trained model: serving random weights "
                f"(pass --checkpoint DIR for a trained one)",
                file=sys.stderr,
            )
        checkpoint = str(shipped) if shipped is not None else None
        label = f"shipped {args.preset} student" if shipped is not None else None
    run = get_preset(args.preset)
    if checkpoint is not None:
        try:
            run = read_config(checkpoint)
        except (CheckpointError, ConfigError, OSError, ValueError) as error:
            raise UsageError(f"--checkpoint: {error}") from None
        if run.preset != args.preset:
            raise UsageError(
                f"--checkpoint: {checkpoint!r} was made with preset {run.preset!r}, not --preset "
                f"{args.preset!r}"
            )
    if run.codec.kind != "pixel" or run.model.action_dim == 0:
        raise UsageError(
            f"--preset: {args.preset!r} cannot be served (it needs the pixel codec and camera actions: "
            f"a PanWorld-driven preset such as panworld or tiny)"
        )
    try:
        layout = run_layout(run, args.memory)
    except ConfigError as error:
        raise UsageError(f"--memory: {error}") from None
    _check_port(args.host, args.port)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if checkpoint is not None:
        model = load_model(checkpoint)[1].eval()
    else:
        from context_forcing.model.dit import CausalVideoDiT

        torch.manual_seed(0)
        model = CausalVideoDiT(run.model, run.text)
        for name, param in model.named_parameters():  # the zero-initialised head would show flat grey frames
            if name.endswith("head.head.weight"):
                torch.nn.init.normal_(param, std=0.02)
        model = model.eval()
    return ServeConfig(
        model=model,
        run=run,
        codec=build_codec(run.codec, run.video),
        layout=layout,
        checkpoint=label or "random weights",
        max_sessions=args.max_sessions,
        pace=not args.no_pace,
    )


def _check_port(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise UsageError(f"--host/--port: cannot bind {host}:{port}: {error.strerror or error}") from None


def run_serve(args: argparse.Namespace) -> int:
    config = serve_config(args)
    import logging

    from aiohttp import web

    from context_forcing.serve.app import build_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"serving {config.run.preset} ({config.checkpoint}, memory {config.layout.name}) on "
        f"http://{host}:{args.port}/ ; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    web.run_app(build_app(config), host=args.host, port=args.port, print=None, access_log=None)
    return 0
