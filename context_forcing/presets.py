"""Named run configurations. Each preset derives from `tiny` and changes only what differs."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from context_forcing.config import (
    CodecConfig,
    ConfigError,
    MemoryConfig,
    ModelConfig,
    RunConfig,
    SamplerConfig,
    TextConfig,
    VideoConfig,
)


def tiny() -> RunConfig:
    """Tests: 2 layers, 8x8 pixel frames in 4 tokens of 48 numbers (width 48 sees all of them),
    milliseconds."""
    return RunConfig(
        preset="tiny",
        model=ModelConfig(in_channels=3, out_channels=3, patch=(1, 4, 4), dim=48, heads=2, layers=2,
                          ffn_dim=96, text_dim=16, freq_dim=32, action_dim=3, pose_freqs=2),
        text=TextConfig(kind="attributes", vocab_size=32, prompt_len=4),  # PanWorld prompts use ids 1..19
        video=VideoConfig(latent_height=8, latent_width=8),
    )


def panworld() -> RunConfig:
    """PanWorld benchmark size: 32x32 RGB, vertical-strip tokens (1, 32, 4) -> 8 tokens per frame,
    10.0 M params.

    A 4 px camera move is a whole token, so remembered content is a token copy, and spatial RoPE positions
    carry each token's world column, so the copy is attention at relative position 0 (benchmarks.md,
    Learnability). Width 384 = the 3 x 32 x 4 numbers of a token (a narrower model cannot see part of its
    input and noise); the head predicts x0 with EDM preconditioning
    (docs/TRAINING.md: the measurements behind both choices). The shipped checkpoints use 16 tokens per frame
    of 16 x 4 pixels (`--model patch=1,16,4`, recorded in their config.json).
    """
    base = tiny()
    return replace(
        base, preset="panworld", spatial_positions="world",
        model=ModelConfig(in_channels=3, out_channels=3, patch=(1, 32, 4), dim=384, heads=6, layers=4,
                          ffn_dim=1152, text_dim=64, freq_dim=64, action_dim=3, pose_freqs=6,
                          prediction="x0"),
        text=TextConfig(kind="attributes", vocab_size=64, prompt_len=4),
        video=VideoConfig(latent_height=32, latent_width=32),
        memory=MemoryConfig(layout="sink3-slow12-fast6:similarity0.95:bounded"),
    )


def wan21_1_3b() -> RunConfig:
    """Wan2.1-T2V-1.3B at 480x832 (latent 60x104, 1560 tokens per latent frame); umT5 prompts; Wan VAE.

    The released Context Forcing inference settings (reference/wan_path.md section 4): 4 steps at
    1000/750/500/250 warped by shift 5.0 (~1000/937.5/833.3/625), no guidance (the student samples
    without CFG; `guidance` is the teacher's in training), chunks of 3 latents, memory 3/12/6 with bounded
    positions, 16 fps (4 pixel frames per latent). 512 prompt tokens is Wan's padding (`wan.text_encoder`).
    """
    base = tiny()
    return replace(
        base, preset="wan2.1-1.3b", chunk=3,
        model=ModelConfig(in_channels=16, out_channels=16, patch=(1, 2, 2), dim=1536, heads=12, layers=30,
                          ffn_dim=8960, text_dim=4096, freq_dim=256, action_dim=0, pose_freqs=0),
        text=TextConfig(kind="umt5", vocab_size=256384, prompt_len=512),
        video=VideoConfig(latent_height=60, latent_width=104, pixel_frames_per_latent=4),
        codec=CodecConfig(kind="wan-vae"),
        sampler=SamplerConfig(shift=5.0, student_timesteps=(1000.0, 750.0, 500.0, 250.0)),
        memory=MemoryConfig(layout="sink3-slow12-fast6:similarity0.95:bounded"),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {"tiny": tiny, "panworld": panworld, "wan2.1-1.3b": wan21_1_3b}


def get_preset(name: str) -> RunConfig:
    """The preset's RunConfig; ConfigError naming the allowed presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()
