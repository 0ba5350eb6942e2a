"""The scripted-run flags of `context-forcing generate`: `--prompts FILE` and `--continue VIDEO`
(parse and check; the work is in `rollout/scripted.py`)."""

from __future__ import annotations

import argparse
import math
import sys

from context_forcing.cli_usage import UsageError


def add_scripted_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument(
        "--prompts",
        metavar="FILE",
        help='timed prompt switches, JSON: [{"at": SECONDS, "prompt": {"palette": 0, "shape": 1, '
        '"colour": 2, "density": 0}, "policy": "keep|recache|flush"}, ...] (docs/SERVE.md)',
    )
    gen.add_argument(
        "--continue",
        dest="continue_video",
        metavar="VIDEO",
        help="continue this MP4 (a video of the preset's frame size times an integer --scale): its "
        "frames (whole chunks, the last ones) are encoded by the codec into the memory, then "
        "--seconds more are generated; the output shows both",
    )


def scripted_inputs(args: argparse.Namespace, run, prefill: int, seconds: float):
    """(prefill frames, opening pixels or None, prompt switches) from --continue and --prompts; UsageError
    naming the flag and the bad value."""
    opening = None
    if args.continue_video is not None:
        if prefill:
            raise UsageError("--continue: cannot be combined with --prefill-seconds (both give the opening)")
        from context_forcing.rollout.scripted import continuation_frames

        try:
            opening, dropped = continuation_frames(args.continue_video, run)
        except ValueError as error:
            raise UsageError(f"--continue: {error}") from None
        prefill = opening.shape[0]
        if dropped:
            print(
                f"note: --continue: the first {dropped} frame(s) of {args.continue_video} "
                f"are not whole chunks and are left out",
                file=sys.stderr,
            )
    prompts: tuple = ()
    if args.prompts is not None:
        from context_forcing.rollout.scripted import load_prompt_script

        frames = prefill + max(1, math.ceil(seconds * run.video.latent_frames_per_second - 1e-9))
        try:
            prompts = tuple(load_prompt_script(args.prompts, run, frames))
        except ValueError as error:
            raise UsageError(f"--prompts: {error}") from None
    return prefill, opening, prompts
