"""The training loop shared by every stage: run directory, resume, checkpoints, metrics, progress.

A stage (training/stage.py) owns the maths of one generator update; the loop owns everything that makes a run
reproducible and restartable. A run killed at any moment and started again with the same command resumes from
its latest checkpoint and continues on the same trajectory: same final weights, same metric rows (but `time`).

Checkpoint `checkpoints/step-NNNNNN/` (written to a temporary directory, renamed, then `latest` points at it):
    config.json, model.safetensors          RunConfig; `stage.export_weights()` (EMA where there is one)
    training_state/loop.json                step, stage name, network/optimiser names, python + numpy RNG
    training_state/rng.safetensors          torch CPU (and CUDA) generator states
    training_state/network.NAME.safetensors raw weights of each trainable network
    training_state/optimizer.NAME.pt        optimiser state dicts (tensors and numbers; read weights_only)
    training_state/extra.json + extra.safetensors  the stage's extra_state: JSON tree, tensors by reference
"""

from __future__ import annotations

import json
import pickle
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from context_forcing.config import ConfigError, RunConfig
from context_forcing.model.checkpoint import (
    LATEST_FILE,
    CheckpointError,
    point_latest,
    resolve_checkpoint,
    save_checkpoint,
)
from context_forcing.training.config import TrainConfig
from context_forcing.training.distributed import (
    barrier_and_destroy,
    full_on_main,
    init_distributed,
    load_full_state,
    mean_over_processes,
    shard_optimizer_state,
)
from context_forcing.training.optim import load_optimizer_state
from context_forcing.training.run_dir import (
    LOOP_FILE,
    METRICS_FILE,
    STATE_DIR,
    TB_DIR,
    checkpoint_dir,
    is_main,
    latest_step,
    prune_checkpoints,
    remove_partial_files,
    truncate_metrics,
    write_configs,
)
from context_forcing.training.stage import Stage

TENSOR_REF = "__tensor__"  # marks a tensor's place in extra.json; the tensor itself is in extra.safetensors


@dataclass(frozen=True)
class TrainRequest:
    """A validated `context-forcing train` invocation."""

    run: RunConfig
    train: TrainConfig
    run_dir: Path
    init: str | None = None
    teacher: str | None = None
    threads: int | None = None


def run_train(request: TrainRequest) -> int:
    """`context-forcing train`: seed, build the stage through the registry, train; return the exit status."""
    if request.threads:
        torch.set_num_threads(request.threads)
    from context_forcing.training.registry import build_stage  # the stage registry; heavy imports, lazily

    run, train = request.run, request.train
    # torchrun: join the process group (gloo on CPU, NCCL on CUDA). One process needs none, except for bf16,
    # which FSDP2's mixed precision provides: a one-process group then, so 1 and N processes compute alike.
    init_distributed(always=train.precision == "bf16")
    seed_everything(train.seed)  # network initialisation inside build_stage is reproducible too
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    completed = False
    try:
        stage = build_stage(train.stage, run, train, request.init, request.teacher, device)
        run_training(request.run_dir, run, train, stage)
        completed = True
    finally:
        barrier_and_destroy(completed)
    return 0


def run_training(run_dir: str | Path, run: RunConfig, train: TrainConfig, stage: Stage, *,
                 progress: bool = True) -> int:
    """Train `stage` to `train.steps` generator updates in `run_dir`, resuming from its latest checkpoint."""
    run_dir = Path(run_dir)
    done = latest_step(run_dir)
    if done > train.steps:
        raise ConfigError(f"{run_dir} is at step {done}, beyond steps={train.steps}; ask for at least {done}")
    if done == train.steps:
        print(f"run complete: step {done} of {train.steps} in {run_dir}", file=sys.stderr)
        return done
    start = _resume_or_seed(run_dir, train, stage)
    if is_main():
        write_configs(run_dir, run, train)  # after resume: a continued run records its new `steps`
    with MetricsLog(run_dir, start, train.log_every) as log, _progress_bar(train, start, progress) as bar:
        for step in range(start, train.steps):
            metrics = stage.train_step(step)  # `step` updates done before this one
            probe = getattr(stage, "probe", None)
            if train.probe_every and (step + 1) % train.probe_every == 0 and probe is not None:
                metrics.update({f"probe_{k}": v for k, v in probe(train.probe_episodes).items()})
            metrics = mean_over_processes(metrics)
            log.write(step + 1, metrics)
            bar.update(1)
            if "loss" in metrics:
                bar.set_postfix(loss=f"{float(metrics['loss']):.4g}", refresh=False)
            if (step + 1) % train.checkpoint_every == 0 or step + 1 == train.steps:
                save_training_checkpoint(run_dir, run, stage, step + 1)
                if is_main():
                    prune_checkpoints(run_dir, train.keep_checkpoints, train.keep_every)
    return train.steps


def _resume_or_seed(run_dir: Path, train: TrainConfig, stage: Stage) -> int:
    """Restore the latest checkpoint (or seed a fresh run) and cut the metrics log to it; return its step."""
    if is_main():
        remove_partial_files(run_dir)
    if (run_dir / LATEST_FILE).is_file():
        start = load_training_state(resolve_checkpoint(run_dir), stage)
        print(f"resumed from step {start}", file=sys.stderr)
    else:
        start = 0
        seed_everything(train.seed)
    if is_main():
        truncate_metrics(run_dir / METRICS_FILE, start)  # rows after the checkpoint are redone identically
    return start


def _progress_bar(train: TrainConfig, start: int, enabled: bool) -> tqdm:
    return tqdm(total=train.steps, initial=start, desc=train.stage, unit="step", file=sys.stderr,
                disable=not (enabled and is_main()), dynamic_ncols=True)


class MetricsLog:
    """Appends one row per update to metrics.jsonl and scalars to TensorBoard (`tb/`); rank 0 only."""

    def __init__(self, run_dir: Path, start: int, log_every: int) -> None:
        self.path, self.start, self.log_every = run_dir / METRICS_FILE, start, log_every
        self.file = None
        self.writer = None

    def __enter__(self) -> MetricsLog:
        if is_main():
            self.file = open(self.path, "a", encoding="utf-8")
            self.writer = _tensorboard(self.path.parent / TB_DIR, self.start)
        return self

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Log update `step` (1-based); `time` is when it finished (Unix seconds)."""
        if self.file is None:
            return
        reserved = {"step", "time"} & set(metrics)
        if reserved:
            raise ValueError(f"stage metrics may not use the loop's keys {sorted(reserved)}")
        row = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()  # a hard kill loses at most the row being written; resume cuts it anyway
        if self.writer is not None and step % self.log_every == 0:
            for key, value in metrics.items():
                self.writer.add_scalar(f"train/{key}", float(value), step)

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(directory: Path, start: int) -> Any:
    """A SummaryWriter, or None (with a note) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed; no TensorBoard events are written", file=sys.stderr)
        return None
    # purge_step: TensorBoard hides events a killed run wrote after the checkpoint we resume from.
    return SummaryWriter(str(directory), purge_step=start + 1 if start else None)


def save_training_checkpoint(run_dir: Path, run: RunConfig, stage: Stage, step: int) -> Path:
    """Write `checkpoints/step-NNNNNN/` atomically, then point `latest` at it.

    Under FSDP2 every process takes part in gathering the full (unsharded) state, tensor by tensor to rank 0's
    CPU (weights, optimiser states, EMA shadows); only rank 0 writes.
    """
    rng = capture_rng()  # first: nothing below may move the trajectory's RNG state
    directory = checkpoint_dir(run_dir, step)
    state = TrainingState(
        step=step, stage=stage.name, weights=full_on_main(stage.export_weights()),
        networks={name: full_on_main(net.state_dict()) for name, net in stage.networks().items()},
        optimizers={name: full_on_main(opt.state_dict()) for name, opt in stage.optimizers().items()},
        extra=full_on_main(stage.extra_state()), rng=rng)
    if is_main():
        save_checkpoint(directory, run, state.weights,
                        write_extra=lambda tmp: write_training_state(tmp / STATE_DIR, state))
        point_latest(run_dir, directory)
    return directory


@dataclass
class TrainingState:
    """Everything a checkpoint holds besides the RunConfig, as full (unsharded) tensors."""

    step: int
    stage: str
    weights: dict[str, Tensor]
    networks: dict[str, dict[str, Tensor]]
    optimizers: dict[str, dict[str, Any]]
    extra: dict[str, Any]
    rng: tuple[dict, dict[str, Tensor]]


def write_training_state(directory: Path, state: TrainingState) -> None:
    """Everything needed to continue on the same trajectory (module docstring lists the files)."""
    directory.mkdir(parents=True)
    for name, weights in state.networks.items():
        save_file(_storable(weights), str(directory / f"network.{_safe(name)}.safetensors"))
    for name, optimizer in state.optimizers.items():
        torch.save(optimizer, directory / f"optimizer.{_safe(name)}.pt")
    tensors: dict[str, Tensor] = {}
    tree = _encode(state.extra, tensors, "extra")
    save_file(_storable(tensors), str(directory / "extra.safetensors"))
    (directory / "extra.json").write_text(json.dumps(tree) + "\n")
    rng_json, rng_tensors = state.rng
    save_file(_storable(rng_tensors), str(directory / "rng.safetensors"))
    loop = {"step": state.step, "stage": state.stage, "networks": sorted(state.networks),
            "optimizers": sorted(state.optimizers), "rng": rng_json}
    (directory / LOOP_FILE).write_text(json.dumps(loop) + "\n")


def load_training_state(checkpoint: Path, stage: Stage) -> int:
    """Restore networks, optimisers, the stage's extra state and the RNG; return the checkpoint's step."""
    directory = checkpoint / STATE_DIR
    try:
        loop = json.loads((directory / LOOP_FILE).read_text())
        networks, optimizers = stage.networks(), stage.optimizers()
        _same_names(checkpoint, "networks", loop["networks"], networks)
        _same_names(checkpoint, "optimizers", loop["optimizers"], optimizers)
        for name, network in networks.items():
            load_full_state(network, load_file(str(directory / f"network.{_safe(name)}.safetensors")))
        for name, optimizer in optimizers.items():
            path = directory / f"optimizer.{_safe(name)}.pt"
            # weights_only: tensors and plain containers only, no pickled code runs
            saved = torch.load(path, map_location="cpu", weights_only=True)
            load_optimizer_state(optimizer, shard_optimizer_state(optimizer, saved))  # FSDP2: own shards
        tensors = load_file(str(directory / "extra.safetensors"))
        stage.load_extra_state(_decode(json.loads((directory / "extra.json").read_text()), tensors))
        restore_rng(loop["rng"], load_file(str(directory / "rng.safetensors")))  # last: loading may draw
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError) as error:
        # missing or damaged files, or shapes that do not fit the stage's networks
        raise CheckpointError(f"{checkpoint}: cannot resume from its {STATE_DIR}/ ({error})") from error
    return int(loop["step"])


def _same_names(checkpoint: Path, kind: str, saved: list[str], current: dict[str, Any]) -> None:
    if sorted(saved) != sorted(current):
        raise CheckpointError(f"{checkpoint}: saved {kind} {sorted(saved)} differ from the stage's "
                              f"{sorted(current)}")


def _safe(name: str) -> str:
    """A network/optimiser name usable as part of a file name."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"network and optimiser names must be letters, digits, '-' or '_', got {name!r}")
    return name


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous CPU tensors without shared storage (safetensors refuses aliases, e.g. tied weights)."""
    out, seen = {}, set()
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        pointer = value.untyped_storage().data_ptr()
        if value.numel() and pointer in seen:
            value = value.clone()
        seen.add(pointer)
        out[key] = value
    return out


def _encode(value: Any, tensors: dict[str, Tensor], path: str) -> Any:
    """JSON tree of `value` with each tensor replaced by {TENSOR_REF: key} and stored in `tensors[key]`."""
    if isinstance(value, Tensor):
        tensors[path] = value
        return {TENSOR_REF: path}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or TENSOR_REF in value:
            raise TypeError(f"{path}: extra_state dict keys must be strings other than {TENSOR_REF!r}")
        return {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # tuples come back as lists
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path}: cannot save a {type(value).__name__} in extra_state; use tensors, numbers, "
                    f"strings, lists and dicts (a torch.Generator: save generator.get_state())")


def _decode(tree: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {TENSOR_REF}:
            return tensors[tree[TENSOR_REF]]
        return {k: _decode(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    return tree


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), python `random` and numpy's global generators."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def capture_rng() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The global RNG states: JSON-able (python, numpy) and tensors (torch CPU, CUDA per device)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return ({"python": [version, list(state), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}, tensors)


def restore_rng(states: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Inverse of `capture_rng`."""
    torch.set_rng_state(tensors["torch"])
    cuda_keys = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[len("cuda."):]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
