"""Training data for every stage: the contract stages draw from (`TrainingData`) and its PanWorld source,
episodes from their first frame at the run's latent size.

Presets whose latent frames are smaller than PanWorld's 32x32 (the `tiny` test preset) get the frames
area-downsampled, so every preset trains on the same world.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.episodes import area_downsample, check_panworld_run
from context_forcing.data.iterator import PanWorldStream
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.training.config import TrainConfig
from context_forcing.training.distributed import local_samples, world_size


class TrainingData(Protocol):
    """What stages draw from; resumable through a small state dict."""

    def next_conditioning(self, frames: int) -> Conditioning:
        """Conditioning of a batch for `frames` latent frames from episode starts (DMD needs no video)."""
        ...

    def next_clip(self, frames: int) -> tuple[Tensor, Conditioning]:
        """Real latents (B, frames, C, H, W) from episode starts and their conditioning."""
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


class PanWorldTrainingData:
    """Clips of `frames` latent frames starting at frame 0 of fresh training episodes; resumable by step.

    With several processes, every process draws the same global batch (`batch` x processes) and keeps its
    own slice, so N processes see exactly the samples one process with an N times larger batch would.
    """

    def __init__(self, run: RunConfig, train: TrainConfig, world: PanWorldConfig | None = None,
                 split: str = "train", episode_frames: int = 256) -> None:
        self.world = world or PanWorldConfig()
        self.run, self.batch, self.seed, self.split = run, train.batch, train.seed, split
        self.samples = local_samples(train.batch)  # this process's slice of the global batch
        self.episode_frames = episode_frames
        check_panworld_run(run, self.world)
        size = (self.world.frame_height, self.world.frame_width)
        # render at PanWorld's own size, then downsample; positions and masks on the run's own token grid
        self.render_run = replace(run, video=replace(run.video, latent_height=size[0], latent_width=size[1]))
        self.step = 0
        self._streams: dict[int, PanWorldStream] = {}

    def _stream(self, frames: int) -> PanWorldStream:
        if frames not in self._streams:
            self._streams[frames] = PanWorldStream(self.world, self.render_run, self.split, self.seed,
                                                   window=frames, batch=self.batch * world_size(),
                                                   history=(0, 0),
                                                   spatial_positions=self.run.spatial_positions == "world",
                                                   episode_frames=max(self.episode_frames, frames),
                                                   grid=self.run.token_grid)
        return self._streams[frames]

    def next_clip(self, frames: int) -> tuple[Tensor, Conditioning]:
        """Latents (B, frames, 3, h, w) in [-1, 1] from episode starts, and their conditioning."""
        batch = self._stream(frames).batch_at(self.step)
        self.step += 1
        local = slice(self.samples.start, self.samples.stop)
        video = self.run.video
        latents = area_downsample(batch.latents[local], video.latent_height, video.latent_width)
        return latents, batch.cond.select(local)

    def next_conditioning(self, frames: int) -> Conditioning:
        """Conditioning only (DMD stages learn from the teacher, not from videos)."""
        return self.next_clip(frames)[1]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def build_training_data(run: RunConfig, train: TrainConfig) -> PanWorldTrainingData:
    """The data source of a run (PanWorld for every preset with the pixel codec)."""
    if run.codec.kind != "pixel":
        raise ConfigError(f"training data for codec {run.codec.kind!r} (real videos) is not available yet")
    return PanWorldTrainingData(run, train)
