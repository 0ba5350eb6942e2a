"""Parity of CausalVideoDiT with diffusers' WanTransformer3DModel through `model.wan_adapter`.

Same random weights in both (every parameter randomised, including the zero-initialised head and the
modulation tables, so no path hides behind a zero); in bidirectional mode (no context, no frame mask,
temporal positions 0..F-1) the velocities must agree. Both models run in fp32 on CPU; the observed
difference is ~2e-6 on outputs of magnitude ~5, so ATOL = RTOL = 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel  # noqa: E402  test dependency (slow to import: only here)
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers  # noqa: E402

from context_forcing.conditioning import Conditioning  # noqa: E402
from context_forcing.config import ModelConfig, TextConfig  # noqa: E402
from context_forcing.model.dit import CausalVideoDiT  # noqa: E402
from context_forcing.model.wan_adapter import (  # noqa: E402
    WanKeyError,
    diffusers_config,
    from_diffusers,
    from_wan_original,
    key_map,
    load_diffusers_transformer,
    model_config_from_diffusers,
    to_diffusers,
    to_wan_original,
)
from context_forcing.presets import get_preset

ATOL = RTOL = 1e-5
# head_dim 32: 16 rotation pairs split (time 6, row 5, column 5), so a wrong split changes the output
TINY = ModelConfig(in_channels=4, out_channels=4, patch=(1, 2, 2), dim=64, heads=2, layers=2, ffn_dim=128,
                   text_dim=32, freq_dim=256)
BATCH, FRAMES, HEIGHT, WIDTH, PROMPT_LEN = 2, 4, 8, 8, 6
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)
# Wan2.1-T2V-1.3B (ecosystem.md): 12 heads x 128, 30 layers, FFN 8960, text 4096, freq 256, 16 channels
WAN21_1_3B = get_preset("wan2.1-1.3b").model  # the preset itself must match Wan


def randomize_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter ~ N(0, std): 1/sqrt(fan_in) for linear weights, 0.5 for biases, norms and tables."""
    with torch.no_grad():
        for p in model.parameters():
            std = p.shape[1] ** -0.5 if p.ndim == 2 else 0.5
            p.copy_(torch.randn(p.shape, generator=generator) * std)


@pytest.fixture(scope="module")
def models() -> tuple[CausalVideoDiT, WanTransformer3DModel]:
    ours = CausalVideoDiT(TINY, None).eval()
    randomize_(ours, torch.Generator().manual_seed(0))
    wan = WanTransformer3DModel(**diffusers_config(TINY)).eval()
    wan.load_state_dict(to_diffusers(ours.state_dict(), TINY), strict=True)
    return ours, wan


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, FRAMES, TINY.in_channels, HEIGHT, WIDTH, generator=g)  # (B, F, C, H, W)
    prompt_embeds = torch.randn(BATCH, PROMPT_LEN, TINY.text_dim, generator=g)
    return x, prompt_embeds


@torch.no_grad()
def ours_velocity(model: CausalVideoDiT, x: torch.Tensor, timesteps: torch.Tensor,
                  prompt_embeds: torch.Tensor) -> torch.Tensor:
    """Bidirectional mode: no context, no frame mask, temporal positions 0..F-1."""
    temporal = torch.arange(x.shape[1], dtype=torch.float32).expand(x.shape[0], -1)
    prompt = model.encode_prompt(Conditioning(prompt_embeds=prompt_embeds))
    return model(x, timesteps, prompt, temporal).velocity


@torch.no_grad()
def wan_velocity(model: WanTransformer3DModel, x: torch.Tensor, timestep: torch.Tensor,
                 prompt_embeds: torch.Tensor) -> torch.Tensor:
    out = model(x.transpose(1, 2), timestep, prompt_embeds).sample  # diffusers is (B, C, F, H, W)
    return out.transpose(1, 2)


def test_parity_scalar_timestep(models, inputs) -> None:
    ours, wan = models
    x, prompt_embeds = inputs
    t = torch.tensor([712.5, 250.0])  # one (fractional) timestep per sample
    expected = wan_velocity(wan, x, t, prompt_embeds)
    actual = ours_velocity(ours, x, t[:, None].expand(-1, FRAMES), prompt_embeds)
    assert expected.abs().max() > 1.0  # the random weights make a non-trivial output
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)


def test_parity_per_frame_timesteps(models, inputs) -> None:
    """Our (B, F) timesteps equal diffusers' 2-D path: (B, F * tokens_per_frame), one value per token."""
    ours, wan = models
    x, prompt_embeds = inputs
    t = torch.tensor([[0.0, 333.0, 666.0, 999.0], [950.0, 20.0, 500.5, 0.0]])  # (B, F), all distinct per row
    expected = wan_velocity(wan, x, t.repeat_interleave(TOKENS_PER_FRAME, dim=1), prompt_embeds)
    actual = ours_velocity(ours, x, t, prompt_embeds)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL)
    # the check can fail: the same timesteps assigned to the wrong frames give a different output
    wrong = ours_velocity(ours, x, t.flip(1), prompt_embeds)
    assert (wrong - expected).abs().max() > 100 * ATOL


def test_parity_state_dict_round_trip(models) -> None:
    ours, _ = models
    state = ours.state_dict()
    theirs = to_diffusers(state, TINY)
    fresh = WanTransformer3DModel(**diffusers_config(TINY))
    fresh.load_state_dict(theirs, strict=True)  # raises on any missing or unexpected key
    back = from_diffusers(fresh.state_dict(), TINY)
    assert back.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(back[name], value), name
    again = to_diffusers(back, TINY)
    assert all(torch.equal(again[k], v) for k, v in fresh.state_dict().items())


def test_parity_original_names_match_diffusers_converter(models) -> None:
    """Our original-Wan naming agrees with diffusers' own single-file converter for Wan2.1 checkpoints."""
    ours, _ = models
    state = ours.state_dict()
    original = to_wan_original(state, TINY)
    assert original["patch_embedding.weight"].shape == (TINY.dim, TINY.in_channels, 1, 2, 2)  # Conv3d
    via_diffusers = from_diffusers(convert_wan_transformer_to_diffusers(dict(original)), TINY)
    prefixed = {f"model.diffusion_model.{k}": v for k, v in original.items()}
    for converted in (via_diffusers, from_wan_original(original, TINY), from_wan_original(prefixed, TINY)):
        assert converted.keys() == state.keys()
        assert all(torch.equal(converted[k], v) for k, v in state.items())


def test_parity_wan21_1_3b_sizes_and_keys() -> None:
    with torch.device("meta"):
        wan = WanTransformer3DModel(**diffusers_config(WAN21_1_3B))
        ours = CausalVideoDiT(WAN21_1_3B, TextConfig(kind="umt5"))
    count = sum(p.numel() for p in wan.parameters())
    assert round(count / 1e9, 3) == 1.419
    assert sum(p.numel() for p in ours.parameters()) == count
    names = key_map(WAN21_1_3B)
    assert set(names) == set(ours.state_dict())
    assert set(names.values()) == set(wan.state_dict())
    converted = to_diffusers(ours.state_dict(), WAN21_1_3B)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in wan.state_dict().items()}
    assert model_config_from_diffusers(dict(wan.config)) == WAN21_1_3B


def test_parity_adapter_names_what_does_not_map(models) -> None:
    ours, _ = models
    state = ours.state_dict()
    with pytest.raises(ValueError, match="frame_embedding"):
        to_diffusers(state, ModelConfig(**{**TINY.__dict__, "action_dim": 2}))
    with_prompt_encoder = CausalVideoDiT(TINY, TextConfig(kind="attributes")).state_dict()
    with pytest.raises(WanKeyError, match="prompt_encoder.embedding.weight.*prompt_encoder` has no Wan2.1"):
        to_diffusers(with_prompt_encoder, TINY)
    missing = {k: v for k, v in state.items() if k != "blocks.1.norm3.bias"}
    with pytest.raises(WanKeyError, match=r"missing 1: blocks\.1\.norm3\.bias"):
        to_diffusers(missing, TINY)
    theirs = to_diffusers(state, TINY)
    with pytest.raises(WanKeyError, match=r"unexpected 1: blocks\.0\.norm3\.weight"):
        from_diffusers({**theirs, "blocks.0.norm3.weight": theirs["blocks.0.norm2.weight"]}, TINY)
    with pytest.raises(ValueError, match="image_dim"):
        model_config_from_diffusers({**diffusers_config(TINY), "image_dim": 1280})
    with pytest.raises(ValueError, match=r"unknown keys \['num_heads'\]"):
        model_config_from_diffusers({**diffusers_config(TINY), "num_heads": 2})


@pytest.mark.parametrize("shard_size", ["10GB", "100KB"])  # one safetensors file; shards with an index
def test_parity_load_diffusers_transformer_from_local_dir(models, inputs, tmp_path, shard_size) -> None:
    """A saved pipeline-style directory (root/transformer) loads into our model with the same output."""
    ours, wan = models
    x, prompt_embeds = inputs
    wan.save_pretrained(tmp_path / "transformer", max_shard_size=shard_size)
    loaded = load_diffusers_transformer(tmp_path, TextConfig(kind="umt5")).eval()
    assert loaded.cfg == TINY
    t = torch.tensor([[10.0, 500.0, 900.0, 0.0]]).expand(BATCH, -1)
    expected = ours_velocity(ours, x, t, prompt_embeds)
    torch.testing.assert_close(ours_velocity(loaded, x, t, prompt_embeds), expected, atol=0.0, rtol=0.0)
    with pytest.raises(ValueError, match="umT5"):
        load_diffusers_transformer(tmp_path, TextConfig(kind="attributes"))
