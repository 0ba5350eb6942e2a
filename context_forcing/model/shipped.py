"""The trained checkpoints that ship with the package (`checkpoints/PRESET/ROLE/`, package data), and export.

A shipped checkpoint is a plain checkpoint directory (config.json, model.safetensors, README.md model card);
the weights are stored in float16 to keep the repository small and are computed with in float32 (load_model
casts them into the float32 model). `checkpoints/` at the repository root links to the package's copy, so a
clone, an editable install and a regular `pip install .` all find them here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from context_forcing.model.checkpoint import WEIGHTS_FILE, read_config, resolve_checkpoint, save_checkpoint

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
# the Context Forcing student and its teacher; baselines trained at the same budget (docs/RESULTS.md)
ROLES = ("student", "teacher", "self-forcing-style", "longlive-style")
CARD_FILE = "README.md"


def shipped_checkpoint(preset: str, role: str = "student") -> Path | None:
    """The shipped checkpoint of a preset and role (one of ROLES), None when there is none."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = SHIPPED_DIR / preset / role
    return path if (path / WEIGHTS_FILE).is_file() else None


def export_checkpoint(source: str | os.PathLike, destination: str | os.PathLike,
                      dtype: torch.dtype = torch.float16) -> Path:
    """Copy a checkpoint's config and (EMA) weights, cast to `dtype`, into a checkpoint directory
    (atomically); a model card (README.md) already at the destination is kept."""
    checkpoint = resolve_checkpoint(source)
    run = read_config(checkpoint)
    weights = {k: v.to(dtype) if v.is_floating_point() else v
               for k, v in load_file(str(checkpoint / WEIGHTS_FILE)).items()}
    card = Path(destination) / CARD_FILE
    text = card.read_text() if card.is_file() else None
    keep_card = (lambda tmp: (tmp / CARD_FILE).write_text(text)) if text is not None else None
    return save_checkpoint(destination, run, weights, write_extra=keep_card)
