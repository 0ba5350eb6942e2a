"""The estimator against values computed by hand from the Wan2.1-1.3B architecture, and its CLI."""

from __future__ import annotations

import json

import pytest
import torch

from context_forcing.cli import main
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset
from context_forcing.wan.estimate import dit_parameters, estimate, umt5_xxl_parameters

# Wan2.1-T2V-1.3B: d 1536, FFN 8960, 30 layers, text 4096, freq 256, 16 channels, patch 1x2x2
D, FF, LAYERS = 1536, 8960, 30
TOKENS = 30 * 52  # 480x832 pixels -> 60x104 latent -> 30x52 tokens of 2x2
PARAMS_BY_HAND = (
    LAYERS * (8 * (D * D + D) + 4 * D + 2 * D + (D * FF + FF) + (FF * D + D) + 6 * D)
    + (64 * D + D)
    + (4096 * D + D)
    + (D * D + D)  # patch embedding, text MLP
    + (256 * D + D)
    + (D * D + D)
    + (D * 6 * D + 6 * D)  # time MLP, projection
    + (D * 64 + 64)
    + 2 * D  # head, head modulation
)


def test_parameters_match_hand_count_and_the_model() -> None:
    run = get_preset("wan2.1-1.3b")
    assert PARAMS_BY_HAND == 1_418_996_800 == dit_parameters(run.model)  # the count Wan2.1-1.3B publishes
    tiny = get_preset("panworld").model  # per-frame actions/pose add a frame embedding: counted too
    with torch.device("meta"):
        model = CausalVideoDiT(tiny, None)
    assert dit_parameters(tiny) == sum(p.numel() for p in model.parameters())
    # umT5-XXL: 256384 x 4096 embedding + 24 x (4 x 4096^2 + 32 x 64 + 3 x 4096 x 10240 + 2 x 4096) + 4096
    assert umt5_xxl_parameters() == 1_050_148_864 + 24 * 192_948_224 + 4096 == 5_680_910_336


def test_kv_cache_and_flops_by_hand() -> None:
    e = estimate(get_preset("wan2.1-1.3b"), seconds=60)
    # K and V, 30 layers, 21 frames x 1560 tokens x 1536 channels, 2 bytes (bf16)
    assert e["kv_cache_bytes"] == 2 * LAYERS * 21 * TOKENS * D * 2 == 6_038_323_200
    assert e["kv_cache_committed_bytes"] == 2 * LAYERS * 18 * TOKENS * D * 2
    # a chunk of 3 frames (4680 tokens) against 18 context frames and 512 prompt tokens:
    q = 3 * TOKENS
    linear = LAYERS * 2 * q * (6 * D * D + 2 * D * FF)  # self q,k,v,o + cross q,o + FFN per token
    attention = LAYERS * 4 * q * (21 * TOKENS + 512) * D  # scores + weighted sums, self and cross
    embed = 2 * q * 64 * D * 2  # patch embedding in, head out (64 numbers per token each way)
    time = 3 * 2 * (256 * D + D * D + 6 * D * D)
    assert e["flops_per_chunk_forward"] == linear + attention + embed + time
    assert round(e["flops_per_chunk_forward"] / 1e12, 1) == 40.4
    assert e["flops_per_chunk"] == 5 * e["flops_per_chunk_forward"]  # 4 steps + the commit pass
    assert (
        e["flops_per_generated_second"] == 5 * e["flops_per_chunk_forward"] * 4 // 3
    )  # 4 latents per second
    assert (e["latent_frames"], e["chunks"]) == (240, 80)
    # whole video: chunk i attends to min(3 i, 18) context frames
    assert e["flops_video"] > 80 * e["flops_per_chunk"] - 6 * e["flops_per_chunk"]
    assert e["flops_video"] < 80 * e["flops_per_chunk"]
    assert e["inference"]["gpu_total_bytes_text_offloaded"] == 2 * 1_418_996_800 + 6_038_323_200


def test_training_state_per_stage_and_gpus() -> None:
    e = estimate(get_preset("wan2.1-1.3b"), gpus=8)
    p = 1_418_996_800
    assert e["training"]["teacher"]["state_bytes_total"] == 20 * p  # weights, grads, 2 AdamW moments, EMA
    assert e["training"]["stage2"]["state_bytes_total"] == (20 + 16 + 4) * p  # + critic, + frozen teacher
    assert e["training"]["stage2"]["state_bytes_per_gpu"] == -(-40 * p // 8)
    with pytest.raises(ValueError, match="gpus=0"):
        estimate(get_preset("tiny"), gpus=0)


def test_estimate_cli_json(capsys) -> None:
    assert main(["estimate", "--preset", "wan2.1-1.3b", "--seconds", "10", "--batch", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"] == 1_418_996_800
    assert data["kv_cache_bytes"] == 2 * 6_038_323_200  # batch 2
    assert data["latent_frames"] == 40
    assert main(["estimate", "--preset", "wan2.1-1.3b"]) == 0
    assert "6.04 GB" in capsys.readouterr().out
    assert main(["estimate", "--preset", "huge"]) == 2
    assert "--preset: got 'huge'; allowed:" in capsys.readouterr().err
