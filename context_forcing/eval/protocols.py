"""P1 / P2 generation with a model: all eval episodes in one streaming session (samples are independent)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from context_forcing.codecs import PixelCodec
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.episodes import check_panworld_run, episode_conditioning
from context_forcing.eval.evaluate import Case
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.session import StreamingSession


def check_model_run(run: RunConfig, cases: list[Case]) -> None:
    """Eval compares pixels with PanWorld frames: the run's latent frames must be PanWorld frames."""
    world = cases[0].episode.cfg
    check_panworld_run(run, world)
    if (run.video.latent_height, run.video.latent_width) != (world.frame_height, world.frame_width):
        raise ConfigError(f"eval needs latent frames of PanWorld's size {world.frame_height}x{world.frame_width}; "
                          f"preset {run.preset!r} has {run.video.latent_height}x{run.video.latent_width}")


def generate(model: CausalVideoDiT, run: RunConfig, cases: list[Case], protocol: str, layout: MemoryLayout | None,
             seed: int = 0, progress: bool = True) -> list[np.ndarray]:
    """P1: frames [t0, F) after prefilling ground truth [0, t0); P2: frames [0, F) from scratch."""
    check_model_run(run, cases)
    frames = len(cases[0].truth)
    padded = cases[0].episode.frames  # whole chunks
    cond = episode_conditioning(run, [c.episode for c in cases], padded)
    codec = PixelCodec()
    session = StreamingSession(model.eval(), run, cond, seed=seed, samples=list(range(len(cases))), layout=layout,
                               codec=codec)
    start = 0
    if protocol == "p1":
        start = cases[0].t0
        session.prefill(codec.encode(torch.from_numpy(np.stack([c.truth[:start] for c in cases]))))
    chunks = []
    with tqdm(total=(padded - start) // run.chunk, desc=f"eval {protocol}", unit="chunk", disable=not progress,
              leave=False) as bar:
        for chunk in session.stream(padded):
            chunks.append(chunk.pixels.numpy())
            bar.update(1)
    video = np.concatenate(chunks, axis=1)[:, :frames - start]  # (B, F - start, H, W, 3)
    return list(video)
