"""Checkpoint directories (DESIGN.md section 8): `config.json` + `model.safetensors` (+ `training_state/`).

A run directory holds `checkpoints/step-NNNNNN/` and a `latest` pointer written last. Every flag that takes
a checkpoint accepts either. Loading never executes code (JSON and safetensors only). Saving writes into a
temporary directory renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from context_forcing.config import RunConfig
from context_forcing.io.files import atomic_directory
from context_forcing.model.dit import CausalVideoDiT

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LATEST_FILE = "latest"


class CheckpointError(ValueError):
    """A path that is not a usable checkpoint or run directory; the message says why."""


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory, or a run directory's latest checkpoint."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return path
    if (path / LATEST_FILE).is_file():
        target = path / (path / LATEST_FILE).read_text().strip()
        if (target / CONFIG_FILE).is_file() and (target / WEIGHTS_FILE).is_file():
            return target
        raise CheckpointError(f"{path}: 'latest' points to {target}, which is not a checkpoint")
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    raise CheckpointError(f"{path}: neither a checkpoint ({CONFIG_FILE} + {WEIGHTS_FILE}) "
                          f"nor a run directory (with a '{LATEST_FILE}' file)")


def read_config(path: str | os.PathLike) -> RunConfig:
    """The RunConfig of a checkpoint or run directory."""
    checkpoint = resolve_checkpoint(path)
    return RunConfig.from_dict(json.loads((checkpoint / CONFIG_FILE).read_text()))


def load_model(path: str | os.PathLike,
               device: torch.device | str = "cpu") -> tuple[RunConfig, CausalVideoDiT]:
    """Rebuild the model from a checkpoint or run directory with no other input."""
    checkpoint = resolve_checkpoint(path)
    run = read_config(checkpoint)
    model = CausalVideoDiT(run.model, run.text)
    state = load_file(str(checkpoint / WEIGHTS_FILE), device=str(device))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{checkpoint}: weights do not match its config: "
                              f"{str(error).splitlines()[-1]}") from None
    if missing or unexpected:
        raise CheckpointError(f"{checkpoint}: weights do not match its config "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return run, model.to(device)


def save_checkpoint(directory: str | os.PathLike, run: RunConfig, model_state: dict[str, torch.Tensor],
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write a checkpoint atomically; `write_extra(tmp_dir)` may add files (e.g. training_state/)."""
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(run.to_dict(), indent=2) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / WEIGHTS_FILE))
        if write_extra is not None:
            write_extra(tmp)
    return Path(directory)


def point_latest(run_dir: str | os.PathLike, checkpoint: str | os.PathLike) -> None:
    """Atomically point the run directory's `latest` file at `checkpoint` (relative path); written last."""
    run_dir = Path(run_dir)
    tmp = run_dir / f".{LATEST_FILE}.tmp-{os.getpid()}"
    tmp.write_text(os.path.relpath(checkpoint, run_dir) + "\n")
    os.replace(tmp, run_dir / LATEST_FILE)
