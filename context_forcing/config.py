"""Typed, frozen, validated configuration: one dataclass per component.

Every default lives here. Each component receives only its own config. `RunConfig` bundles them and is
what a checkpoint's `config.json` stores (see `to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value outside its allowed range; the message names the field."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(name: str, value: int | float) -> None:
    _require(value > 0, f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """CausalVideoDiT sizes. Names follow Wan2.1 so Wan weights map one to one."""

    in_channels: int = 3
    out_channels: int = 3
    patch: tuple[int, int, int] = (1, 4, 4)  # (pt, ph, pw); pt must be 1 (one latent frame per token row)
    dim: int = 48
    heads: int = 2
    layers: int = 2
    ffn_dim: int = 96
    text_dim: int = 16  # width of the prompt embeddings fed to `text_embedding`
    freq_dim: int = 32  # sinusoidal timestep embedding width
    eps: float = 1e-6
    rope_theta: float = 10000.0
    action_dim: int = 0  # per-frame action vector size (0: no actions)
    pose_freqs: int = 0  # sinusoidal features of the per-frame pose (0: no pose input)
    # what the network's output head is: "velocity" (Wan: v = eps - x0 directly) or "x0" (an x0 prediction
    # with EDM-style preconditioning for rectified flow, x0 = c_skip(s) x_s + c_out(s) F with data std
    # `sigma_data`, converted to the velocity every caller sees); see `model.dit.output_to_velocity`
    prediction: str = "velocity"
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "dim", "heads", "layers", "ffn_dim", "text_dim",
                     "freq_dim"):
            _positive(f"model.{name}", getattr(self, name))
        _require(len(self.patch) == 3 and all(p > 0 for p in self.patch),
                 f"model.patch must be three positive ints, got {self.patch!r}")
        _require(self.patch[0] == 1, f"model.patch[0] (temporal patch) must be 1, got {self.patch[0]}")
        _require(self.dim % self.heads == 0,
                 f"model.dim ({self.dim}) must be divisible by model.heads ({self.heads})")
        _require(self.head_dim % 2 == 0 and self.head_dim >= 6,
                 f"model.dim / model.heads must be even and >= 6 for 3-D RoPE, got {self.head_dim}")
        _require(self.freq_dim % 2 == 0, f"model.freq_dim must be even, got {self.freq_dim}")
        _require(self.action_dim >= 0, f"model.action_dim must be >= 0, got {self.action_dim}")
        _require(self.pose_freqs >= 0, f"model.pose_freqs must be >= 0, got {self.pose_freqs}")
        _positive("model.eps", self.eps)
        _require(self.prediction in ("velocity", "x0"),
                 f"model.prediction must be 'velocity' or 'x0', got {self.prediction!r}")
        _positive("model.sigma_data", self.sigma_data)
        # a token wider than the model loses part of its input (and, with a velocity head, part of the noise
        # it must predict) in the patch embedding: the network can never see it
        _require(self.patch_features <= self.dim,
                 f"model.dim ({self.dim}) must be >= the numbers per token, in_channels x patch = "
                 f"{self.in_channels} x {'x'.join(map(str, self.patch))} = {self.patch_features}; "
                 f"widen the model or use smaller patches")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def patch_features(self) -> int:
        return self.in_channels * math.prod(self.patch)

    @property
    def frame_cond_dim(self) -> int:
        """Width of the per-frame conditioning vector (actions, then sin/cos pose features)."""
        return self.action_dim + 2 * self.pose_freqs


@dataclass(frozen=True)
class TextConfig:
    """Prompt encoder. `attributes`: token ids -> learned embeddings (id 0 is the null token).
    `umt5`: precomputed umT5 embeddings arrive in `Conditioning.prompt_embeds`."""

    kind: str = "attributes"
    vocab_size: int = 16
    prompt_len: int = 4

    def __post_init__(self) -> None:
        _require(self.kind in ("attributes", "umt5"),
                 f"text.kind must be 'attributes' or 'umt5', got {self.kind!r}")
        _positive("text.vocab_size", self.vocab_size)
        _positive("text.prompt_len", self.prompt_len)


@dataclass(frozen=True)
class VideoConfig:
    """Latent geometry and timing. One latent frame is 0.25 s everywhere (4 latent frames per second)."""

    latent_height: int = 8
    latent_width: int = 8
    pixel_frames_per_latent: int = 1
    latent_frames_per_second: int = 4

    def __post_init__(self) -> None:
        for name in ("latent_height", "latent_width", "pixel_frames_per_latent", "latent_frames_per_second"):
            _positive(f"video.{name}", getattr(self, name))

    @property
    def fps(self) -> int:
        """Pixel frames per second of the decoded video."""
        return self.pixel_frames_per_latent * self.latent_frames_per_second


@dataclass(frozen=True)
class CodecConfig:
    """Latents <-> pixels. `pixel`: lossless, latents are pixels in [-1, 1]. `wan-vae`: the Wan VAE."""

    kind: str = "pixel"
    weights: str | None = None  # local directory for learned codecs

    def __post_init__(self) -> None:
        _require(self.kind in ("pixel", "wan-vae"),
                 f"codec.kind must be 'pixel' or 'wan-vae', got {self.kind!r}")


@dataclass(frozen=True)
class SamplerConfig:
    """Rectified-flow sampling. Student: few steps at `student_timesteps` warped by `shift`.
    Teacher: `teacher_steps` Euler steps with classifier-free guidance weight `guidance`
    (x_u + w (x_c - x_u); the official code's "guidance 3" is w = 4)."""

    shift: float = 5.0
    num_train_timesteps: int = 1000
    student_timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
    teacher_steps: int = 40
    guidance: float = 4.0

    def __post_init__(self) -> None:
        _positive("sampler.shift", self.shift)
        _positive("sampler.num_train_timesteps", self.num_train_timesteps)
        _require(len(self.student_timesteps) >= 1, "sampler.student_timesteps must not be empty")
        _require(all(0 < t <= self.num_train_timesteps for t in self.student_timesteps),
                 f"sampler.student_timesteps must lie in (0, {self.num_train_timesteps}], "
                 f"got {self.student_timesteps}")
        _require(list(self.student_timesteps) == sorted(self.student_timesteps, reverse=True),
                 f"sampler.student_timesteps must decrease, got {self.student_timesteps}")
        _positive("sampler.teacher_steps", self.teacher_steps)
        _require(self.guidance >= 0, f"sampler.guidance must be >= 0, got {self.guidance}")


@dataclass(frozen=True)
class MemoryConfig:
    """Slow-Fast Memory: a layout name (see `memory.layout.parse_layout`) and the switches that reproduce
    the official code's behaviour (DESIGN.md section 5; defaults are our corrected behaviour)."""

    layout: str = "sink3-slow12-fast6:similarity0.95:bounded"
    summary_layers: tuple[int, ...] = ()  # layers whose mean key forms the admission summary; () = all
    admit_kv: str = "clean"  # 'clean' (commit pass) or 'first_pass' (official: first denoising pass)

    def __post_init__(self) -> None:
        _require(isinstance(self.layout, str) and self.layout != "",
                 "memory.layout must be a non-empty string")
        _require(self.admit_kv in ("clean", "first_pass"),
                 f"memory.admit_kv must be 'clean' or 'first_pass', got {self.admit_kv!r}")
        _require(all(i >= 0 for i in self.summary_layers),
                 f"memory.summary_layers must be >= 0, got {self.summary_layers}")


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a model and generate with it."""

    preset: str = "tiny"
    chunk: int = 3  # latent frames denoised together
    # spatial RoPE positions: "grid" = token row/column; "world" = row and the token's world column (PanWorld:
    # camera x in tokens + column), so remembered content sits at relative position 0 (benchmarks.md)
    spatial_positions: str = "grid"
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def __post_init__(self) -> None:
        _positive("chunk", self.chunk)
        _require(self.spatial_positions in ("grid", "world"),
                 f"spatial_positions must be 'grid' or 'world', got {self.spatial_positions!r}")
        _, ph, pw = self.model.patch
        _require(self.video.latent_height % ph == 0 and self.video.latent_width % pw == 0,
                 f"video latent size {self.video.latent_height}x{self.video.latent_width} "
                 f"must be divisible by the patch {ph}x{pw}")
        _require(self.text.kind != "attributes" or self.text.prompt_len > 0, "text.prompt_len must be > 0")
        _require(self.model.prediction == "velocity" or self.sampler.num_train_timesteps == 1000,
                 f"model.prediction 'x0' reads noise levels as timesteps / 1000; "
                 f"sampler.num_train_timesteps must be 1000, got {self.sampler.num_train_timesteps}")
        _require(all(i < self.model.layers for i in self.memory.summary_layers),
                 f"memory.summary_layers must be < model.layers ({self.model.layers}), "
                 f"got {self.memory.summary_layers}")

    @property
    def tokens_per_frame(self) -> int:
        _, ph, pw = self.model.patch
        return (self.video.latent_height // ph) * (self.video.latent_width // pw)

    @property
    def token_grid(self) -> tuple[int, int]:
        _, ph, pw = self.model.patch
        return self.video.latent_height // ph, self.video.latent_width // pw

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild from `to_dict` output; unknown keys are errors (a config from another version)."""
        kinds = {"model": ModelConfig, "text": TextConfig, "video": VideoConfig, "codec": CodecConfig,
                 "sampler": SamplerConfig, "memory": MemoryConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in kinds:
                kwargs[key] = _build(kinds[key], value, key)
            elif key in ("preset", "chunk", "spatial_positions"):
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown config key {key!r}")
        return cls(**kwargs)


def _build(kind: type, values: dict[str, Any], prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - names
    _require(not unknown, f"unknown {prefix} config keys {sorted(unknown)}; allowed: {sorted(names)}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return kind(**converted)
