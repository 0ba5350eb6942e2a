"""Analytic FLOP count of one CausalVideoDiT forward (2 FLOPs per multiply-add).

torch 2.13's FLOP counter reports 0 for CPU SDPA, so benchmarks and reports use this count. Attention is
counted densely over all keys (padding included, as SDPA computes it); the prompt's cross-attention K/V are
computed once per prompt and counted by `prompt_flops`, not per forward.
"""

from __future__ import annotations

import math

from context_forcing.config import ModelConfig


def forward_flops(cfg: ModelConfig, batch: int, frames: int, tokens_per_frame: int, context_frames: int = 0,
                  prompt_len: int = 0) -> int:
    """FLOPs of a forward over `frames` query frames attending to `context_frames` earlier frames."""
    d, f = cfg.dim, cfg.ffn_dim
    q_tokens = frames * tokens_per_frame
    per_token_linear = (
        4 * d * d  # self-attention q, k, v, o
        + 2 * d * d  # cross-attention q, o
        + 2 * d * f  # FFN
    )
    layers = cfg.layers * 2 * q_tokens * per_token_linear
    embed = 2 * q_tokens * cfg.patch_features * d + 2 * q_tokens * d * cfg.out_channels * math.prod(cfg.patch)
    time = frames * 2 * (cfg.freq_dim * d + d * d + 6 * d * d)
    if cfg.frame_cond_dim:
        time += frames * 2 * (cfg.frame_cond_dim * d + d * d)
    return batch * (layers + embed + time) + attention_flops(cfg, batch, frames, tokens_per_frame,
                                                             context_frames, prompt_len)


def attention_flops(cfg: ModelConfig, batch: int, frames: int, tokens_per_frame: int, context_frames: int = 0,
                    prompt_len: int = 0) -> int:
    """The part of `forward_flops` spent in attention (scores and weighted sums, self and cross)."""
    q_tokens = frames * tokens_per_frame
    k_tokens = q_tokens + context_frames * tokens_per_frame
    return batch * cfg.layers * 4 * q_tokens * (k_tokens + prompt_len) * cfg.dim


def prompt_flops(cfg: ModelConfig, batch: int, prompt_len: int) -> int:
    """FLOPs of encoding the prompt: text MLP and every layer's cross-attention K/V."""
    text = 2 * prompt_len * (cfg.text_dim * cfg.dim + cfg.dim * cfg.dim)
    return batch * (text + cfg.layers * 2 * prompt_len * 2 * cfg.dim * cfg.dim)
