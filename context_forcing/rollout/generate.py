"""`context-forcing generate`: stream a batch of long videos into one MP4 and an optional JSON report."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from context_forcing.codecs import build_codec
from context_forcing.config import RunConfig
from context_forcing.data.episodes import episode_conditioning, ground_truth_pixels, panworld_episodes
from context_forcing.io.files import atomic_write_json
from context_forcing.io.video import VideoWriter
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.checkpoint import load_model
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.report import session_report
from context_forcing.rollout.scripted import PromptSwitch, apply_due_switches
from context_forcing.rollout.session import StreamingSession


@dataclass(frozen=True)
class GenerateRequest:
    run: RunConfig
    checkpoint: str | None
    layout: MemoryLayout
    seconds: float
    seed: int
    batch: int
    out: Path
    fps: float
    scale: int
    report: Path | None
    threads: int | None = None
    quality: str = "lossless"
    side_by_side: bool = False  # each sample next to its PanWorld ground truth
    prefill_frames: int = 0  # ground-truth opening committed before generating (whole chunks)
    # --continue: (prefill_frames, h, w, 3) uint8 committed instead of the truth
    opening: torch.Tensor | None = None
    prompts: tuple[PromptSwitch, ...] = ()  # --prompts: timed prompt switches (rollout/scripted.py)
    compare: str | None = None  # a second checkpoint streamed on the same episodes, shown beside the first
    compare_layout: MemoryLayout | None = None  # its memory (default: the one its checkpoint records)
    compile: bool = False  # the compiled chunk step (model/compiled.py) for every session


def latent_frames_for(seconds: float, run: RunConfig) -> int:
    """4 latent frames per second, rounded up to a whole frame (chunks then cover it; output is trimmed)."""
    return max(1, math.ceil(seconds * run.video.latent_frames_per_second - 1e-9))


def build_model(request: GenerateRequest) -> CausalVideoDiT:
    """The checkpoint's model, or random weights (with a warning) when there is none."""
    if request.checkpoint is not None:
        return load_model(request.checkpoint)[1].eval()
    print("warning: no --checkpoint given: generating with random weights", file=sys.stderr)
    torch.manual_seed(request.seed)
    model = CausalVideoDiT(request.run.model, request.run.text)
    for name, param in model.named_parameters():  # random weights that produce visible output
        if name.endswith("head.head.weight"):
            torch.nn.init.normal_(param, std=0.02)
    return model.eval()


def run_generate(request: GenerateRequest) -> int:
    """Generate, write the MP4 chunk by chunk (atomically), then the report."""
    if request.threads:
        torch.set_num_threads(request.threads)
    run = request.run
    model = build_model(request)
    prefill = request.prefill_frames
    frames = prefill + latent_frames_for(request.seconds, run)
    chunks = math.ceil(frames / run.chunk)
    episodes = panworld_episodes(run, request.seed, request.batch, chunks * run.chunk)
    cond = episode_conditioning(run, episodes, chunks * run.chunk)
    codec = build_codec(run.codec, run.video)
    session = StreamingSession(model, run, cond, seed=request.seed, layout=request.layout, codec=codec,
                               compile=request.compile)
    sessions = [session]
    if request.compare is not None:  # same episodes, noise and opening; its own weights and memory
        compare_run, compare_model = load_model(request.compare)
        sessions.append(StreamingSession(compare_model.eval(), compare_run, cond, seed=request.seed,
                                         layout=request.compare_layout, codec=build_codec(compare_run.codec,
                                                                                          compare_run.video),
                                         compile=request.compile))
    per_latent = run.video.pixel_frames_per_latent
    written, tic = 0, time.perf_counter()
    with VideoWriter(request.out, fps=request.fps, scale=request.scale, quality=request.quality) as writer, \
            tqdm(total=chunks, desc="generate", unit="chunk", file=sys.stderr) as bar:

        def write(panels: list[torch.Tensor]) -> None:  # per session (B, t, H, W, 3) uint8
            nonlocal written
            keep = max(0, frames * per_latent - written)  # trim the last chunk to the request
            panels = [p[:, :keep] for p in panels]
            t = panels[0].shape[1]
            if request.side_by_side:
                start = written // per_latent
                panels.append(torch.stack([ground_truth_pixels(run, e, start, start + t) for e in episodes]))
            # samples side by side
            writer.write(torch.cat([torch.cat(list(p), dim=2) for p in zip(*panels)], dim=2))
            written += t

        if prefill:
            # (B, F, h, w, 3)
            opening = torch.stack([ground_truth_pixels(run, e, 0, prefill) for e in episodes]) \
                if request.opening is None else request.opening.expand(request.batch, -1, -1, -1, -1)
            latents = codec.encode(opening)  # once: every session shares the codec (same preset, checked)
            for s in sessions:
                s.prefill(latents)
            write([opening] * len(sessions))
            bar.update(prefill // run.chunk)
        switched = [apply_due_switches(s, list(request.prompts), 0) for s in sessions]
        for chunks in zip(*(s.stream(frames) for s in sessions)):
            write([c.pixels for c in chunks])
            bar.update(1)
            switched = [apply_due_switches(s, list(request.prompts), n) for s, n in zip(sessions, switched)]
    wall = time.perf_counter() - tic
    report = session_report(session, frames, written, wall)
    report["checkpoint"] = str(request.checkpoint) if request.checkpoint is not None else "random"
    report["prefill_frames"] = prefill
    report["prompt_switches"] = [{"at": p.at, "frame": p.frame, "policy": p.policy} for p in request.prompts]
    if request.compare is not None:
        report["compare"] = session_report(sessions[1], frames, written, wall)
        report["compare"]["checkpoint"] = str(request.compare)
    if request.report is not None:
        atomic_write_json(request.report, report)
    print(f"wrote {written} frames ({report['seconds']:.2f} s) to {request.out} in {wall:.1f} s",
          file=sys.stderr)
    return 0
