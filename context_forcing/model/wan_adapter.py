"""Wan2.1 weights <-> CausalVideoDiT: key maps to and from diffusers and the original Wan checkpoints.

Our parameter names are the original Wan2.1 names, so an original checkpoint differs from ours only in the
patch embedding: Wan's is a Conv3d (D, C, 1, ph, pw), ours a Linear (D, C * ph * pw) over patches
flattened in (c, ph, pw) order, the same numbers viewed differently. diffusers renames (see `key_map`),
notably swapping the two block norms: our cross-attention LayerNorm `norm3` (affine) is diffusers'
`norm2`; the pre-FFN `norm2` has no parameters (diffusers' `norm3`).

The state-dict functions are pure: they rename and reshape (views, no copies) and refuse any key set
that is not exactly the expected one, naming the missing and unexpected keys. Our optional modules with
no Wan counterpart (`frame_embedding` for actions / pose, `prompt_encoder` for attribute prompts) are
errors here. `parity` tests in tests/model/test_wan_parity.py prove the mapping against diffusers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from context_forcing.config import ModelConfig, TextConfig
from context_forcing.model.dit import CausalVideoDiT

_LINEAR = ("weight", "bias")
_RMS = ("weight",)
_TABLE = ("",)  # a bare nn.Parameter

# (our / original-Wan module, diffusers module, parameter suffixes)
_TOP = (
    ("patch_embedding", "patch_embedding", _LINEAR),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1", _LINEAR),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2", _LINEAR),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1", _LINEAR),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2", _LINEAR),
    ("time_projection.1", "condition_embedder.time_proj", _LINEAR),
    ("head.head", "proj_out", _LINEAR),
    ("head.modulation", "scale_shift_table", _TABLE),
)
_BLOCK = (
    ("modulation", "scale_shift_table", _TABLE),
    *((f"{ours}.{p}", f"{theirs}.{q}", _LINEAR)
      for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2"))
      for p, q in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))),
    *((f"{ours}.{n}", f"{theirs}.{n}", _RMS)
      for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2")) for n in ("norm_q", "norm_k")),
    ("norm3", "norm2", _LINEAR),  # the cross-attention LayerNorm, the only block norm with parameters
    ("ffn.0", "ffn.net.0.proj", _LINEAR),
    ("ffn.2", "ffn.net.2", _LINEAR),
)
_NOT_IN_WAN = {"frame_embedding.": "model.action_dim / model.pose_freqs > 0 (per-frame actions or pose)",
               "prompt_encoder.": "text.kind == 'attributes' (use TextConfig(kind='umt5') or text=None)"}
_WAN_ROPE_THETA = 10000.0  # diffusers' WanRotaryPosEmbed is built with its default theta; not configurable
_ORIGINAL_PREFIX = "model.diffusion_model."  # ComfyUI-style original checkpoints
_WEIGHTS = "diffusion_pytorch_model"  # diffusers' weight file stem


class WanKeyError(KeyError):
    """A state dict whose keys are not exactly those of a Wan-compatible model of the given config."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def key_map(cfg: ModelConfig) -> dict[str, str]:
    """Every parameter name of a Wan-compatible CausalVideoDiT (= original Wan2.1 name) -> diffusers' name."""
    def names(ours: str, theirs: str, suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
        return [(f"{ours}.{s}", f"{theirs}.{s}") if s else (ours, theirs) for s in suffixes]

    pairs = [pair for entry in _TOP for pair in names(*entry)]
    for i in range(cfg.layers):
        pairs += [pair for ours, theirs, sfx in _BLOCK
                  for pair in names(f"blocks.{i}.{ours}", f"blocks.{i}.{theirs}", sfx)]
    return dict(pairs)


def to_diffusers(state: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our state dict -> `WanTransformer3DModel` state dict (patch embedding Linear -> Conv3d view)."""
    _require_wan_compatible(cfg)
    names = key_map(cfg)
    _check_keys(state, names.keys(), "our model")
    out = {names[k]: v for k, v in state.items()}
    out["patch_embedding.weight"] = _conv_patch(state["patch_embedding.weight"], cfg)
    return out


def from_diffusers(state: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """`WanTransformer3DModel` state dict -> ours (inverse of `to_diffusers`)."""
    _require_wan_compatible(cfg)
    names = {theirs: ours for ours, theirs in key_map(cfg).items()}
    _check_keys(state, names.keys(), "a diffusers WanTransformer3DModel")
    out = {names[k]: v for k, v in state.items()}
    out["patch_embedding.weight"] = _linear_patch(state["patch_embedding.weight"], cfg)
    return out


def from_wan_original(state: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Original Wan2.1 checkpoint (optionally prefixed `model.diffusion_model.`) -> ours."""
    _require_wan_compatible(cfg)
    if state and all(k.startswith(_ORIGINAL_PREFIX) for k in state):
        state = {k.removeprefix(_ORIGINAL_PREFIX): v for k, v in state.items()}
    _check_keys(state, key_map(cfg).keys(), "an original Wan2.1 checkpoint")
    return {**state, "patch_embedding.weight": _linear_patch(state["patch_embedding.weight"], cfg)}


def to_wan_original(state: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Ours -> original Wan2.1 checkpoint names (inverse of `from_wan_original`)."""
    _require_wan_compatible(cfg)
    _check_keys(state, key_map(cfg).keys(), "our model")
    return {**state, "patch_embedding.weight": _conv_patch(state["patch_embedding.weight"], cfg)}


def diffusers_config(cfg: ModelConfig) -> dict[str, Any]:
    """`WanTransformer3DModel(**kwargs)` arguments for a model of these sizes (text-to-video Wan2.1)."""
    _require_wan_compatible(cfg)
    return {
        "patch_size": tuple(cfg.patch), "num_attention_heads": cfg.heads, "attention_head_dim": cfg.head_dim,
        "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "text_dim": cfg.text_dim,
        "freq_dim": cfg.freq_dim, "ffn_dim": cfg.ffn_dim, "num_layers": cfg.layers,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": cfg.eps,
        "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024, "pos_embed_seq_len": None,
    }


def model_config_from_diffusers(config: Mapping[str, Any]) -> ModelConfig:
    """A diffusers `WanTransformer3DModel` config (its config.json) -> ModelConfig.

    Only text-to-video Wan2.1 is supported: image conditioning (I2V) and configs without the
    cross-attention norm or with another q/k norm have no counterpart in CausalVideoDiT.
    """
    config = {k: v for k, v in config.items() if not k.startswith("_")}  # _class_name, _diffusers_version
    required = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "text_dim",
                "freq_dim", "ffn_dim", "num_layers")
    # rope_max_seq_len only sizes diffusers' RoPE table (ours takes any position); window_size: old configs
    optional = {"out_channels": None, "eps": 1e-6, "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads", "image_dim": None, "added_kv_proj_dim": None,
                "pos_embed_seq_len": None, "rope_max_seq_len": 1024, "window_size": (-1, -1)}
    missing = [k for k in required if k not in config]
    unknown = sorted(set(config) - set(required) - set(optional))
    if missing or unknown:
        raise ValueError(f"WanTransformer3DModel config: missing keys {missing}, unknown keys {unknown}")
    c = {**optional, **config}
    unsupported = {
        "cross_attn_norm": c["cross_attn_norm"] is True,
        "qk_norm": c["qk_norm"] == "rms_norm_across_heads",
        "image_dim": c["image_dim"] is None,
        "added_kv_proj_dim": c["added_kv_proj_dim"] is None,
        "pos_embed_seq_len": c["pos_embed_seq_len"] is None,
        "window_size": tuple(c["window_size"]) == (-1, -1),
    }
    bad = {k: c[k] for k, ok in unsupported.items() if not ok}
    if bad:
        raise ValueError(f"WanTransformer3DModel config {bad} is not supported: CausalVideoDiT is "
                         "text-to-video Wan2.1 (cross_attn_norm=True, qk_norm='rms_norm_across_heads', "
                         "no image inputs, global attention)")
    heads, head_dim = int(c["num_attention_heads"]), int(c["attention_head_dim"])
    return ModelConfig(
        in_channels=int(c["in_channels"]), out_channels=int(c["out_channels"] or c["in_channels"]),
        patch=tuple(int(p) for p in c["patch_size"]), dim=heads * head_dim, heads=heads,
        layers=int(c["num_layers"]), ffn_dim=int(c["ffn_dim"]), text_dim=int(c["text_dim"]),
        freq_dim=int(c["freq_dim"]), eps=float(c["eps"]), rope_theta=_WAN_ROPE_THETA,
    )


def load_diffusers_transformer(path: str | Path, text: TextConfig | None = None, *,
                               dtype: torch.dtype = torch.float32,
                               subfolder: str | None = None) -> CausalVideoDiT:
    """Build a CausalVideoDiT from a LOCAL diffusers directory (a pipeline root or its `transformer/`).

    Reads `config.json` and the safetensors weights (single file or sharded with an index) directly: no
    network, no diffusers import, and no `from_pretrained`, which in diffusers 0.42.1 refuses to load Wan
    without `accelerate` (`_keep_in_fp32_modules` forces low_cpu_mem_usage). The config is checked before
    any weight is read. `text` must be None or kind 'umt5'.
    """
    if text is not None and text.kind != "umt5":
        raise ValueError(f"Wan weights take umT5 prompt embeddings; got text.kind={text.kind!r} "
                         "(use TextConfig(kind='umt5') or text=None)")
    root = _transformer_dir(Path(path), subfolder)
    config = json.loads((root / "config.json").read_text())
    if config.get("_class_name", "WanTransformer3DModel") != "WanTransformer3DModel":
        raise ValueError(f"{root / 'config.json'} describes a {config['_class_name']}, "
                         "not a WanTransformer3DModel")
    cfg = model_config_from_diffusers(config)  # fail fast, before reading gigabytes of weights
    state = from_diffusers(_read_weights(root), cfg)
    with torch.device("meta"):
        model = CausalVideoDiT(cfg, text)
    model.load_state_dict(state, strict=True, assign=True)  # take the loaded tensors, no copy
    return model.to(dtype)


# ---- helpers -------------------------------------------------------------------------------------------


def _require_wan_compatible(cfg: ModelConfig) -> None:
    if cfg.frame_cond_dim:
        raise ValueError(f"model.action_dim={cfg.action_dim}, model.pose_freqs={cfg.pose_freqs}: the model "
                         "has a frame_embedding, which Wan2.1 lacks; only configs with both 0 map to Wan")
    if cfg.rope_theta != _WAN_ROPE_THETA:
        raise ValueError(f"model.rope_theta={cfg.rope_theta}: Wan2.1 (and diffusers) use {_WAN_ROPE_THETA}")


def _check_keys(state: Mapping[str, Tensor], expected: Iterable[str], source: str) -> None:
    """Raise WanKeyError naming missing and unexpected keys (and why a non-Wan module is unexpected)."""
    expected = set(expected)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if not missing and not unexpected:
        return
    lines = [f"state dict is not {source} of this config ({len(expected)} keys expected)"]
    if missing:
        lines.append(f"missing {len(missing)}: {_preview(missing)}")
    if unexpected:
        lines.append(f"unexpected {len(unexpected)}: {_preview(unexpected)}")
    for prefix, why in _NOT_IN_WAN.items():
        if any(k.startswith(prefix) for k in unexpected):
            lines.append(f"`{prefix[:-1]}` has no Wan2.1 counterpart; it exists when {why}")
    raise WanKeyError("; ".join(lines))


def _preview(keys: list[str], limit: int = 12) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _conv_patch(weight: Tensor, cfg: ModelConfig) -> Tensor:
    """Linear (D, C * ph * pw) in (c, ph, pw) order -> Conv3d (D, C, pt, ph, pw)."""
    _check_shape("patch_embedding.weight", weight, (cfg.dim, cfg.patch_features))
    return weight.reshape(cfg.dim, cfg.in_channels, *cfg.patch)


def _linear_patch(weight: Tensor, cfg: ModelConfig) -> Tensor:
    """Conv3d (D, C, pt, ph, pw) -> Linear (D, C * ph * pw)."""
    _check_shape("patch_embedding.weight", weight, (cfg.dim, cfg.in_channels, *cfg.patch))
    return weight.reshape(cfg.dim, cfg.patch_features)


def _check_shape(name: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, this config expects {shape}")


def _transformer_dir(root: Path, subfolder: str | None) -> Path:
    """The directory holding the transformer's config.json: root/subfolder, root, or root/transformer."""
    candidates = [root / subfolder] if subfolder else [root, root / "transformer"]
    for directory in candidates:
        if (directory / "config.json").is_file():
            return directory
    raise FileNotFoundError(f"no diffusers transformer config.json in "
                            f"{' or '.join(map(str, candidates))}")


def _read_weights(root: Path) -> dict[str, Tensor]:
    """diffusers' safetensors weights of one model: a single file, or shards listed in an index."""
    from safetensors.torch import load_file  # noqa: PLC0415

    single, index = root / f"{_WEIGHTS}.safetensors", root / f"{_WEIGHTS}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(root / shard).items()}
    if single.is_file():
        return load_file(single)
    raise FileNotFoundError(f"no {single.name} or {index.name} in {root} (only safetensors weights are "
                            f"read); found {sorted(p.name for p in root.iterdir())}")
