"""Several processes (torchrun): process groups, FSDP2 sharding, and gathering full state for checkpoints.

Model code stays single-device; parallelism is applied from outside (torchtitan style): `fully_shard` on
every transformer block, then on the root. With one process every function here is a no-op or a plain copy.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def init_distributed() -> None:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); nothing for one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def shard(model: nn.Module, precision: str = "fp32", activation_checkpointing: bool = False) -> nn.Module:
    """Apply from outside, in torchtitan's order: activation checkpointing, then FSDP2 `fully_shard` on each block
    and the root (`encode_prompt` / `prompt_kv` unshard like forward); `precision="bf16"` computes in bf16 and
    reduces gradients in fp32."""
    model.set_activation_checkpointing(activation_checkpointing)
    if not active():
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if precision == "bf16" else MixedPrecisionPolicy()

    # our blocks return K/V views and the model a rearranged view; nothing modifies them in place
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
        register_fsdp_forward_method(block, "prompt_kv")
    fully_shard(model, mp_policy=policy)
    register_fsdp_forward_method(model, "encode_prompt")
    return model


def full(value: Any) -> Any:
    """Replace every DTensor in a (nested) value by the full tensor (a collective: call on every process)."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.full_tensor()
    if isinstance(value, dict):
        return {k: full(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(full(v) for v in value)
    return value


def copy_into(target: Tensor, source: Tensor) -> None:
    """target.copy_(source) where target may be a DTensor shard and source the full tensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor) and not isinstance(source, DTensor):
        source = distribute_tensor(source.to(target.device, target.dtype), target.device_mesh, target.placements)
    target.copy_(source)


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics across processes (each process's mean covers the same number of samples)."""
    if not active():
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    return {k: float(v) / world_size() for k, v in zip(keys, tensor.tolist())}


def gather_samples(tensor: Tensor) -> Tensor:
    """Concatenate a per-process batch along dim 0 in rank order (the global batch order)."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier_and_destroy() -> None:
    """End the process group cleanly (a barrier first: gloo can abort if a peer exits early)."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def local_samples(batch: int) -> range:
    """Global indices of this process's samples when each process takes `batch` of the global batch."""
    return range(rank() * batch, (rank() + 1) * batch)


@torch.no_grad()
def load_full_state(module: nn.Module, state: dict[str, Tensor]) -> None:
    """module.load_state_dict for full tensors, also when the module's parameters are FSDP2 shards."""
    own = module.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        raise ValueError(f"state does not match the network (missing {sorted(missing)[:5]}, unexpected "
                         f"{sorted(unexpected)[:5]})")
    for name, value in own.items():
        if value.shape != state[name].shape:
            raise ValueError(f"{name}: saved shape {tuple(state[name].shape)}, network {tuple(value.shape)}")
        copy_into(value, state[name])


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After loading a full optimiser state, turn each per-parameter tensor into the parameter's DTensor layout."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for group in optimizer.param_groups:
        for p in group["params"]:
            if not isinstance(p, DTensor):
                continue
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor) and not isinstance(value, DTensor) and value.shape == p.shape:
                    optimizer.state[p][key] = distribute_tensor(value.to(p.device), p.device_mesh, p.placements)
