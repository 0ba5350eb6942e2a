"""P1 / P2 generation with a model (benchmarks.md "Protocols").

- P1, continuation: commit (prefill) the ground-truth frames [0, t0), then generate the rest with the true
  actions; the video is the prefix followed by the generated frames.
- P2, free rollout: generate every frame from the prompt and the actions.

Episodes run as the samples of one streaming session, a batch at a time. A sample's noise comes from (seed,
episode seed, chunk), so an episode's video does not depend on the batch it ran in.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from context_forcing.codecs import PixelCodec
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.episodes import check_panworld_run, episode_conditioning
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.eval.cases import EvalCase
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.session import StreamingSession


def check_eval_run(run: RunConfig, world: PanWorldConfig) -> None:
    """Scores compare pixels with PanWorld frames: the run must generate them at full size (ConfigError)."""
    check_panworld_run(run, world)
    if (run.video.latent_height, run.video.latent_width) != (world.frame_height, world.frame_width):
        raise ConfigError(f"preset {run.preset!r} does not generate PanWorld's {world.frame_height}x"
                          f"{world.frame_width} frames (its latent frames are {run.video.latent_height}x"
                          f"{run.video.latent_width})")


def generate_videos(model: CausalVideoDiT, run: RunConfig, cases: list[EvalCase], protocol: str,
                    layout: MemoryLayout | None = None, seed: int = 0, batch_size: int = 8,
                    progress: bool = True) -> list[np.ndarray]:
    """Whole videos (padded, H, W, 3) uint8 of protocol `protocol` ("p1" | "p2"), one per case."""
    if protocol not in ("p1", "p2"):
        raise ValueError(f"protocol must be 'p1' or 'p2', got {protocol!r}")
    check_eval_run(run, cases[0].episode.cfg)
    if any(c.t0 % run.chunk or c.padded % run.chunk for c in cases):
        raise ValueError(f"eval cases must be made with the model's chunk ({run.chunk} frames)")
    model.eval()
    videos: list[np.ndarray] = []
    chunks = sum(c.padded - (c.t0 if protocol == "p1" else 0) for c in cases) // run.chunk
    with tqdm(total=chunks, desc=f"eval {protocol}", unit="chunk", disable=not progress, leave=False) as bar:
        for lo in range(0, len(cases), batch_size):
            videos.extend(_generate_batch(model, run, cases[lo:lo + batch_size], protocol, layout, seed, bar))
    return videos


def _generate_batch(model: CausalVideoDiT, run: RunConfig, cases: list[EvalCase], protocol: str,
                    layout: MemoryLayout | None, seed: int, bar: tqdm) -> list[np.ndarray]:
    padded, codec = cases[0].padded, PixelCodec()
    cond = episode_conditioning(run, [c.episode for c in cases], padded)  # prefilled and generated frames
    session = StreamingSession(model, run, cond, seed=seed, samples=[c.episode.seed for c in cases],
                               layout=layout, codec=codec)
    prefix = cases[0].t0 if protocol == "p1" else 0
    parts = [np.stack([c.truth[:prefix] for c in cases])]  # (B, t0, H, W, 3)
    if prefix:
        session.prefill(codec.encode(torch.from_numpy(parts[0])))
    for chunk in session.stream(padded):
        parts.append(chunk.pixels.cpu().numpy())  # (B, c, H, W, 3)
        bar.update(len(cases))
    return list(np.concatenate(parts, axis=1)[:, :padded])
