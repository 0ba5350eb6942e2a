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
    session = StreamingSession(model, run, cond, seed=request.seed, layout=request.layout, codec=codec)
    per_latent = run.video.pixel_frames_per_latent
    written, tic = 0, time.perf_counter()
    with VideoWriter(request.out, fps=request.fps, scale=request.scale, quality=request.quality) as writer, \
            tqdm(total=chunks, desc="generate", unit="chunk", file=sys.stderr) as bar:

        def write(pixels: torch.Tensor) -> None:  # (B, t, H, W, 3) uint8
            nonlocal written
            pixels = pixels[:, :max(0, frames * per_latent - written)]  # trim the last chunk to the request
            if request.side_by_side:
                start = written // per_latent
                truth = [ground_truth_pixels(run, e, start, start + pixels.shape[1]) for e in episodes]
                pixels = torch.stack([torch.cat([p, t], dim=2) for p, t in zip(pixels, truth)])
            writer.write(torch.cat(list(pixels), dim=2))  # samples side by side
            written += pixels.shape[1]

        if prefill:
            opening = torch.stack([ground_truth_pixels(run, e, 0, prefill) for e in episodes])  # (B, F, h, w, 3)
            session.prefill(codec.encode(opening))
            write(opening)
            bar.update(prefill // run.chunk)
        for chunk in session.stream(frames):
            write(chunk.pixels)
            bar.update(1)
    wall = time.perf_counter() - tic
    report = session_report(session, frames, written, wall)
    report["checkpoint"] = str(request.checkpoint) if request.checkpoint is not None else "random"
    report["prefill_frames"] = prefill
    if request.report is not None:
        atomic_write_json(request.report, report)
    print(f"wrote {written} frames ({report['seconds']:.2f} s) to {request.out} in {wall:.1f} s", file=sys.stderr)
    return 0
