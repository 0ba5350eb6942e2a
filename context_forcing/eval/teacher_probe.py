"""Does the context teacher use its context? x0 from pure noise with and without a memory-shaped context.

On eval episodes, the teacher sees a realistic Slow-Fast-Memory-shaped context (sink = frames 0..2, slow = one
frame per `slow_every` back from the fast part, fast = the last `fast` frames) before a one-chunk target, and
predicts x0 from pure noise (s = 1: x0 = x_1 - v, all the target's content must come from the context or the
prompt). Reported, as mean absolute error in px (0-255) against the true target:

- `x0_error_context`, `x0_error_empty` (the same target with the context removed);
- `copy_last`: repeating the last context frame;
- `oracle_copy`: per target pixel column, the same world column in the most recent context frame that shows
  it (copy-last where none does): what a perfect memory reader of this context could do;
- `gap_closed` = (copy_last - x0_error_context) / (copy_last - oracle_copy): 0 = no better than copying the
  last frame, 1 = as good as the oracle copy;
- `sample_sharpness_ratio`: sharpness of the teacher's own CFG Euler samples of the target over the truth's
  (the eval's sharpness; below 0.7 the eval flags blur, above 1.5 noise);
- `x0_error_s{level}` and `input_error_s{level}` for each low noise level asked for: the target noised to s
  (the same fixed noise), the teacher's x0 = x_s - s v against the noisy input itself, both against the truth:
  how much of the noise the teacher removes where clean samples are finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import ConfigError, RunConfig
from context_forcing.data.episodes import episode_conditioning
from context_forcing.data.panworld import PanWorldConfig, render_episode, sample_episode
from context_forcing.diffusion.samplers import euler_sample
from context_forcing.diffusion.schedule import add_noise, teacher_sigmas, timesteps_of
from context_forcing.eval.metrics import sharpness
from context_forcing.memory.context_sampler import SLOW_EVERY
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.teacher import TeacherInputs, teacher_inputs

EVAL_SEED = 1_000_000  # first seed of PanWorld's eval split
PX = 127.5  # latent units -> pixel units (the pixel codec's scale)


@dataclass(frozen=True)
class ProbeSet:
    """Fixed probe inputs: context (B, n, C, H, W) clean, target (B, T, ...), fixed noise, the two copies."""

    context: Tensor
    context_cond: Conditioning
    target: Tensor
    target_cond: Conditioning
    noise: Tensor
    copy_last: Tensor
    oracle_copy: Tensor

    def to(self, device: torch.device | str) -> ProbeSet:
        """The same probe on another device (the model's)."""
        return ProbeSet(*(x.to(device) for x in (self.context, self.context_cond, self.target,
                                                   self.target_cond, self.noise, self.copy_last,
                                                   self.oracle_copy)))

    def inputs(self, with_context: bool) -> TeacherInputs:
        b, n = self.context.shape[:2]
        if with_context:
            valid = torch.ones(b, n, dtype=torch.bool, device=self.context.device)
            return teacher_inputs(self.context, valid, self.context_cond, self.target, self.target_cond)
        empty = self.context[:, :0]
        return teacher_inputs(empty, torch.ones(b, 0, dtype=torch.bool, device=empty.device),
                              self.context_cond.frames(slice(0, 0)), self.target, self.target_cond)


def memory_frames(history: int, sink: int = 3, slow: int = 12, fast: int = 6,
                  slow_every: int = SLOW_EVERY) -> list[int]:
    """Frame indices of a memory-shaped context before frame `history`:
    sink, slow (sparse), fast, in time order."""
    if min(sink, slow, fast) < 0 or sink + slow + fast == 0:
        raise ConfigError(f"probe context sizes must be >= 0 with at least one frame, "
                          f"got sink {sink}, slow {slow}, fast {fast}")
    if history < sink + fast:
        raise ConfigError(f"probe history ({history}) must be >= sink + fast ({sink + fast})")
    fast_frames = list(range(history - fast, history))
    slow_frames = [f for f in range(history - fast - 1, sink - 1, -slow_every)][:slow]
    return list(range(sink)) + sorted(slow_frames) + fast_frames


def _oracle_copy(camera_x: np.ndarray, frames: np.ndarray, context: list[int],
                 targets: list[int]) -> np.ndarray:
    """Per target pixel column, that world column from the most recent context frame showing it (else the
    last context frame's column). frames: (F, H, W, 3) float; returns (T, H, W, 3)."""
    width = frames.shape[2]
    out = []
    for t in targets:
        guess = frames[context[-1]].copy()
        for x in range(width):
            world = camera_x[t] + x
            for c in reversed(context):
                offset = world - camera_x[c]
                if 0 <= offset < width:
                    guess[:, x] = frames[c][:, offset]
                    break
        out.append(guess)
    return np.stack(out)


def build_probe_set(run: RunConfig, episodes: int = 16, history: int = 90, seed: int = EVAL_SEED,
                    world: PanWorldConfig | None = None, shape: tuple[int, int, int] = (3, 12, 6)
                    ) -> ProbeSet:
    """Probe inputs from eval episodes seed .. seed + episodes - 1 (one chunk of target after `history`
    frames); `shape` = (sink, slow, fast) context frames (`memory_frames`), e.g. (3, 0, 18) for a window."""
    world = world or PanWorldConfig()
    if (run.video.latent_height, run.video.latent_width) != (world.frame_height, world.frame_width):
        raise ConfigError(f"probe-teacher needs PanWorld-size latents "
                          f"{world.frame_height}x{world.frame_width}, "
                          f"got {run.video.latent_height}x{run.video.latent_width} (preset {run.preset!r})")
    if history % run.chunk:
        raise ConfigError(f"probe history ({history}) must be a whole number of chunks ({run.chunk})")
    total = history + run.chunk
    context = memory_frames(history, *shape)
    targets = list(range(history, total))
    eps = [sample_episode(world, seed + i, total, split="eval") for i in range(episodes)]
    cond = episode_conditioning(run, eps, total)
    pixels = [render_episode(e, 0, total).astype(np.float32) for e in eps]  # (F, H, W, 3) each
    oracle = np.stack([_oracle_copy(e.camera_x.astype(np.int64), p, context, targets)
                       for e, p in zip(eps, pixels)])
    latents = torch.from_numpy(np.stack(pixels)).permute(0, 1, 4, 2, 3) / PX - 1  # (B, F, C, H, W)
    noise = torch.randn(latents[:, history:].shape, generator=torch.Generator().manual_seed(seed))
    index = torch.tensor(context)
    return ProbeSet(context=latents[:, index], context_cond=cond.frames(index[None].expand(episodes, -1)),
                    target=latents[:, history:], target_cond=cond.frames(slice(history, total)), noise=noise,
                    copy_last=latents[:, context[-1]:context[-1] + 1].expand(-1, run.chunk, -1, -1, -1),
                    oracle_copy=torch.from_numpy(oracle).permute(0, 1, 4, 2, 3) / PX - 1)


def _velocity(model: CausalVideoDiT, inputs: TeacherInputs, x: Tensor, sigma: Tensor, guidance: float | None
              ) -> Tensor:
    """Target velocity at noise level sigma (B, T); CFG when guidance is given."""
    return inputs.target_velocity(model, x, timesteps_of(sigma, 1000), guidance)


def _px_error(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().mean() * PX)


@torch.no_grad()
def probe_teacher(model: CausalVideoDiT, run: RunConfig, probe: ProbeSet, sample_steps: int = 20,
                  guidance: float | None = None, levels: tuple[float, ...] = (0.1,)) -> dict[str, float]:
    """The teacher probe's figures (module docstring) on a fixed ProbeSet; sample_steps = 0 skips sampling."""
    model.eval()
    probe = probe.to(next(model.parameters()).device)
    b, t = probe.target.shape[:2]
    ones = torch.ones(b, t, device=probe.target.device)
    figures = {"copy_last": _px_error(probe.copy_last, probe.target),
               "oracle_copy": _px_error(probe.oracle_copy, probe.target)}
    for name, with_context in (("x0_error_context", True), ("x0_error_empty", False)):
        inputs = probe.inputs(with_context)
        x0 = probe.noise - _velocity(model, inputs, probe.noise, ones, None)  # x0 = x_1 - 1 * v
        figures[name] = _px_error(x0.clamp(-1, 1), probe.target)
    for level in levels:  # the low-noise end, with the context
        x_s = add_noise(probe.target, probe.noise, level)
        x0 = x_s - level * _velocity(model, probe.inputs(True), x_s, ones * level, None)
        figures[f"x0_error_s{level:g}"] = _px_error(x0, probe.target)
        figures[f"input_error_s{level:g}"] = _px_error(x_s, probe.target)
    span = figures["copy_last"] - figures["oracle_copy"]
    figures["gap_closed"] = ((figures["copy_last"] - figures["x0_error_context"]) / span if span > 0
                             else float("nan"))
    if sample_steps:
        inputs = probe.inputs(True)
        weight = run.sampler.guidance if guidance is None else guidance
        sample = euler_sample(inputs.sampler_velocity(model, weight), probe.noise,
                              teacher_sigmas(sample_steps, run.sampler.shift)).clamp(-1, 1)
        as_pixels = lambda x: ((x + 1) * PX).permute(0, 1, 3, 4, 2).cpu().numpy()  # noqa: E731
        figures["sample_sharpness_ratio"] = (sharpness(as_pixels(sample))
                                             / max(sharpness(as_pixels(probe.target)), 1e-9))
        figures["sample_error"] = _px_error(sample, probe.target)
    return figures
