"""The strict Wan loader on every Self-Forcing-family layout, LoRA merge, errors, diffusers round trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from context_forcing.conditioning import Conditioning
from context_forcing.config import ModelConfig
from context_forcing.model.wan_adapter import to_diffusers, to_wan_original
from context_forcing.wan.loader import detect_layout, load_transformer, save_diffusers
from context_forcing.wan.training_file import WanCheckpointError

from .conftest import TINY, tiny_transformer


def original(model) -> dict[str, torch.Tensor]:
    return to_wan_original(model.state_dict(), TINY)


def assert_same_weights(loaded, model) -> None:
    state = loaded.state_dict()
    assert state.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(state[name], value), name


def velocity(model, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, TINY.in_channels, 4, 4, generator=g)
    embeds = torch.randn(1, 5, TINY.text_dim, generator=g)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        prompt = model.encode_prompt(Conditioning(prompt_embeds=embeds))
        return model(
            x.to(dtype), torch.tensor([[500.0, 0.0]]), prompt, torch.arange(2.0)[None]
        ).velocity.float()


def layouts(ema, generator, critic):
    """(name, training dict, expected network) for each released layout (reference/wan_path.md 1.1-1.2)."""
    fsdp = {f"model._fsdp_wrapped_module.{k}": v for k, v in original(ema).items()}
    prefixed = {f"model.{k}": v for k, v in original(generator).items()}
    compiled = {f"net.{k.replace('blocks.', 'blocks._orig_mod.', 1)}": v for k, v in original(ema).items()}
    return [
        (
            "cf-ema-fsdp",
            {
                "step": 600,
                "generator": prefixed,
                "generator_ema": fsdp,
                "critic": original(critic),
                "generator_optimizer": {"state": {}, "param_groups": []},
                "critic_optimizer": None,
            },
            ema,
        ),
        ("ema-none-falls-back", {"generator": prefixed, "generator_ema": None, "critic": None}, generator),
        ("causal-forcing-net-compile", {"generator": compiled}, ema),
        ("bare", original(generator), generator),
    ]


def test_training_file_layouts_load_the_right_network(tmp_path) -> None:
    ema, generator, critic = tiny_transformer(1), tiny_transformer(2), tiny_transformer(3)
    for name, data, expected in layouts(ema, generator, critic):
        path = tmp_path / f"{name}.pt"
        torch.save(data, path)
        assert detect_layout(path) == "training-file"
        assert_same_weights(load_transformer(path, TINY).model, expected)


def test_training_file_parts_and_legacy_format(tmp_path) -> None:
    ema, generator, critic = tiny_transformer(1), tiny_transformer(2), tiny_transformer(3)
    _, data, _ = layouts(ema, generator, critic)[0]
    path = tmp_path / "model.pt"
    torch.save(data, path)
    loaded = load_transformer(path, TINY, part="generator")
    assert loaded.entry == "generator"
    assert_same_weights(loaded.model, generator)
    assert_same_weights(load_transformer(path, TINY, part="critic").model, critic)
    legacy = tmp_path / "legacy.pt"  # pre-zip format cannot be memory-mapped: read whole instead
    torch.save(data, legacy, _use_new_zipfile_serialization=False)
    assert_same_weights(load_transformer(legacy, TINY).model, ema)
    with pytest.raises(WanCheckpointError, match=r"no 'critic' weights \(entry is 'NoneType'\)"):
        torch.save({**data, "critic": None}, path)
        load_transformer(path, TINY, part="critic")


def test_strict_key_check_names_missing_and_unexpected(tmp_path) -> None:
    state = original(tiny_transformer())
    state.pop("blocks.1.ffn.2.bias")
    state["blocks.0.self_attn.extra.weight"] = torch.zeros(2)
    path = tmp_path / "model.pt"
    torch.save({"generator_ema": {f"model.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(
        WanCheckpointError,
        match=r"missing 1: blocks\.1\.ffn\.2\.bias.*unexpected 1: "
        r"blocks\.0\.self_attn\.extra\.weight",
    ):
        load_transformer(path, TINY)
    wrong = ModelConfig(**{**TINY.__dict__, "ffn_dim": 96})  # same names, other shapes
    torch.save(original(tiny_transformer()), path)
    with pytest.raises(WanCheckpointError, match="weights do not fit the model config"):
        load_transformer(path, wrong)
    with pytest.raises(WanCheckpointError, match="carries no model config; pass cfg"):
        load_transformer(path)


def test_truncated_and_mislabelled_files_fail_clearly(tmp_path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"generator_ema": original(tiny_transformer())}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WanCheckpointError, match=r"truncated\.pt: not a readable torch checkpoint"):
        load_transformer(truncated, TINY)
    mislabelled = tmp_path / "weights.pt"  # a safetensors file with a .pt name
    save_file(original(tiny_transformer()), str(mislabelled))
    with pytest.raises(
        WanCheckpointError, match=r"weights\.pt: not a readable torch checkpoint.*safetensors"
    ):
        load_transformer(mislabelled, TINY)
    optimizer_only = tmp_path / "optim.pt"
    torch.save({"step": 3, "generator_optimizer": {"state": {}}}, optimizer_only)
    with pytest.raises(
        WanCheckpointError, match=r"found none of \['generator_ema', 'generator'.*top-level keys"
    ):
        load_transformer(optimizer_only, TINY)
    with pytest.raises(WanCheckpointError, match="unknown weight file suffix '.txt'"):
        (tmp_path / "x.txt").write_text("x")
        load_transformer(tmp_path / "x.txt", TINY)


def test_lora_merge_longlive_peft_layout(tmp_path) -> None:
    base = tiny_transformer(1)
    g = torch.Generator().manual_seed(7)
    rank, alpha = 4, 8.0
    lora, modules = {}, ["blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"]
    for module in modules:
        out_features, in_features = base.get_submodule(module).weight.shape
        lora[f"base_model.model.{module}.lora_A.weight"] = torch.randn(rank, in_features, generator=g)
        lora[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out_features, rank, generator=g)
    checkpoint, lora_file = tmp_path / "longlive_base.pt", tmp_path / "lora.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in original(base).items()}}, checkpoint)
    torch.save({"generator_lora": lora}, lora_file)
    merged = load_transformer(checkpoint, TINY, lora=lora_file, lora_alpha=alpha).model.state_dict()
    for name, value in base.state_dict().items():
        module = name.removesuffix(".weight")
        if module in modules:
            a, b = (
                lora[f"base_model.model.{module}.lora_A.weight"],
                lora[f"base_model.model.{module}.lora_B.weight"],
            )
            torch.testing.assert_close(merged[name], value + alpha / rank * b @ a, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(merged[name], value), name
    torch.save(
        {
            "base_model.model.blocks.0.self_attn.nope.lora_A.weight": torch.zeros(4, 64),
            "base_model.model.blocks.0.self_attn.nope.lora_B.weight": torch.zeros(64, 4),
        },
        lora_file,
    )
    with pytest.raises(WanCheckpointError, match="adapts 'blocks.0.self_attn.nope'"):
        load_transformer(checkpoint, TINY, lora=lora_file)


def test_diffusers_round_trip_opens_in_wan_transformer(tmp_path) -> None:
    """Our weights -> diffusers folder -> WanTransformer3DModel.from_pretrained gives the same velocity."""
    from diffusers import WanTransformer3DModel

    ours = tiny_transformer(4)
    folder = save_diffusers(ours, tmp_path / "transformer")
    wan = WanTransformer3DModel.from_pretrained(str(folder)).eval()
    assert all(torch.equal(wan.state_dict()[k], v) for k, v in to_diffusers(ours.state_dict(), TINY).items())
    g = torch.Generator().manual_seed(0)
    x, embeds = torch.randn(1, 2, 4, 4, 4, generator=g), torch.randn(1, 5, TINY.text_dim, generator=g)
    with torch.no_grad():
        theirs = wan(x.transpose(1, 2), torch.tensor([300.0]), embeds).sample.transpose(1, 2)
        prompt = ours.encode_prompt(Conditioning(prompt_embeds=embeds))
        mine = ours(x, torch.tensor([[300.0, 300.0]]), prompt, torch.arange(2.0)[None]).velocity
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    loaded = load_transformer(tmp_path, TINY)  # a pipeline root with transformer/
    assert loaded.layout == "diffusers"
    assert_same_weights(loaded.model, ours)


def test_save_diffusers_refuses_action_models(tmp_path) -> None:
    from context_forcing.model.dit import CausalVideoDiT

    with_actions = CausalVideoDiT(ModelConfig(**{**TINY.__dict__, "action_dim": 3}), None)
    with pytest.raises(ValueError, match="frame_embedding, which Wan2.1 lacks"):
        save_diffusers(with_actions, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_state_files_and_our_checkpoints(tmp_path) -> None:
    from dataclasses import replace

    from context_forcing.model.checkpoint import save_checkpoint
    from context_forcing.presets import get_preset

    model = tiny_transformer(5)
    comfy = tmp_path / "wan_comfy.safetensors"
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in original(model).items()}, str(comfy))
    assert_same_weights(load_transformer(comfy, TINY).model, model)
    diffusers_names = tmp_path / "diffusers_names.safetensors"
    save_file(
        {k: v.contiguous() for k, v in to_diffusers(model.state_dict(), TINY).items()}, str(diffusers_names)
    )
    assert_same_weights(load_transformer(diffusers_names, TINY).model, model)
    run = replace(get_preset("wan2.1-1.3b"), model=TINY)
    save_checkpoint(tmp_path / "ours", run, model.state_dict())
    loaded = load_transformer(tmp_path / "ours")
    assert loaded.layout == "ours" and loaded.run == run
    assert_same_weights(loaded.model, model)
    with pytest.raises(WanCheckpointError, match="part='critic' applies to training files"):
        load_transformer(tmp_path / "ours", part="critic")


def test_cast_policies() -> None:
    """`official` stores bf16 weights and stays close to fp32; an unknown policy names the allowed ones."""
    from context_forcing.wan.loader import build_model

    model = tiny_transformer(6)
    official = build_model(dict(model.state_dict()), TINY, "official", "cpu")
    assert {p.dtype for p in official.parameters()} == {torch.bfloat16}
    fp32 = velocity(model)
    diff = (velocity(official) - fp32).abs().max()
    assert 0 < diff < 0.1 * fp32.abs().max()
    with pytest.raises(ValueError, match="cast='fp16'; allowed: fp32, official"):
        load_transformer("unused.pt", TINY, cast="fp16")


def test_released_1_3b_layout_passes_the_strict_check() -> None:
    """The 825 tensors of Wan2.1-1.3B in the CF EMA layout (FSDP infix) map strictly (meta tensors)."""
    from context_forcing.config import TextConfig
    from context_forcing.model.dit import CausalVideoDiT
    from context_forcing.presets import get_preset
    from context_forcing.wan.loader import state_from_any_names
    from context_forcing.wan.training_file import normalise_keys, pick_network

    cfg = get_preset("wan2.1-1.3b").model
    with torch.device("meta"):
        model = CausalVideoDiT(cfg, TextConfig(kind="umt5"))
    original = to_wan_original(model.state_dict(), cfg)
    assert len(original) == 825
    data = {"generator_ema": {f"model._fsdp_wrapped_module.{k}": v for k, v in original.items()}, "step": 600}
    entry, raw = pick_network(data, "auto", "model.pt")
    state = state_from_any_names(normalise_keys(raw), cfg, "model.pt")
    assert entry == "generator_ema" and state.keys() == model.state_dict().keys()
    assert sum(v.numel() for v in state.values()) == 1_418_996_800
    raw.pop("model._fsdp_wrapped_module.blocks.29.ffn.2.weight")
    with pytest.raises(WanCheckpointError, match=r"model\.pt: .*missing 1: blocks\.29\.ffn\.2\.weight"):
        state_from_any_names(normalise_keys(raw), cfg, "model.pt")
