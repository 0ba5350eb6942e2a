"""`context-forcing generate --preset wan2.1-1.3b ...`: text-to-video with Wan2.1 weights, streamed to an MP4.

Every flag is checked before any weight is read; frames reach the MP4 writer chunk by chunk as they decode,
so memory does not grow with the video's length. The report splits time and memory into text encoding,
denoising (steady state) and decoding.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from context_forcing.cli_usage import UsageError, check_outputs, positive_float

PRESET = "wan2.1-1.3b"
DTYPES = {"fp32": "fp32", "bf16": "official"}  # --dtype -> cast policy (wan.loader.CAST_POLICIES)


def add_wan_arguments(gen: argparse.ArgumentParser) -> None:
    """Flags of the Wan preset (ignored by the others)."""
    wan = gen.add_argument_group(f"--preset {PRESET}")
    wan.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help=f"{PRESET}: the text prompt (repeat for a batch, one video per prompt)",
    )
    wan.add_argument(
        "--wan-dir",
        metavar="DIR",
        help=f"{PRESET}: a local Wan2.1-T2V-1.3B-Diffusers folder (vae/, text_encoder/, tokenizer/, "
        f"transformer/config.json); default: --checkpoint when it is such a folder",
    )
    wan.add_argument("--device", default="cpu", help=f"{PRESET}: torch device of the DiT and VAE (e.g. cuda)")
    wan.add_argument(
        "--text-device", default="cpu", help=f"{PRESET}: device of umT5 (default cpu: offloaded)"
    )
    wan.add_argument(
        "--dtype",
        default="fp32",
        help=f"{PRESET}: fp32, or bf16 (the release's cast: bf16 weights and compute, float64 RoPE)",
    )
    wan.add_argument(
        "--lora", metavar="FILE", help=f"{PRESET}: a PEFT LoRA merged into the weights (LongLive)"
    )
    wan.add_argument("--height", type=int, help=f"{PRESET}: frame height in pixels (default 480)")
    wan.add_argument("--width", type=int, help=f"{PRESET}: frame width in pixels (default 832)")
    wan.add_argument(
        "--prompt-cache", metavar="DIR", help=f"{PRESET}: cache umT5 embeddings here (by prompt hash)"
    )


def run_wan_generate(args: argparse.Namespace) -> int:
    """Validate, load, stream, report."""
    checked = _validate(args)
    return _generate(args, **checked)


def _validate(args: argparse.Namespace) -> dict:
    import torch  # noqa: PLC0415

    from context_forcing.config import ConfigError  # noqa: PLC0415
    from context_forcing.io.files import check_writable  # noqa: PLC0415
    from context_forcing.wan.loader import detect_layout  # noqa: PLC0415
    from context_forcing.wan.pipeline import default_video, model_config_for, run_config  # noqa: PLC0415
    from context_forcing.wan.training_file import WanCheckpointError  # noqa: PLC0415

    if not args.prompt:
        raise UsageError(f"--prompt: preset {PRESET!r} is text-to-video and needs --prompt TEXT")
    if args.random_weights:
        raise UsageError(
            f"--random-weights: preset {PRESET!r} loads Wan2.1 weights (--checkpoint, --wan-dir)"
        )
    if args.checkpoint is None:
        raise UsageError(
            f"--checkpoint: preset {PRESET!r} needs the student's weights: a model.pt, a diffusers "
            f"folder or our checkpoint directory"
        )
    unsupported = [
        flag
        for flag, on in (
            ("--side-by-side", args.side_by_side),
            ("--prefill-seconds", args.prefill_seconds),
            ("--compare", getattr(args, "compare", None)),
            ("--prompts", getattr(args, "prompts", None)),  # PanWorld attribute prompts
        )
        if on
    ]
    if unsupported:
        raise UsageError(f"{unsupported[0]}: not available for preset {PRESET!r} (PanWorld only)")
    if args.batch != 1:
        raise UsageError(f"--batch: got {args.batch}; preset {PRESET!r} makes one video per --prompt")
    if args.dtype not in DTYPES:
        raise UsageError(f"--dtype: got {args.dtype!r}; allowed: {', '.join(DTYPES)}")
    for flag, device in (("--device", args.device), ("--text-device", args.text_device)):
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise UsageError(f"--{flag.lstrip('-')}: got {device!r}; e.g. cpu, cuda, cuda:1") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"{flag}: got {device!r}, but torch sees no CUDA device")
    wan_dir = Path(args.wan_dir) if args.wan_dir else Path(args.checkpoint)
    if not (wan_dir / "vae" / "config.json").is_file() or not (wan_dir / "text_encoder").is_dir():
        flag = "--wan-dir" if args.wan_dir else "--checkpoint"
        raise UsageError(
            f"{flag}: {str(wan_dir)!r} is not a Wan2.1 diffusers folder (needs vae/, text_encoder/, "
            f"tokenizer/); pass --wan-dir"
        )
    try:
        detect_layout(args.checkpoint)
        model_cfg = model_config_for(wan_dir)
    except (WanCheckpointError, ValueError, OSError) as error:
        raise UsageError(f"--checkpoint: {error}") from None
    video = default_video()
    height, width = args.height or 8 * video.latent_height, args.width or 8 * video.latent_width
    try:
        run = run_config(model_cfg, height, width, args.memory)
    except ConfigError as error:
        raise UsageError(f"{'--memory' if 'layout' in str(error) else '--height/--width'}: {error}") from None
    seconds = positive_float("--seconds", args.seconds)
    fps = positive_float("--fps", args.fps) if args.fps is not None else float(run.video.fps)
    if args.scale < 1:
        raise UsageError(f"--scale: got {args.scale}; must be an integer >= 1")
    check_outputs([("--out", args.out, ".mp4"), ("--report", args.report, ".json")], check_writable)
    opening = _opening(args.continue_video, run, args.scale, len(args.prompt), UsageError)
    return dict(
        wan_dir=wan_dir, height=height, width=width, seconds=seconds, fps=fps, run=run, opening=opening
    )


def _opening(path: str | None, run, scale: int, batch: int, usage_error: type):
    """--continue VIDEO -> the opening (B, T, H, W, 3) uint8: the video's last 1 + 4 (3m - 1) frames (the
    most that encode to whole chunks), its frames the run's size times --scale; None without the flag."""
    if path is None:
        return None
    from context_forcing.io.video import read_mp4  # noqa: PLC0415

    try:
        video = read_mp4(path)  # (T, H * scale, B * W * scale, 3): samples side by side, as written
    except Exception as error:  # noqa: BLE001  PyAV's errors: missing, unreadable, not a video
        raise usage_error(f"--continue: cannot read {path!r}: {error}") from None
    h, w = 8 * run.video.latent_height, 8 * run.video.latent_width
    if tuple(video.shape[1:3]) != (h * scale, batch * w * scale):
        raise usage_error(
            f"--continue: {path!r} has frames {tuple(video.shape[1:3])}; expected "
            f"{(h * scale, batch * w * scale)} ({batch} sample(s) of {h}x{w} at --scale {scale})"
        )
    per_latent, c = run.video.pixel_frames_per_latent, run.chunk
    chunks = ((video.shape[0] - 1) // per_latent + 1) // c
    if video.shape[0] < 1 or chunks < 1:
        raise usage_error(
            f"--continue: {path!r} has {video.shape[0]} frames; at least "
            f"{1 + per_latent * (c - 1)} are needed (one chunk)"
        )
    frames = video[video.shape[0] - (1 + per_latent * (c * chunks - 1)) :, ::scale, ::scale]
    return frames.unflatten(2, (batch, w)).permute(2, 0, 1, 3, 4).contiguous()  # (B, T, H, W, 3)


def _generate(
    args: argparse.Namespace, wan_dir: Path, height: int, width: int, seconds: float, fps: float, run, opening
) -> int:
    import time  # noqa: PLC0415

    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from context_forcing.io.files import atomic_write_json  # noqa: PLC0415
    from context_forcing.io.video import VideoWriter  # noqa: PLC0415
    from context_forcing.rollout.report import peak_rss_mb  # noqa: PLC0415
    from context_forcing.wan.pipeline import WanStreamingPipeline  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    pipe = WanStreamingPipeline.from_pretrained(
        wan_dir,
        args.checkpoint,
        device=args.device,
        cast=DTYPES[args.dtype],
        text_device=args.text_device,
        lora=args.lora,
        prompt_cache=args.prompt_cache,
    )
    load_s = time.perf_counter() - tic
    layout = run.memory.layout
    chunks = math.ceil(math.ceil(seconds * run.video.latent_frames_per_second - 1e-9) / run.chunk)
    written = 0
    with (
        VideoWriter(args.out, fps=fps, scale=args.scale, quality=args.quality) as writer,
        tqdm(total=chunks, desc="generate", unit="chunk", file=sys.stderr) as bar,
    ):
        if opening is not None:  # the continued video's opening first, as the PanWorld presets do
            writer.write(torch.cat(list(opening), dim=2))
            written += opening.shape[1]
        frames_iter = pipe.stream(
            args.prompt, seconds, args.seed, height=height, width=width, memory=layout, opening=opening
        )
        for frames, _ in frames_iter:
            writer.write(torch.cat(list(frames), dim=2))  # (t, H, B * W, 3): samples side by side
            written += frames.shape[1]
            bar.update(1)
    wall = time.perf_counter() - tic
    report = {
        "preset": PRESET,
        "checkpoint": str(args.checkpoint),
        "wan_dir": str(wan_dir),
        "prompts": args.prompt,
        "seed": args.seed,
        "memory": layout,
        "device": args.device,
        "dtype": args.dtype,
        "height": height,
        "width": width,
        "seconds_requested": seconds,
        "frames_written": written,
        "opening_frames": 0 if opening is None else opening.shape[1],
        "fps": fps,
        "load_s": load_s,
        "wall_s": wall,
        "stages": pipe.timings.summary(pipe.steady_from_chunk()),
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.report:
        atomic_write_json(args.report, report)
    print(f"wrote {written} frames ({written / fps:.2f} s) to {args.out} in {wall:.1f} s", file=sys.stderr)
    return 0
