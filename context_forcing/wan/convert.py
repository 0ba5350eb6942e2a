"""Import Wan2.1 weights (any `wan.loader` layout) as our checkpoint directory, so `train --init/--teacher`
and `generate --checkpoint` take them: config.json (the wan2.1-1.3b preset with the folder's model sizes) +
model.safetensors, written atomically."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.presets import get_preset
from context_forcing.wan.loader import load_transformer
from context_forcing.wan.pipeline import PRESET, model_config_for


def import_wan(
    source: str | os.PathLike,
    out: str | os.PathLike,
    wan_dir: str | os.PathLike | None = None,
    *,
    part: str = "auto",
    lora: str | os.PathLike | None = None,
    lora_alpha: float | None = None,
) -> Path:
    """Load `source` strictly (model sizes from `wan_dir`'s transformer/config.json, else the preset's) and
    save it as our fp32 checkpoint at `out`; returns `out`."""
    cfg = model_config_for(wan_dir)
    loaded = load_transformer(source, cfg, part=part, lora=lora, lora_alpha=lora_alpha)
    run = replace(get_preset(PRESET), model=cfg)
    return save_checkpoint(out, run, loaded.model.state_dict())
