"""Merging a PEFT LoRA (LongLive's `lora.pt`) into Wan2.1 weights: W += (alpha / r) B A.

LongLive v1 adapts every `nn.Linear` of each attention block (self- and cross-attention q, k, v, o and
`ffn.0`, `ffn.2`) with rank 256 and alpha 256; its file is `{"generator_lora": {...}}` or a bare PEFT dict
with keys `base_model.model.<module>.lora_{A,B}.weight` (reference/wan_path.md section 1.2). Every adapter
must name an existing 2-D weight of matching shape; anything else is an error, never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from context_forcing.wan.training_file import WanCheckpointError, normalise_keys

_PEFT_PREFIX = "base_model.model."
_KEY = re.compile(
    r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$"
)  # optional adapter name


def lora_pairs(lora: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """PEFT state dict -> {module name (original Wan naming): (A (r, in), B (out, r))}."""
    if "generator_lora" in lora and isinstance(lora["generator_lora"], Mapping):
        lora = lora["generator_lora"]
    state = {k.removeprefix(_PEFT_PREFIX): v for k, v in lora.items()}
    state = normalise_keys(state)
    parts: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = _KEY.match(key)
        if match is None:
            raise WanCheckpointError(
                f"LoRA key {key!r} is not '<module>.lora_A.weight' or '<module>.lora_B.weight'"
            )
        parts.setdefault(match["module"], {})[match["which"]] = value
    unpaired = sorted(m for m, p in parts.items() if len(p) != 2)
    if unpaired:
        raise WanCheckpointError(f"LoRA modules with only one of lora_A / lora_B: {unpaired[:5]}")
    return {module: (p["A"], p["B"]) for module, p in parts.items()}


def merge_lora(
    state: Mapping[str, Tensor], lora: Mapping[str, Tensor], alpha: float | None = None
) -> dict[str, Tensor]:
    """Return `state` (original Wan names) with every adapter merged; alpha None means alpha = rank (scale 1).

    The merge is computed in float32 and stored in each weight's own dtype.
    """
    pairs = lora_pairs(lora)
    if not pairs:
        raise WanCheckpointError("the LoRA file holds no adapters")
    out = dict(state)
    for module, (a, b) in sorted(pairs.items()):
        name = f"{module}.weight"
        if name not in out:
            raise WanCheckpointError(f"LoRA adapts {module!r}, which has no weight {name!r} in the model")
        weight = out[name]
        rank = a.shape[0]
        if (
            a.ndim != 2
            or b.ndim != 2
            or b.shape[1] != rank
            or (b.shape[0], a.shape[1]) != tuple(weight.shape)
        ):
            raise WanCheckpointError(
                f"LoRA {module!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not give "
                f"the weight's shape {tuple(weight.shape)}"
            )
        scale = (rank if alpha is None else alpha) / rank
        delta = scale * (b.to(torch.float32) @ a.to(torch.float32))
        out[name] = (weight.to(torch.float32) + delta).to(weight.dtype)
    return out
