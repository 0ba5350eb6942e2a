"""Self-Forcing-family training files (`model.pt`): memory-mapped read, network choice, key normalisation.

The family (Context Forcing, Self Forcing, Causal Forcing, LongLive) saves one `torch.save` dict with
`generator`, `generator_ema` (None before EMA starts), `critic`, optimizer states and `step`
(reference/wan_path.md section 1). Weights are original Wan2.1 names, prefixed `model.` (or `net.`),
sometimes with FSDP / activation-checkpointing / torch.compile wrapper components inside the name.
This module only reads and renames; `wan.loader` maps the names and checks them strictly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

# which entry of the dict holds the network, in order of preference for `part="auto"`
AUTO_ORDER = ("generator_ema", "generator", "model", "state_dict")
PARTS = ("auto", "generator_ema", "generator", "critic")
# the trainer's wrapper module around the Wan network (ComfyUI-style files: `model.diffusion_model.`)
_LEADING = ("model.diffusion_model.", "model.", "net.")
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


class WanCheckpointError(ValueError):
    """A file or directory that is not a usable Wan checkpoint; the message names the path and the reason."""


def read_torch_file(path: str | os.PathLike) -> dict:
    """`torch.load` with mmap (the critic and optimizer sections are never read into RAM) and weights_only."""
    path = Path(path)
    if not path.is_file():
        raise WanCheckpointError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(10)
    if head[8:10] == b'{"':  # safetensors: 8-byte header length, then the JSON header
        raise WanCheckpointError(
            f"{path}: not a readable torch checkpoint: it is a safetensors file; name it "
            f"*.safetensors to load it as a state file"
        )
    try:
        data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as error:
        if "mmap" not in str(error):  # legacy (non-zip) format cannot be memory-mapped: read it whole
            raise WanCheckpointError(
                f"{path}: not a readable torch checkpoint (truncated or corrupt?): {_first_line(error)}"
            ) from None
        data = _load_unmapped(path)
    except Exception as error:  # noqa: BLE001  pickle / zip / EOF errors of a damaged or foreign file
        raise WanCheckpointError(
            f"{path}: not a readable torch checkpoint (truncated, corrupt, or another "
            f"format such as safetensors?): {type(error).__name__}: {_first_line(error)}"
        ) from None
    if not isinstance(data, dict):
        raise WanCheckpointError(
            f"{path}: holds a {type(data).__name__}, expected a dict of weights or a "
            f"training dict with 'generator' / 'generator_ema'"
        )
    return data


def _load_unmapped(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise WanCheckpointError(
            f"{path}: not a readable torch checkpoint: {type(error).__name__}: {_first_line(error)}"
        ) from None


def pick_network(data: Mapping, part: str, source: str) -> tuple[str, dict[str, Tensor]]:
    """The chosen network's state dict and the entry it came from ('' for a bare tensor dict).

    `auto`: generator_ema, falling back to generator, then model / state_dict, then a bare tensor dict;
    an entry that is None (EMA before `ema_start_step`) counts as absent.
    """
    if part not in PARTS:
        raise WanCheckpointError(f"part={part!r}; allowed: {', '.join(PARTS)}")
    if part != "auto":
        value = data.get(part)
        if not isinstance(value, Mapping) or not value:
            present = sorted(k for k, v in data.items() if isinstance(v, Mapping) and v)
            raise WanCheckpointError(
                f"{source}: has no {part!r} weights (entry is "
                f"{'missing' if part not in data else repr(type(value).__name__)}); "
                f"entries with weights: {present}"
            )
        return part, _tensors(value, f"{source}[{part!r}]")
    for key in AUTO_ORDER:
        value = data.get(key)
        if isinstance(value, Mapping) and value:
            return key, _tensors(value, f"{source}[{key!r}]")
    if data and all(isinstance(v, Tensor) for v in data.values()):
        return "", dict(data)
    raise WanCheckpointError(
        f"{source}: found none of {list(AUTO_ORDER)} with weights and it is not a bare "
        f"tensor dict; top-level keys: {sorted(map(str, data))[:12]}"
    )


def _tensors(value: Mapping, source: str) -> dict[str, Tensor]:
    bad = [k for k, v in value.items() if not isinstance(v, Tensor)]
    if bad:
        raise WanCheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    return dict(value)


def normalise_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a leading `model.diffusion_model.`, `model.` or `net.` (the first that every key has), then
    every FSDP / checkpoint / compile wrapper component anywhere in a name. Two keys that collapse to one
    name are an error."""
    out: dict[str, Tensor] = {}
    for prefix in _LEADING:
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
            break
    for key, value in state.items():
        name = key
        for wrapper in _WRAPPERS:
            name = name.replace(wrapper, "")
        if name in out:
            raise WanCheckpointError(f"keys {key!r} and another both normalise to {name!r}")
        out[name] = value
    return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
