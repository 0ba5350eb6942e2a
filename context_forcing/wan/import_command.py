"""`context-forcing import-wan --checkpoint SRC --out DIR [--wan-dir DIR]`: Wan weights -> our checkpoint."""

from __future__ import annotations

import argparse
import sys

from context_forcing.cli_usage import UsageError


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a model.pt (Self-Forcing family), a .safetensors state file, or a diffusers folder",
    )
    parser.add_argument("--out", required=True, help="our checkpoint directory to write (atomically)")
    parser.add_argument(
        "--wan-dir",
        help="a Wan2.1 diffusers folder whose transformer/config.json gives the model "
        "sizes (default: the wan2.1-1.3b preset's)",
    )
    parser.add_argument(
        "--part", default="auto", help="training files: auto | generator_ema | generator | critic"
    )
    parser.add_argument("--lora", help="a PEFT LoRA file merged into the weights (LongLive)")
    parser.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1)")


def run_import_command(args: argparse.Namespace) -> int:
    from context_forcing.wan.convert import import_wan  # noqa: PLC0415
    from context_forcing.wan.training_file import PARTS, WanCheckpointError  # noqa: PLC0415

    if args.part not in PARTS:
        raise UsageError(f"--part: got {args.part!r}; allowed: {', '.join(PARTS)}")
    try:
        out = import_wan(
            args.checkpoint,
            args.out,
            args.wan_dir,
            part=args.part,
            lora=args.lora,
            lora_alpha=args.lora_alpha,
        )
    except (WanCheckpointError, FileNotFoundError) as error:
        raise UsageError(f"--checkpoint: {error}") from None
    print(f"wrote {out}", file=sys.stderr)
    return 0
