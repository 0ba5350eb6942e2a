"""Training data for every stage: the contract stages draw from (`TrainingData`) and its PanWorld source,
episodes from their first frame at the run's latent size.

Presets whose latent frames are smaller than PanWorld's 32x32 (the `tiny` test preset) get the frames
area-downsampled, so every preset trains on the same world.

With `prefetch_data`, rendering leaves the critical path: after a draw of a repeated length a background
thread renders the next step's clip while the stage computes. A step's batch is a pure function of (seed,
step), so the clips and their order do not depend on timing; a draw of another length, or after
`load_state_dict`, renders in the caller. Off by default: it needs an idle core (see TrainConfig).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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
                 split: str = "train", episode_frames: int = 256, prefetch: bool | None = None) -> None:
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
        self.prefetch = train.prefetch_data if prefetch is None else prefetch
        self._worker: ThreadPoolExecutor | None = None
        self._pending: tuple[int, int, Future] | None = None  # (step, frames, the clip being rendered)
        self._last_frames: int | None = None

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
        pending, self._pending = self._pending, None
        if pending is not None and pending[:2] == (self.step, frames):
            clip = pending[2].result()
        else:
            clip = self._render(self._stream(frames), self.step)
        self.step += 1
        # prefetch when the length repeats (teacher, ODE init, stage 1); stage 2's lengths vary per update
        if self.prefetch and frames == self._last_frames:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panworld-prefetch")
            self._pending = (self.step, frames,
                             self._worker.submit(self._render, self._stream(frames), self.step))
        self._last_frames = frames
        return clip

    def _render(self, stream: PanWorldStream, step: int) -> tuple[Tensor, Conditioning]:
        """This process's slice of the batch of `step` at the run's latent size (pure in step)."""
        batch = stream.batch_at(step)
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
        self.step = int(state["step"])  # a pending prefetch of another step is dropped at the next draw


def build_training_data(run: RunConfig, train: TrainConfig) -> PanWorldTrainingData:
    """The data source of a run (PanWorld for every preset with the pixel codec)."""
    if run.codec.kind != "pixel":
        raise ConfigError(f"training data for codec {run.codec.kind!r} (real videos) is not available yet")
    return PanWorldTrainingData(run, train)
