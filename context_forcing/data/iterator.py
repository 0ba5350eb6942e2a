"""Endless PanWorld training batches: latents, conditioning and token masks, deterministic and resumable.

Each step's batch is a pure function of (stream seed, step): episode seeds, window starts and history
lengths come from a numpy Generator seeded by both, and each episode from its own seed, so resuming from
`state_dict()` (two ints) replays the same trajectory. No cache: sampling and rendering take ~1 ms per
256-frame episode.

Raising the share of memory-critical content (benchmarks.md, Learnability: ~0.7% of a random window):
- `PanWorldConfig.revisit_bias` > 0 sends the camera back to earlier targets (back-and-forth);
- `window_candidates` > 1 draws that many window starts per sample and keeps the one with the most
  memory-critical tokens (a biased, still deterministic, choice of windows);
- the batch's `memory_critical` token mask supports a loss weight on those tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from context_forcing.codecs.pixel import PixelCodec
from context_forcing.conditioning import Conditioning
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.panworld import (
    SEED_RANGES,
    Episode,
    PanWorldConfig,
    episode_labels,
    render_episode,
    sample_episode,
    stack_conditioning,
)

_STREAM = 0x4954  # separates the iterator's random stream from PanWorld's episode streams


@dataclass(frozen=True, eq=False)
class PanWorldBatch:
    """One training batch of B samples and F = history + window frames.

    latents (B, F, 3, H, W) in [-1, 1] (the pixel codec); cond: prompt (B, P), actions (B, F, A),
    pose (B, F, 1), spatial_positions (B, F, Lf, 2) if requested; seeds / starts (B,) long: episode seed and
    the episode frame of latents[:, 0]; history: leading context frames (teacher mode; the target is
    latents[:, history:]); memory_critical / new (B, F, Lf) bool token masks (at `PanWorldConfig.horizon`)
    relative to the sample's own first frame.
    """

    latents: Tensor
    cond: Conditioning
    seeds: Tensor
    starts: Tensor
    history: int
    memory_critical: Tensor
    new: Tensor
    step: int


class PanWorldStream:
    """Batches of PanWorld windows from episodes of `episode_frames` frames, endless.

    history=None: each sample is `window` frames at a random chunk-aligned start. history=(lo, hi) (or an
    int hi, meaning (0, hi)): teacher mode, each sample is frames [0, H + window) of its episode, with H a
    multiple of the chunk drawn uniformly in [lo, hi] once per step (same H across the batch), so the
    history starts at frame 0 and the sink is the episode's first frames.
    """

    def __init__(self, world_cfg: PanWorldConfig, run_cfg: RunConfig, split: str = "train", seed: int = 0,
                 window: int = 24, batch: int = 4, history: int | tuple[int, int] | None = None,
                 episode_frames: int = 256, spatial_positions: bool = False,
                 window_candidates: int = 1, grid: tuple[int, int] | None = None) -> None:
        self.world, self.run = world_cfg, run_cfg
        # token grid of positions and masks (a downsampling caller's own)
        self.grid = grid or run_cfg.token_grid
        self.split, self.seed, self.step = split, seed, 0
        self.window, self.batch, self.episode_frames = window, batch, episode_frames
        self.spatial_positions, self.window_candidates = spatial_positions, window_candidates
        self.history = (0, history) if isinstance(history, int) else history
        self._check()
        self.codec = PixelCodec()

    def _check(self) -> None:
        run, world, chunk = self.run, self.world, self.run.chunk
        if self.split not in SEED_RANGES:
            raise ValueError(f"split must be one of {sorted(SEED_RANGES)}, got {self.split!r}")
        if self.seed < 0 or self.batch < 1 or self.window_candidates < 1:
            raise ValueError(f"seed must be >= 0, batch and window_candidates >= 1; got {self.seed}, "
                             f"{self.batch}, {self.window_candidates}")
        if self.window < chunk or self.window % chunk:
            raise ValueError(f"window must be a positive multiple of the chunk ({chunk}), got {self.window}")
        if self.history is not None:
            lo, hi = self.history
            if not 0 <= lo <= hi or hi // chunk * chunk < lo:
                raise ValueError(f"history must be (lo, hi) with 0 <= lo <= hi holding a multiple of the "
                                 f"chunk ({chunk}), got {self.history}")
        longest = self.window + (self.history[1] if self.history else 0)
        if self.episode_frames < longest:
            raise ValueError(f"episode_frames ({self.episode_frames}) must be >= window + history "
                             f"({longest})")
        if (run.video.latent_height, run.video.latent_width) != (world.frame_height, world.frame_width):
            raise ConfigError(f"video latent size {run.video.latent_height}x{run.video.latent_width} must "
                              f"equal the PanWorld frame {world.frame_height}x{world.frame_width}")
        if run.codec.kind != "pixel" or run.model.in_channels != 3:
            raise ConfigError(f"PanWorldStream yields pixel-codec latents: codec.kind must be 'pixel' and "
                              f"model.in_channels 3, got {run.codec.kind!r}, {run.model.in_channels}")
        if run.model.action_dim not in (0, world.action_dim):
            raise ConfigError(f"model.action_dim must be 0 or {world.action_dim} (camera_mode "
                              f"{world.camera_mode!r}), got {run.model.action_dim}")
        text = run.text
        if text.kind != "attributes" or text.vocab_size < world.prompt_vocab_size or text.prompt_len < 4:
            raise ConfigError(f"text must be 'attributes' with vocab_size >= {world.prompt_vocab_size} and "
                              f"prompt_len >= 4, got {text.kind!r}, {text.vocab_size}, {text.prompt_len}")
        if self.spatial_positions and world.frame_width % self.grid[1]:
            raise ConfigError(f"token columns ({self.grid[1]}) must divide the frame width "
                              f"({world.frame_width})")

    # ---- iteration ---------------------------------------------------------------------------------------

    def __iter__(self) -> PanWorldStream:
        return self

    def __next__(self) -> PanWorldBatch:
        batch = self.batch_at(self.step)
        self.step += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """Everything needed to resume on the same trajectory."""
        return {"seed": self.seed, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if set(state) != {"seed", "step"}:
            raise ValueError(f"PanWorldStream state must have keys seed and step, got {sorted(state)}")
        self.seed, self.step = int(state["seed"]), int(state["step"])

    # ---- one batch ---------------------------------------------------------------------------------------

    def batch_at(self, step: int) -> PanWorldBatch:
        """The batch of `step`: a pure function of (seed, step) and the configs."""
        rng = np.random.default_rng([self.seed, step, _STREAM])
        history = self._draw_history(rng)
        length = history + self.window
        lo, hi = SEED_RANGES[self.split]
        pixels, conds, critical, new, seeds, starts = [], [], [], [], [], []
        for _ in range(self.batch):
            episode = sample_episode(self.world, int(rng.integers(lo, hi)), self.episode_frames)
            start = 0 if self.history is not None else self._draw_start(rng, episode, length)
            labels = episode_labels(episode, start, start + length)
            pixels.append(render_episode(episode, start, start + length))
            conds.append(episode.conditioning(start, start + length, spatial=self.spatial_positions,
                                              grid=self.grid, prompt_len=self.run.text.prompt_len))
            critical.append(labels.token_memory_critical())
            new.append(labels.token_new)
            seeds.append(episode.seed)
            starts.append(start)
        latents = self.codec.encode(torch.from_numpy(np.stack(pixels)))  # (B, F, 3, H, W)
        return PanWorldBatch(latents=latents, cond=self._select_fields(stack_conditioning(conds)),
                             seeds=torch.tensor(seeds), starts=torch.tensor(starts), history=history,
                             memory_critical=self._tokens_to_grid(np.stack(critical)),
                             new=self._tokens_to_grid(np.stack(new)), step=step)

    def _draw_history(self, rng: np.random.Generator) -> int:
        if self.history is None:
            return 0
        chunk = self.run.chunk
        lo, hi = -(-self.history[0] // chunk), self.history[1] // chunk
        return int(rng.integers(lo, hi + 1)) * chunk

    def _draw_start(self, rng: np.random.Generator, episode: Episode, length: int) -> int:
        """A chunk-aligned window start; with window_candidates > 1, the candidate with the most
        memory-critical tokens."""
        chunk = self.run.chunk
        starts = rng.integers(0, (self.episode_frames - length) // chunk + 1, self.window_candidates) * chunk
        if self.window_candidates == 1:
            return int(starts[0])
        scores = [episode_labels(episode, int(s), int(s) + length).token_memory_critical().sum()
                  for s in starts]
        return int(starts[int(np.argmax(scores))])

    def _select_fields(self, cond: Conditioning) -> Conditioning:
        """Drop the per-frame fields the model does not take."""
        return replace(cond, actions=cond.actions if self.run.model.action_dim else None,
                       pose=cond.pose if self.run.model.pose_freqs else None)

    def _tokens_to_grid(self, masks: np.ndarray) -> Tensor:
        """(B, F, strips) per strip -> (B, F, rows * cols) per model token (rows repeat, columns split)."""
        rows, cols = self.grid
        strips = masks.shape[-1]
        if cols % strips and strips % cols:
            raise ConfigError(f"token columns ({cols}) and PanWorld strips ({strips}) must divide one "
                              f"another")
        if cols >= strips:
            per_column = np.repeat(masks, cols // strips, axis=-1)
        else:
            per_column = masks.reshape(*masks.shape[:-1], cols, strips // cols).all(axis=-1)
        return torch.from_numpy(np.tile(per_column, (1, 1, rows)))
