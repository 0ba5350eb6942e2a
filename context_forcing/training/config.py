"""Training configuration: one frozen, validated dataclass per component, per-preset defaults,
`--set` overrides.

Defaults follow the paper and the official code (reference/context_forcing.md) at paper scale; `for_preset`
scales sizes down for the CPU presets. The resolved `TrainConfig` is written into every run directory.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, replace
from typing import Any

from context_forcing.config import ConfigError, _require
from context_forcing.memory.context_sampler import ContextSamplerConfig

STAGES = ("teacher", "ode-init", "stage1", "stage2")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW settings of one network."""

    lr: float = 2e-6
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    clip: float = 2.0  # max gradient norm (0: no clipping)

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        _require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.clip >= 0, f"optim.clip must be >= 0, got {self.clip}")


@dataclass(frozen=True)
class ErftConfig:
    """Error-Recycling Fine-Tuning (Stable Video Infinity): per-frame error banks grouped by timestep."""

    groups: int = 50  # timestep groups
    bank_size: int = 500  # tensors per group and kind (x0 error, noise error)
    p_clean: float = 0.5  # probability of no injection at all for a sample
    p_context: float = 0.9  # otherwise: add a recycled error to the fast context frames
    p_target: float = 0.9  # otherwise: add a recycled error to the clean target before noising
    inject_slow: bool = False  # also perturb slow-memory context frames
    warmup_steps: int = 0  # no banking or injection before this many updates (a model trained from scratch)
    replacement: str = "oldest"  # a full group replaces its "oldest" entry, or (SVI) the "nearest" one

    def __post_init__(self) -> None:
        _require(self.groups >= 1, f"erft.groups must be >= 1, got {self.groups}")
        _require(self.bank_size >= 0, f"erft.bank_size must be >= 0 (0 disables ERFT), got {self.bank_size}")
        for name in ("p_clean", "p_context", "p_target"):
            value = getattr(self, name)
            _require(0 <= value <= 1, f"erft.{name} must lie in [0, 1], got {value}")
        _require(self.warmup_steps >= 0, f"erft.warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(self.replacement in ("oldest", "nearest"),
                 f"erft.replacement must be 'oldest' or 'nearest', got {self.replacement!r}")


@dataclass(frozen=True)
class DmdConfig:
    """Distribution matching distillation (DMD2 / Self Forcing) settings."""

    guidance: float = 4.0  # teacher CFG weight w in x_u + w (x_c - x_u); official "guidance 3" = 4
    t_min: float = 20.0  # DMD timestep range (of 1000), one t for all target frames
    t_max: float = 980.0
    critic_ratio: int = 5  # critic updates per generator update
    exit_step: str = "shared"  # "shared" across the chunks of a rollout | "per_chunk"
    # What teacher and critic see before the target: "memory" (contextual DMD: the student's memory as it
    # stood) | "none" (LongLive-style streaming long tuning: a short-window teacher sees the
    # target window only)
    teacher_context: str = "memory"

    def __post_init__(self) -> None:
        _require(self.guidance >= 0, f"dmd.guidance must be >= 0, got {self.guidance}")
        _require(0 <= self.t_min < self.t_max <= 1000, f"dmd.t_min < dmd.t_max within [0, 1000], got "
                 f"{self.t_min}, {self.t_max}")
        _require(self.critic_ratio >= 1, f"dmd.critic_ratio must be >= 1, got {self.critic_ratio}")
        _require(self.exit_step in ("shared", "per_chunk"),
                 f"dmd.exit_step must be 'shared' or 'per_chunk', got {self.exit_step!r}")
        _require(self.teacher_context in ("memory", "none"),
                 f"dmd.teacher_context must be 'memory' or 'none', got {self.teacher_context!r}")


@dataclass(frozen=True)
class CurriculumConfig:
    """Stage 2 rollout length N ~ U{n_min .. n_max(t)} in whole chunks, n_max linear in the step."""

    n_min: int = 84
    n_max_start: int = 84
    n_max_end: int = 105
    ramp_steps: int = 600
    target: int = 21  # the last `target` frames are the DMD target

    def __post_init__(self) -> None:
        _require(0 < self.target <= self.n_min,
                 f"curriculum.target must lie in (0, n_min], got {self.target}")
        _require(self.n_min <= self.n_max_start <= self.n_max_end,
                 f"curriculum needs n_min <= n_max_start <= n_max_end, got {self.n_min}, {self.n_max_start}, "
                 f"{self.n_max_end}")
        _require(self.ramp_steps >= 1, f"curriculum.ramp_steps must be >= 1, got {self.ramp_steps}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run of one stage."""

    stage: str = "stage1"
    steps: int = 2000  # generator updates
    batch: int = 1  # samples per process per micro-step
    accumulation: int = 8  # micro-steps per update
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 0  # older checkpoints beyond the newest N are deleted (0: keep all) ...
    keep_every: int = 0  # ... except those at multiples of this step (0: none kept for that reason)
    # log the stage's probe (teacher: probe-teacher's figures) every N updates (0: never)
    probe_every: int = 0
    probe_episodes: int = 8  # eval episodes of that probe
    log_every: int = 1
    ema_decay: float = 0.99
    ema_start: int = 200  # EMA tracks the weights from this update on (before: copies them)
    activation_checkpointing: bool = False
    # render the next clip in a background thread while a step runs (same clips in the same order); pays off
    # only with an idle core: on 2 busy cores it made panworld teacher updates 7 % slower (issue 12)
    prefetch_data: bool = False
    precision: str = "fp32"  # "bf16": FSDP2 mixed precision (bf16 compute, fp32 gradients and reduction)
    rollout_frames: int = 21  # Stage 1 rollout / teacher and ODE-init target length (whole chunks)
    prompt_dropout: float = 0.1  # teacher: null prompt probability (for CFG)
    # teacher: noise levels s are drawn uniformly then warped with this shift (0: the sampler's, 5 for every
    # preset); a smaller shift trains the low-noise end that clean samples (and ODE-init targets) need
    timestep_shift: float = 0.0
    ode_steps: int = 40  # teacher Euler steps for ODE-init trajectories
    generator: OptimConfig = field(default_factory=OptimConfig)
    critic: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-7, betas=(0.5, 0.95)))
    erft: ErftConfig = field(default_factory=ErftConfig)
    context: ContextSamplerConfig = field(default_factory=ContextSamplerConfig)
    dmd: DmdConfig = field(default_factory=DmdConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def __post_init__(self) -> None:
        _require(self.stage in STAGES, f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        for name in ("steps", "batch", "accumulation", "checkpoint_every", "log_every", "rollout_frames",
                     "ode_steps"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _require(self.probe_every >= 0 and self.probe_episodes >= 1,
                 f"probe_every must be >= 0 and probe_episodes >= 1, "
                 f"got {self.probe_every}, {self.probe_episodes}")
        _require(self.keep_checkpoints >= 0 and self.keep_every >= 0,
                 f"keep_checkpoints and keep_every must be >= 0, "
                 f"got {self.keep_checkpoints}, {self.keep_every}")
        _require(0 <= self.ema_decay < 1, f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        _require(self.ema_start >= 0, f"ema_start must be >= 0, got {self.ema_start}")
        _require(0 <= self.prompt_dropout < 1,
                 f"prompt_dropout must lie in [0, 1), got {self.prompt_dropout}")
        _require(self.timestep_shift >= 0,
                 f"timestep_shift must be >= 0 (0: the sampler's), got {self.timestep_shift}")
        _require(self.precision in ("fp32", "bf16"),
                 f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data, "")


def _from_dict(kind: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - names
    _require(not unknown, f"unknown train config keys {sorted(prefix + k for k in unknown)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return kind(**kwargs)


def apply_overrides(cfg: Any, overrides: list[str], flag: str = "--set") -> Any:
    """Apply `key=value` overrides (dotted keys for sub-configs) to a config dataclass (a TrainConfig for
    `--set`, a ModelConfig for `--model`), type-checked; unknown keys are errors naming `flag`."""
    for item in overrides:
        key, sep, text = item.partition("=")
        _require(bool(sep) and bool(key), f"{flag} expects key=value, got {item!r}")
        cfg = _set(cfg, key.split("."), text, f"{flag} {key}")
    return cfg


def _set(obj: Any, path: list[str], text: str, full_key: str) -> Any:
    """full_key: the flag and the dotted key, for messages."""
    hints = typing.get_type_hints(type(obj))
    name = path[0]
    if name not in hints:
        allowed = ", ".join(sorted(hints))
        raise ConfigError(f"{full_key}: unknown key {name!r}; allowed here: {allowed}")
    hint = hints[name]
    if dataclasses.is_dataclass(hint):
        _require(len(path) > 1,
                 f"{full_key}: {name} is a group; set one of its fields ({name}.FIELD=...)")
        return replace(obj, **{name: _set(getattr(obj, name), path[1:], text, full_key)})
    _require(len(path) == 1, f"{full_key}: {name} has no sub-keys")
    return replace(obj, **{name: _parse_value(hint, text, full_key)})


def _parse_value(hint: Any, text: str, key: str) -> Any:
    try:
        if hint is bool:
            lowered = text.lower()
            _require(lowered in ("true", "false", "1", "0"),
                     f"{key}: expected true/false, got {text!r}")
            return lowered in ("true", "1")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if typing.get_origin(hint) is tuple:
            kinds = typing.get_args(hint)
            parts = text.split(",")
            _require(len(parts) == len(kinds), f"{key}: expected {len(kinds)} comma-separated values, "
                     f"got {text!r}")
            return tuple(k(p) for k, p in zip(kinds, parts))
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{key}: cannot read {text!r} as {getattr(hint, '__name__', hint)}") from None
    raise ConfigError(f"{key}: unsupported type {hint}")


def for_preset(stage: str, preset: str) -> TrainConfig:
    """The default TrainConfig of a stage at a preset's scale (paper values at wan2.1-1.3b)."""
    _require(stage in STAGES, f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    base = TrainConfig(stage=stage)
    if stage == "teacher":
        base = replace(base, generator=OptimConfig(lr=1e-4), steps=8000)
    elif stage == "ode-init":
        base = replace(base, generator=OptimConfig(lr=2e-6), steps=600)
    elif stage == "stage1":
        base = replace(base, steps=600, dmd=replace(base.dmd, guidance=4.0))
    else:
        base = replace(base, steps=500, dmd=replace(base.dmd, guidance=6.0))
    if preset == "wan2.1-1.3b":
        # paper scale: torchrun + FSDP2 with bf16 mixed precision (fp32 master weights, gradients and
        # reduction) and activation checkpointing, as the official 8-GPU runs
        # (batch 1 x accumulation 8 x 8 GPUs)
        return replace(base, precision="bf16", activation_checkpointing=True)
    small = replace(
        base, batch=4, accumulation=1, ema_start=20, checkpoint_every=25, ode_steps=16, keep_checkpoints=2,
        keep_every=500, erft=replace(base.erft, bank_size=64, groups=10, warmup_steps=1000),
        dmd=replace(base.dmd, critic_ratio=2),
    )
    lrs = {"teacher": 3e-4, "ode-init": 1e-4, "stage1": 2e-5, "stage2": 2e-5}
    small = replace(small, generator=replace(small.generator, lr=lrs[stage]),
                    critic=replace(small.critic, lr=lrs[stage] * 2))
    if preset == "tiny":
        return replace(small, steps=4, batch=2, checkpoint_every=2, ema_start=1, ode_steps=4,
                       rollout_frames=6, keep_checkpoints=0, keep_every=0,
                       erft=replace(small.erft, warmup_steps=0),
                       curriculum=CurriculumConfig(n_min=12, n_max_start=12, n_max_end=18, ramp_steps=4,
                                                   target=6),
                       context=replace(small.context, max_slow=4, max_fast=6))
    # training curves that say whether it learns: the teacher probe (8 episodes) or a 4-episode P1 eval
    probe = (dict(probe_every=250, probe_episodes=8) if stage == "teacher"
             else dict(probe_every=100, probe_episodes=4))
    return replace(small, rollout_frames=21, **probe,
                   curriculum=CurriculumConfig(n_min=42, n_max_start=42, n_max_end=84,
                                               ramp_steps=300, target=21))
