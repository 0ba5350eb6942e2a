"""Several processes (torchrun): process groups, FSDP2 sharding, and gathering full state for checkpoints.

Model code stays single-device; parallelism is applied from outside (torchtitan style): activation
checkpointing, then `fully_shard` on every transformer block, then on the root. Without a process group
every function here is a no-op or a plain copy.

- `init_distributed` / `barrier_and_destroy`: join and leave the group torchrun describes;
- `world_size`, `rank`, `local_samples`: the data-parallel split (process r holds global samples
  [r B, (r + 1) B));
- `shard`: FSDP2 (+ bf16 mixed precision) on a CausalVideoDiT;
- `full_on_main`, `load_full_state`, `copy_into`, `shard_optimizer_state`: checkpoints hold full tensors;
  they are gathered to rank 0 for saving and cut back into shards on loading;
- `mean_over_processes`, `gather_samples`: metrics and ERFT errors of the whole global batch.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def init_distributed(always: bool = False) -> None:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA). A single process joins none,
    unless `always`: then it forms a one-process group, so that FSDP2 (and its bf16 mixed precision) applies
    to one process exactly as to several."""
    if dist.is_initialized() or (int(os.environ.get("WORLD_SIZE", "1")) == 1 and not always):
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    if "MASTER_ADDR" in os.environ:  # launched by torchrun
        dist.init_process_group(backend)
    else:  # a plain process: an in-memory store, no network
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def shard(model: nn.Module, precision: str = "fp32", activation_checkpointing: bool = False) -> nn.Module:
    """Apply from outside, in torchtitan's order: activation checkpointing, then FSDP2 `fully_shard` on each
    block and the root (`encode_prompt` / `prompt_kv` unshard like forward); `precision="bf16"` computes in
    bf16 and reduces gradients in fp32."""
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
    return _map_dtensors(value, lambda t: t.full_tensor())


def full_on_main(value: Any) -> Any:
    """For checkpoints: every DTensor gathered one at a time and moved to the CPU, kept by rank 0 only (other
    processes get None in its place), so no device ever holds more than one full tensor beyond its shards
    (the effect of `StateDictOptions(full_state_dict=True, cpu_offload=True)`). A collective."""
    main = rank() == 0

    def gather(t: Tensor) -> Tensor | None:
        whole = t.full_tensor()
        return whole.cpu() if main else None

    return _map_dtensors(value, gather)


def _map_dtensors(value: Any, fn: Any) -> Any:
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_dtensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_dtensors(v, fn) for v in value)
    return value


def copy_into(target: Tensor, source: Tensor) -> None:
    """target.copy_(source) where target may be a DTensor shard and source the full tensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(target, DTensor) and not isinstance(source, DTensor):
        source = distribute_tensor(source.to(target.device, target.dtype), target.device_mesh,
                                   target.placements)
    target.copy_(source)


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics across processes (each process's mean covers the same number of samples)."""
    if not active():
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return {k: float(v) / world_size() for k, v in zip(keys, tensor.tolist())}


def _collective_device() -> torch.device:
    """Where tensors for a collective must live: NCCL needs the process's GPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_samples(tensor: Tensor) -> Tensor:
    """Concatenate a per-process batch along dim 0 in rank order (the global batch order)."""
    if not active():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier_and_destroy(completed: bool = True) -> None:
    """End the process group: after a barrier when the run `completed` (gloo can abort at teardown if a peer
    exits early); straight away after a failure, when the other processes may never reach a barrier."""
    if active():
        if completed:
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


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """A full optimiser state dict (as saved) with each per-parameter tensor cut into its parameter's DTensor
    layout, one tensor at a time, ready for `optimizer.load_state_dict`; unchanged without FSDP2."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = {}
    for saved, group in zip(state["param_groups"], optimizer.param_groups):
        params.update(zip(saved["params"], group["params"]))
    per_param = {}
    for index, values in state["state"].items():
        p = params.get(index)
        if isinstance(p, DTensor):
            values = {key: distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
                      if isinstance(v, Tensor) and v.shape == p.shape else v for key, v in values.items()}
        per_param[index] = values
    return {**state, "state": per_param}
