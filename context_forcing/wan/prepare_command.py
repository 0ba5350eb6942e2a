"""`context-forcing prepare-wan-data`: videos + captions -> Wan latents and umT5 embeddings (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from context_forcing.cli_usage import UsageError, positive_float


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--videos", required=True, help="folder of <name>.mp4 videos, each with a <name>.txt caption"
    )
    parser.add_argument(
        "--wan-dir", required=True, help="a local Wan2.1 diffusers folder (vae/, text_encoder/, tokenizer/)"
    )
    parser.add_argument("--out", required=True, help="output folder (re-running resumes)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.25,
        help="clip length: 4 latent frames per second (default 5.25 = 21 latents, 81 frames)",
    )
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels (default 480)")
    parser.add_argument("--width", type=int, default=832, help="frame width in pixels (default 832)")
    parser.add_argument("--device", default="cpu", help="device of the VAE (e.g. cuda)")
    parser.add_argument("--text-device", default="cpu", help="device of umT5 (default cpu)")
    parser.add_argument("--latent-dtype", default="bf16", choices=["bf16", "fp32"], help="stored latents")


def run_prepare_command(args: argparse.Namespace) -> int:
    import math  # noqa: PLC0415

    import torch  # noqa: PLC0415

    seconds = positive_float("--seconds", args.seconds)
    latent_frames = math.ceil(seconds * 4 - 1e-9)
    if args.height <= 0 or args.width <= 0 or args.height % 16 or args.width % 16:
        raise UsageError(
            f"--height/--width: got {args.height} x {args.width}; both must be positive multiples of "
            f"16 (VAE downsampling 8 x patch 2)"
        )
    videos, wan_dir = Path(args.videos), Path(args.wan_dir)
    if not videos.is_dir():
        raise UsageError(f"--videos: {str(videos)!r} is not a folder")
    if not (wan_dir / "vae" / "config.json").is_file() or not (wan_dir / "text_encoder").is_dir():
        raise UsageError(
            f"--wan-dir: {str(wan_dir)!r} is not a Wan2.1 diffusers folder (needs vae/, "
            f"text_encoder/, tokenizer/)"
        )
    from context_forcing.wan.prepare_data import PrepareRequest, prepare_dataset  # noqa: PLC0415
    from context_forcing.wan.text_encoder import UMT5PromptEncoder  # noqa: PLC0415
    from context_forcing.wan.vae import WanVAECodec  # noqa: PLC0415

    out = Path(args.out)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.latent_dtype]
    request = PrepareRequest(videos, out, latent_frames, args.height, args.width, dtype)
    codec = WanVAECodec.from_pretrained(wan_dir, device=args.device)
    text = UMT5PromptEncoder.from_pretrained(wan_dir, device=args.text_device, cache_dir=out / "prompts")
    counts = prepare_dataset(request, codec, text)
    print(
        f"prepared {counts['prepared']} of {counts['videos']} videos into {out} "
        f"({counts['skipped']} skipped: "
        f"see {out / 'skipped.jsonl'})",
        file=sys.stderr,
    )
    return 0
