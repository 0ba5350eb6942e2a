"""One strict loader for Wan2.1 transformers in every layout we meet, and a diffusers-format writer.

Layouts (`detect_layout`):
- `training-file`: a Self-Forcing-family `model.pt` (Context Forcing, Self Forcing, Causal Forcing,
  LongLive): `generator_ema`, falling back to `generator` (or `critic` on request), names normalised;
- `state-file`: a bare `.safetensors` / `.pt` of original Wan2.1 names (or diffusers names);
- `diffusers`: a diffusers directory (a `WanTransformer3DModel` folder or a pipeline root with
  `transformer/`), single or sharded safetensors;
- `ours`: our checkpoint or run directory (`config.json` + `model.safetensors`).
Files carry no model config, so they need `cfg` (the pipeline takes it from a Wan2.1 diffusers folder's
`transformer/config.json`, else the preset). Every layout ends in the same strict key check, which names
missing and unexpected keys (the official loaders' `strict=False` would hide them).

Cast policies: `fp32` (everything float32) or `official` (every weight bf16, as the release's
`pipeline.to(bf16)`; attention then applies RoPE in float64, see `model.attention`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from context_forcing.config import ModelConfig, RunConfig, TextConfig
from context_forcing.io.files import atomic_directory
from context_forcing.model.checkpoint import CheckpointError, load_model, resolve_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.wan_adapter import (
    WanKeyError,
    diffusers_config,
    from_diffusers,
    from_wan_original,
    load_diffusers_transformer,
    model_config_from_diffusers,
    to_diffusers,
)
from context_forcing.wan.lora import merge_lora
from context_forcing.wan.training_file import (
    WanCheckpointError,
    normalise_keys,
    pick_network,
    read_torch_file,
)

CAST_POLICIES = {"fp32": torch.float32, "official": torch.bfloat16}
LAYOUTS = ("training-file", "state-file", "diffusers", "ours")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_VERSION = "0.42.1"  # written into config.json; the version our round trip was tested with


@dataclass
class LoadedTransformer:
    """A loaded network and where it came from (for reports)."""

    model: CausalVideoDiT
    layout: str
    entry: str  # training-file entry used ('generator_ema', 'generator', 'critic', '' for a bare dict)
    run: RunConfig | None = None  # only for our own checkpoints


def detect_layout(path: str | os.PathLike) -> str:
    """Which of LAYOUTS `path` is; WanCheckpointError naming what was found otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return "state-file"
        if path.suffix in _TORCH_SUFFIXES:
            return "training-file"
        raise WanCheckpointError(
            f"{path}: unknown weight file suffix {path.suffix!r}; allowed: .safetensors, "
            f"{', '.join(_TORCH_SUFFIXES)}"
        )
    if not path.is_dir():
        raise WanCheckpointError(f"{path}: no such file or directory")
    try:
        resolve_checkpoint(path)
        return "ours"
    except CheckpointError:
        pass
    for folder in (path, path / "transformer"):
        config = folder / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("_class_name") == "WanTransformer3DModel":
            return "diffusers"
    raise WanCheckpointError(
        f"{path}: neither our checkpoint (config.json + model.safetensors), nor a diffusers "
        f"WanTransformer3DModel folder (config.json with _class_name WanTransformer3DModel, "
        f"here or in transformer/); found {sorted(p.name for p in path.iterdir())[:12]}"
    )


def load_transformer(
    path: str | os.PathLike,
    cfg: ModelConfig | None = None,
    *,
    part: str = "auto",
    lora: str | os.PathLike | None = None,
    lora_alpha: float | None = None,
    cast: str = "fp32",
    device: torch.device | str = "cpu",
) -> LoadedTransformer:
    """Load a Wan2.1 text-to-video transformer from any of LAYOUTS into a CausalVideoDiT (eval mode).

    cfg: required for files (they carry no config); for directories, checked against theirs when given.
    part: training files only ('auto', 'generator_ema', 'generator', 'critic'). lora: a PEFT LoRA file merged
    into the weights (LongLive), alpha None = rank. cast: one of CAST_POLICIES.
    """
    if cast not in CAST_POLICIES:
        raise ValueError(f"cast={cast!r}; allowed: {', '.join(CAST_POLICIES)}")
    layout = detect_layout(path)
    if part != "auto" and layout != "training-file":
        raise WanCheckpointError(
            f"part={part!r} applies to training files (model.pt); {path} is a {layout} checkpoint"
        )
    run, entry = None, ""
    if layout in ("training-file", "state-file"):
        if cfg is None:
            raise WanCheckpointError(
                f"{path}: a weight file carries no model config; pass cfg (the pipeline "
                f"reads it from a Wan2.1 folder's transformer/config.json or the preset)"
            )
        if layout == "training-file":
            entry, raw = pick_network(read_torch_file(path), part, str(path))
        else:
            raw = load_file(str(path))
        state = state_from_any_names(normalise_keys(raw), cfg, str(path))
    elif layout == "diffusers":
        model = load_diffusers_transformer(path, TextConfig(kind="umt5"))
        state = model.state_dict()
    else:
        run, model = load_model(path)
        if run.text.kind != "umt5":
            raise WanCheckpointError(
                f"{path}: made with preset {run.preset!r} (text.kind {run.text.kind!r}); "
                f"Wan pipelines need umT5 prompts"
            )
        state = model.state_dict()
    loaded_cfg = cfg if layout in ("training-file", "state-file") else (run.model if run else model.cfg)
    if cfg is not None and loaded_cfg != cfg:
        raise WanCheckpointError(
            f"{path}: its model config {loaded_cfg} differs from the one asked for {cfg}"
        )
    if lora is not None:
        lora_state = read_torch_file(lora) if Path(lora).suffix != ".safetensors" else load_file(str(lora))
        state = merge_lora(state, lora_state, lora_alpha)
    return LoadedTransformer(build_model(state, loaded_cfg, cast, device), layout, entry, run)


def state_from_any_names(state: dict[str, Tensor], cfg: ModelConfig, source: str) -> dict[str, Tensor]:
    """Original Wan2.1 names (optionally `model.diffusion_model.`) or diffusers names -> ours, strictly."""
    try:
        if any(k.startswith("condition_embedder.") for k in state):
            return from_diffusers(state, cfg)
        return from_wan_original(state, cfg)
    except (WanKeyError, ValueError) as error:
        raise WanCheckpointError(f"{source}: {error}") from None


def build_model(
    state: dict[str, Tensor], cfg: ModelConfig, cast: str, device: torch.device | str
) -> CausalVideoDiT:
    """A CausalVideoDiT holding exactly `state` (strict), cast by policy, on `device`, in eval mode."""
    with torch.device("meta"):
        model = CausalVideoDiT(cfg, TextConfig(kind="umt5"))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:  # shapes (the names were checked already)
        raise WanCheckpointError(
            f"weights do not fit the model config: {str(error).splitlines()[-1].strip()}"
        ) from None
    return model.to(device=device, dtype=CAST_POLICIES[cast]).eval()


def save_diffusers(model: CausalVideoDiT, directory: str | os.PathLike) -> Path:
    """Write `model` as a diffusers `WanTransformer3DModel` folder (config.json + safetensors), atomically.

    Models with per-frame actions or pose (or an attribute prompt encoder) have no diffusers counterpart
    and are refused with the reason.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in to_diffusers(model.state_dict(), model.cfg).items()}
    config = {
        "_class_name": "WanTransformer3DModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        **diffusers_config(model.cfg),
    }
    config["patch_size"] = list(config["patch_size"])
    model_config_from_diffusers(config)  # our own reader must accept what we write
    with atomic_directory(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(tmp / DIFFUSERS_WEIGHTS), metadata={"format": "pt"})
    return Path(directory)
