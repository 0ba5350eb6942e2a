"""Analytic resource estimate of a preset: parameters, KV cache, FLOPs, memory per use (no model is built).

Conventions (docs/WAN.md, "Estimates"):
- FLOPs are `model.flops.forward_flops` (2 per multiply-add, attention dense over every key, prompt tokens
  included); a chunk costs `steps + 1` forwards (denoising steps + the commit pass); a chunk's context is
  `min(frames before it, budget - chunk)`, i.e. the upper bound where every candidate enters slow memory.
- The KV cache holds K and V of `budget` frames (the chunk's own included, as the official cache is sized)
  for every layer; `kv_cache_committed_bytes` counts only the `budget - chunk` committed frames we store.
- Training state is per network: trained = fp32 weights + fp32 gradients + AdamW's two fp32 moments (16 B
  per parameter) + an fp32 EMA where the stage keeps one (4 B); frozen = fp32 weights (4 B). FSDP2 shards
  all of it over the GPUs. Activations are not estimated (they depend on checkpointing and batch).
"""

from __future__ import annotations

import math

from context_forcing.config import ModelConfig, RunConfig
from context_forcing.memory.layout import run_layout
from context_forcing.model.flops import forward_flops, prompt_flops

BYTES = {"fp32": 4, "bf16": 2}
# umT5-XXL encoder (google/umt5-xxl as shipped with Wan2.1): d_model 4096, d_ff 10240, 24 layers, 64 heads of
# 64, 32 relative-position buckets per layer, vocabulary 256384, gated-GELU FFN
UMT5_XXL = dict(d_model=4096, d_ff=10240, layers=24, heads=64, d_kv=64, buckets=32, vocab=256384)
# networks per training stage: (trained with EMA, trained without EMA, frozen)
STAGE_NETWORKS = {"teacher": (1, 0, 0), "ode-init": (1, 0, 1), "stage1": (1, 1, 1), "stage2": (1, 1, 1)}


def dit_parameters(cfg: ModelConfig) -> int:
    """Parameters of CausalVideoDiT (= Wan2.1's WanModel for Wan configs), counted from the layer shapes."""
    d, f = cfg.dim, cfg.ffn_dim
    linear = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731  weight + bias
    block = (
        8 * linear(d, d)  # self- and cross-attention q, k, v, o
        + 4 * d  # RMSNorm gains on q and k, both attentions
        + 2 * d  # cross-attention LayerNorm (norm3), affine
        + linear(d, f)
        + linear(f, d)  # FFN
        + 6 * d
    )  # modulation table
    top = (
        linear(cfg.patch_features, d)
        + linear(cfg.text_dim, d)
        + linear(d, d)  # patch, text MLP
        + linear(cfg.freq_dim, d)
        + linear(d, d)
        + linear(d, 6 * d)  # time MLP and projection
        + linear(d, cfg.out_channels * math.prod(cfg.patch))
        + 2 * d
    )  # head and its modulation
    if cfg.frame_cond_dim:
        top += linear(cfg.frame_cond_dim, d) + linear(d, d)
    return cfg.layers * block + top


def umt5_xxl_parameters(c: dict = UMT5_XXL) -> int:
    """umT5-XXL encoder parameters: embedding + per layer (attention, relative bias, gated FFN, 2 norms)."""
    inner = c["heads"] * c["d_kv"]
    layer = (
        4 * c["d_model"] * inner + c["buckets"] * c["heads"] + 3 * c["d_model"] * c["d_ff"] + 2 * c["d_model"]
    )
    return c["vocab"] * c["d_model"] + c["layers"] * layer + c["d_model"]


def kv_bytes(cfg: ModelConfig, frames: int, tokens_per_frame: int, batch: int, dtype: str = "bf16") -> int:
    """K and V of `frames` latent frames, every layer: layers * 2 * frames * tokens * dim * bytes."""
    return batch * cfg.layers * 2 * frames * tokens_per_frame * cfg.dim * BYTES[dtype]


def estimate(run: RunConfig, seconds: float = 60.0, gpus: int = 1, batch: int = 1) -> dict:
    """The estimate as one JSON-ready dict (see the module docstring for every convention)."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds={seconds!r}; must be a finite number > 0")
    if gpus < 1 or batch < 1:
        raise ValueError(f"gpus={gpus}, batch={batch}; both must be integers >= 1")
    cfg, c, tokens = run.model, run.chunk, run.tokens_per_frame
    layout = run_layout(run)
    latent_frames = max(1, math.ceil(seconds * run.video.latent_frames_per_second - 1e-9))
    chunks = math.ceil(latent_frames / c)
    budget = layout.budget if layout.budget is not None else chunks * c  # `full`: everything so far
    prompt_len = run.text.prompt_len
    passes = len(run.sampler.student_timesteps) + 1  # denoising steps + the commit pass
    forward = forward_flops(cfg, batch, c, tokens, budget - c, prompt_len)  # a chunk against a full memory
    contexts = [min(i * c, budget - c) for i in range(chunks)]
    video_flops = passes * sum(forward_flops(cfg, batch, c, tokens, n, prompt_len) for n in contexts)
    params = dit_parameters(cfg)
    text_params = umt5_xxl_parameters() if run.text.kind == "umt5" else 0
    kv = kv_bytes(cfg, budget, tokens, batch)
    inference = {
        "dit_weights_bytes": 2 * params,
        "kv_cache_bytes": kv,
        "text_encoder_bytes": 2 * text_params,  # on the CPU by default (--text-device)
        "gpu_total_bytes_text_offloaded": 2 * params + kv,
        "gpu_total_bytes_text_on_gpu": 2 * (params + text_params) + kv,
    }
    training = {}
    for stage, (with_ema, without_ema, frozen) in STAGE_NETWORKS.items():
        state = params * (with_ema * (16 + 4) + without_ema * 16 + frozen * 4)
        training[stage] = {
            "state_bytes_total": state,
            "state_bytes_per_gpu": math.ceil(state / gpus),
            "networks": {"trained_with_ema": with_ema, "trained": without_ema, "frozen": frozen},
        }
    return {
        "preset": run.preset,
        "seconds": seconds,
        "batch": batch,
        "gpus": gpus,
        "latent_frames": latent_frames,
        "chunks": chunks,
        "tokens_per_frame": tokens,
        "memory": layout.name,
        "budget_frames": budget,
        "parameters": params,
        "text_encoder_parameters": text_params,
        "kv_cache_bytes": kv,
        "kv_cache_committed_bytes": kv_bytes(cfg, budget - c, tokens, batch),
        "flops_per_chunk_forward": forward,
        "forwards_per_chunk": passes,
        "flops_per_chunk": passes * forward,
        "flops_per_generated_second": passes * forward * run.video.latent_frames_per_second // c,
        "flops_prompt": prompt_flops(cfg, batch, prompt_len),
        "flops_video": video_flops,
        "inference": inference,
        "training": training,
    }


def format_estimate(e: dict) -> str:
    """A human-readable summary of `estimate`."""
    gb, tf = 1e9, 1e12
    lines = [
        f"preset {e['preset']}: {e['seconds']:g} s = {e['latent_frames']} latent frames in "
        f"{e['chunks']} chunks, "
        f"batch {e['batch']}, memory {e['memory']} (budget {e['budget_frames']} frames x "
        f"{e['tokens_per_frame']} "
        f"tokens)",
        f"parameters            {e['parameters']:,} (DiT)"
        + (f" + {e['text_encoder_parameters']:,} (umT5-XXL)" if e["text_encoder_parameters"] else ""),
        f"KV cache (bf16)       {e['kv_cache_bytes'] / gb:.2f} GB "
        f"({e['kv_cache_committed_bytes'] / gb:.2f} GB "
        f"committed frames)",
        f"FLOPs per forward     {e['flops_per_chunk_forward'] / tf:.1f} TFLOP "
        f"(a chunk against a full memory)",
        f"FLOPs per chunk       {e['flops_per_chunk'] / tf:.1f} TFLOP ({e['forwards_per_chunk']} forwards)",
        f"FLOPs per second      {e['flops_per_generated_second'] / tf:.1f} TFLOP of generated video",
        f"FLOPs whole video     {e['flops_video'] / tf:.1f} TFLOP "
        f"(+ {e['flops_prompt'] / tf:.2f} for the prompt)",
        f"inference memory      DiT {e['inference']['dit_weights_bytes'] / gb:.2f} GB + KV "
        f"{e['inference']['kv_cache_bytes'] / gb:.2f} GB = "
        f"{e['inference']['gpu_total_bytes_text_offloaded'] / gb:.2f} GB on the GPU with umT5 offloaded "
        f"({e['inference']['gpu_total_bytes_text_on_gpu'] / gb:.2f} GB with umT5 on the GPU); "
        f"activations extra",
    ]
    for stage, t in e["training"].items():
        lines.append(
            f"training {stage:<9}    {t['state_bytes_total'] / gb:.1f} GB of weights, gradients, AdamW "
            f"and EMA state = {t['state_bytes_per_gpu'] / gb:.1f} GB per GPU over {e['gpus']} "
            f"(FSDP2); activations extra"
        )
    return "\n".join(lines)
