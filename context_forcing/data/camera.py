"""A random aperiodic camera path: per-frame actions and poses for presets with camera conditioning.

A stand-in until PanWorld supplies real episodes: moves of -1, 0, +1 token per latent frame toward random
targets with random pauses, so the path neither repeats nor stays still.
"""

from __future__ import annotations

import torch

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.noise import generator_for

MOVES = (-1, 0, 1)  # camera action vocabulary, in token widths; actions are one-hot over it


def camera_path(frames: int, generator: torch.Generator, span: int = 64) -> torch.Tensor:
    """Moves (frames,) in {-1, 0, +1}: walk to a random target in [0, span), pause a random time, repeat."""
    moves = torch.zeros(frames, dtype=torch.long)
    x, i = 0, 0
    while i < frames:
        target = int(torch.randint(0, span, (1,), generator=generator))
        while x != target and i < frames:
            step = 1 if target > x else -1
            moves[i], x, i = step, x + step, i + 1
        pause = int(torch.randint(0, 6, (1,), generator=generator))
        i += pause  # moves already zero there
    return moves


def random_camera_conditioning(run: RunConfig, batch: int, frames: int, seed: int) -> Conditioning:
    """Prompt, one-hot actions (B, F, 3) and pose (B, F, 1) from an independent camera path per sample."""
    if run.model.action_dim not in (0, len(MOVES)):
        raise ValueError(f"the random camera path gives {len(MOVES)}-way one-hot actions; model.action_dim is "
                         f"{run.model.action_dim}")
    prompts, actions, poses = [], [], []
    for b in range(batch):
        g = generator_for(seed, b, -1)
        prompts.append(torch.randint(1, run.text.vocab_size, (run.text.prompt_len,), generator=g))
        moves = camera_path(frames, g)
        actions.append(torch.nn.functional.one_hot(moves + 1, len(MOVES)).float())  # (F, 3)
        poses.append(moves.cumsum(0).float()[:, None])  # absolute camera x in tokens
    return Conditioning(prompt=torch.stack(prompts),
                        actions=torch.stack(actions) if run.model.action_dim else None,
                        pose=torch.stack(poses) if run.model.pose_freqs else None)
