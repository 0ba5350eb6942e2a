"""Scripted runs of `generate`: timed prompt switches (`--prompts FILE`) and continuation of a video
(`--continue`).

A prompts file is JSON: a list of switches, each `{"at": SECONDS, "prompt": {ATTRIBUTE: VALUE, ...},
"policy": "keep" | "recache" | "flush"}` (policy optional, default `keep`). PanWorld prompts are its four
attributes (`palette`, `shape`, `colour`, `density`; `context_forcing.rollout.live.attribute_sizes` gives
their ranges). `at` counts seconds of the output video (a prefilled or continued opening included); a switch
takes effect at the first chunk that starts at or after it (chunks are 0.75 s), and switches inside the
opening take effect when generation starts. Every value is checked, naming the entry and field,
before any work.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from context_forcing.config import RunConfig
from context_forcing.data.episodes import area_downsample
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.io.video import read_mp4
from context_forcing.rollout.live import prompt_ids
from context_forcing.rollout.prompt_switch import POLICIES
from context_forcing.rollout.session import StreamingSession

MAX_SWITCHES = 10_000
ENTRY_FIELDS = {"at", "prompt", "policy"}


@dataclass(frozen=True)
class PromptSwitch:
    """A switch at latent frame `frame` to prompt ids (1, P) with a memory policy."""

    frame: int
    prompt: Tensor
    policy: str
    at: float  # the requested time in seconds (for reports)


def parse_prompt_script(
    entries: object, run: RunConfig, video_frames: int, world: PanWorldConfig | None = None
) -> list[PromptSwitch]:
    """Validate the decoded JSON of a prompts file against a video of `video_frames` latent frames."""
    world = world or PanWorldConfig()
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            'must be a non-empty JSON list of switches {"at": seconds, "prompt": {...}, "policy": ...}'
        )
    if len(entries) > MAX_SWITCHES:
        raise ValueError(f"holds {len(entries)} switches; at most {MAX_SWITCHES}")
    fps, length = run.video.latent_frames_per_second, video_frames / run.video.latent_frames_per_second
    switches: list[PromptSwitch] = []
    for i, entry in enumerate(entries):
        where = f"switch {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object with fields at, prompt, policy; got {entry!r}")
        unknown = sorted(set(entry) - ENTRY_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: at, prompt, policy")
        at = entry.get("at")
        if (
            isinstance(at, bool)
            or not isinstance(at, (int, float))
            or not math.isfinite(at)
            or not 0 <= at < length
        ):
            raise ValueError(
                f"{where}: at must be a number of seconds in [0, {length:g}) (the video's length), got {at!r}"
            )
        if switches and at < switches[-1].at:
            raise ValueError(
                f"{where}: at {at!r} is earlier than switch {i - 1}'s {switches[-1].at!r}; list "
                f"switches in time order"
            )
        policy = entry.get("policy", "keep")
        if policy not in POLICIES:
            raise ValueError(f"{where}: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        prompt = entry.get("prompt")
        if not isinstance(prompt, dict):
            raise ValueError(f"{where}: prompt must be an object of PanWorld attributes, got {prompt!r}")
        try:
            ids = prompt_ids(world, prompt, run.text.prompt_len)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        frame = math.ceil(at * fps - 1e-9)
        chunk_start = -(-frame // run.chunk) * run.chunk  # the first chunk starting at or after `at`
        switches.append(PromptSwitch(chunk_start, ids, policy, float(at)))
    return switches


def load_prompt_script(path: str | Path, run: RunConfig, video_frames: int) -> list[PromptSwitch]:
    """Read and validate a prompts file; ValueError naming the file and the bad value."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {str(path)!r}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not JSON: {error}") from None
    try:
        return parse_prompt_script(entries, run, video_frames)
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}") from None


def apply_due_switches(session: StreamingSession, switches: list[PromptSwitch], done: int) -> int:
    """Apply `switches[done:]` that are due at the session's next chunk; returns the new count done."""
    while done < len(switches) and switches[done].frame <= session.frames_done:
        switch = switches[done]
        session.switch_prompt(switch.prompt.expand(session.batch, -1).clone(), policy=switch.policy)
        done += 1
    return done


def continuation_frames(path: str | Path, run: RunConfig) -> tuple[Tensor, int]:
    """A video's frames at the run's latent size for `--continue`: ((F, h, w, 3) uint8 with F whole chunks,
    frames dropped from its start). The frames may be an integer multiple of the latent size
    (e.g. written with `--scale`), and are area-downsampled;
    ValueError naming the file and the problem otherwise."""
    try:
        pixels = read_mp4(path)  # (T, H, W, 3)
    except IndexError:
        raise ValueError(f"cannot read {str(path)!r} as a video: it holds no video stream") from None
    except Exception as error:  # PyAV raises its own error types for missing or broken files
        raise ValueError(f"cannot read {str(path)!r} as a video: {error}") from None
    h, w = run.video.latent_height, run.video.latent_width
    t, height, width = pixels.shape[:3]
    if run.video.pixel_frames_per_latent != 1:
        raise ValueError(
            f"continuation needs a codec with one pixel frame per latent frame; preset {run.preset!r} "
            f"has {run.video.pixel_frames_per_latent}"
        )
    if height % h or width % w or height // h != width // w:
        raise ValueError(
            f"{str(path)!r} has {height}x{width} frames; they must be {h}x{w} times one integer scale "
            f"(a video of this preset, e.g. written with --scale, one sample wide)"
        )
    whole = t // run.chunk * run.chunk
    if whole == 0:
        raise ValueError(f"{str(path)!r} has {t} frames; continuation needs at least one chunk ({run.chunk})")
    frames = pixels[t - whole :].permute(0, 3, 1, 2).float()  # the last whole chunks: the clip's end leads on
    small = area_downsample(frames, h, w).permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8)
    return small, t - whole
