"""The run directory of one training run (DESIGN.md section 8).

    RUN_DIR/
      config.json          resolved RunConfig
      train_config.json    resolved TrainConfig
      metrics.jsonl        one JSON row per generator update: {"step", "time", **stage metrics}
      tb/                  TensorBoard events
      checkpoints/step-NNNNNN/{config.json, model.safetensors, training_state/}
      latest               relative path of the newest complete checkpoint, written last

Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from context_forcing.config import ConfigError, RunConfig
from context_forcing.io.files import atomic_write, atomic_write_json
from context_forcing.model.checkpoint import CONFIG_FILE, LATEST_FILE, CheckpointError, resolve_checkpoint
from context_forcing.training.config import TrainConfig

TRAIN_CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
TB_DIR = "tb"
STATE_DIR = "training_state"
LOOP_FILE = "loop.json"
# may change between invocations: `steps` may grow (continue a finished run for longer); which old
# checkpoints stay on disk and what is probed for the log do not change the trajectory
RESUMABLE_KEYS = ("steps", "keep_checkpoints", "keep_every", "probe_every", "probe_episodes")


def is_main() -> bool:
    """True on the process that writes files (rank 0)."""
    from context_forcing.training.distributed import rank

    return rank() == 0


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:06d}"


def write_configs(run_dir: Path, run: RunConfig, train: TrainConfig) -> None:
    """Write the resolved configs at the top of the run directory (atomically; `steps` may have grown)."""
    atomic_write_json(Path(run_dir) / CONFIG_FILE, run.to_dict())
    atomic_write_json(Path(run_dir) / TRAIN_CONFIG_FILE, train.to_dict())


def config_mismatches(run_dir: Path, run: RunConfig, train: TrainConfig) -> list[str]:
    """Keys where the configs saved in `run_dir` differ from these ('file key (saved X, now Y)')."""
    found = []
    for name, kind, current, ignored in ((CONFIG_FILE, RunConfig, run.to_dict(), ()),
                                         (TRAIN_CONFIG_FILE, TrainConfig, train.to_dict(), RESUMABLE_KEYS)):
        path = Path(run_dir) / name
        if not path.is_file():  # a hard kill can land between writing the two files
            continue
        try:
            # rebuilt through the dataclass: fields added since the run was saved take their defaults
            saved = _flatten(json.loads(json.dumps(kind.from_dict(json.loads(path.read_text())).to_dict())))
        except (ValueError, OSError, TypeError) as error:
            raise ConfigError(f"{path}: unreadable ({error})") from None
        now = _flatten(json.loads(json.dumps(current)))  # JSON round trip: tuples become lists, as saved
        for key in sorted(set(saved) | set(now)):
            before, after = saved.get(key, "<absent>"), now.get(key, "<absent>")
            if key not in ignored and before != after:
                found.append(f"{name} {key} (saved {before!r}, now {after!r})")
    return found


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def latest_step(run_dir: Path) -> int:
    """Generator updates saved in the run's latest checkpoint; 0 when it has none yet."""
    if not (Path(run_dir) / LATEST_FILE).is_file():
        return 0
    checkpoint = resolve_checkpoint(run_dir)
    try:
        return int(json.loads((checkpoint / STATE_DIR / LOOP_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{checkpoint}: no readable {STATE_DIR}/{LOOP_FILE} ({error}); "
                              f"cannot resume") from None


def prune_checkpoints(run_dir: Path, keep: int, keep_every: int) -> list[Path]:
    """Delete checkpoints older than the newest `keep` (0: none deleted), sparing multiples of `keep_every`
    and whatever `latest` points at; returns the deleted directories."""
    if keep == 0:
        return []
    root = Path(run_dir) / CHECKPOINTS_DIR
    steps = sorted(int(p.name.split("-")[1]) for p in root.glob("step-[0-9]*") if p.name[5:].isdigit())
    pointer = Path(run_dir) / LATEST_FILE
    latest = (Path(run_dir) / pointer.read_text().strip()).resolve() if pointer.is_file() else None
    removed = []
    for step in steps[:-keep]:
        path = checkpoint_dir(run_dir, step)
        if (keep_every and step % keep_every == 0) or path.resolve() == latest:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def truncate_metrics(path: Path, step: int) -> bool:
    """Keep the rows with step <= `step` byte for byte, drop the rest (atomically); True if anything went."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    keep = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n") or _row_step(line) is None or _row_step(line) > step:
            break  # a torn last row (hard kill mid-write) or a row the checkpoint does not cover
        keep += len(line)
    if keep == len(data):
        return False
    with atomic_write(path) as temp:
        temp.write_bytes(data[:keep])
    return True


def _row_step(line: bytes) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def remove_partial_files(run_dir: Path) -> None:
    """Delete temporaries a hard kill left behind (half-written checkpoints, `.name.*.tmp*` files)."""
    run_dir = Path(run_dir)
    for partial in (run_dir / CHECKPOINTS_DIR).glob(".step-*.tmp-*"):
        shutil.rmtree(partial, ignore_errors=True)
    for temp in run_dir.glob(".*.tmp*"):
        if temp.is_file():
            temp.unlink(missing_ok=True)
