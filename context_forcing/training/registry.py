"""Stage registry: builds a `Stage` from names and checkpoints (the `train` command calls `build_stage`)."""

from __future__ import annotations

import copy

import torch

from context_forcing.config import ConfigError, RunConfig
from context_forcing.memory.layout import run_layout
from context_forcing.model.checkpoint import load_model
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.training.config import TrainConfig
from context_forcing.training.data import TrainingData, build_training_data
from context_forcing.training.distributed import shard
from context_forcing.training.dmd_stage import DmdStage
from context_forcing.training.ode_stage import OdeInitStage
from context_forcing.training.stage import Stage
from context_forcing.training.teacher_stage import TeacherStage


def load_network(path: str, run: RunConfig, role: str, device: torch.device | str) -> CausalVideoDiT:
    """A network from a checkpoint or run directory, which must have the run's model config."""
    loaded_run, model = load_model(path, device)
    if loaded_run.model != run.model or loaded_run.text != run.text:
        raise ConfigError(f"--{role} {path}: its model config (preset {loaded_run.preset!r}) differs from "
                          f"the run's (preset {run.preset!r})")
    return model


def build_stage(name: str, run: RunConfig, train: TrainConfig, init: str | None, teacher: str | None,
                device: torch.device | str = "cpu", data: TrainingData | None = None) -> Stage:
    """The stage `name` with its networks: `init` is what is trained (default: fresh for the teacher, the
    teacher's weights for students); `teacher` is what ode-init / stage1 / stage2 distil from."""
    data = data if data is not None else build_training_data(run, train)

    def prepared(model: CausalVideoDiT) -> CausalVideoDiT:
        return shard(model, train.precision, train.activation_checkpointing)

    def reference(model: CausalVideoDiT) -> CausalVideoDiT:  # frozen: no activations kept for a backward
        return shard(model, train.precision)

    if name == "teacher":
        model = load_network(init, run, "init", device) if init else CausalVideoDiT(run.model, run.text)
        model = model.to(device)
        return TeacherStage(run, train, prepared(model), data)
    if teacher is None:
        raise ConfigError(f"stage {name!r} distils from a teacher: pass --teacher CHECKPOINT")
    teacher_model = load_network(teacher, run, "teacher", device)
    student = load_network(init, run, "init", device) if init else copy.deepcopy(teacher_model)
    layout = run_layout(run)  # the memory the student streams with, parsed once for the stage
    if name == "ode-init":
        return OdeInitStage(run, train, layout, prepared(student), reference(teacher_model), data)
    critic = copy.deepcopy(teacher_model)  # the critic starts as the teacher (DMD2)
    # every network is sharded (FSDP2; copies are taken before), trained ones before their optimisers exist;
    # the frozen teacher too, as in the official code: 1/N of its memory, bf16 compute under precision=bf16
    return DmdStage(name, run, train, layout, prepared(student), reference(teacher_model), prepared(critic),
                    data)
