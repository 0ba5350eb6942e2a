"""Student rollouts for training (Self Forcing style), through the same chunk step as streaming.

Each chunk runs the few-step sampler up to its exit step; only the exit step's prediction keeps gradient
(when the chunk carries gradient at all); the clean commit pass writes detached K/V into the memory. The
memory follows the layout given (every option: sizes, policy, reference, frames per admission, positions,
`admit_kv`: with `first_pass` slow memory takes the first denoising pass's K/V, as in streaming). The
teacher's context for contextual DMD is the student's own memory as it stood for the first target chunk.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.schedule import student_sigmas
from context_forcing.memory.factory import frame_inputs, new_memory
from context_forcing.memory.layout import MemoryLayout
from context_forcing.memory.plan import ChunkPlan
from context_forcing.memory.slow_fast import SlowFastMemory
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.chunk_step import ChunkInputs, commit_pass, denoise_chunk
from context_forcing.rollout.teacher import memory_teacher_context


@dataclass
class RolloutResult:
    latents: Tensor  # (B, F, C, H, W); frames of gradient chunks carry the graph of their exit step
    grad_frames: Tensor  # (B, F) bool: frames whose prediction carries gradient
    exit_steps: list[int]  # per chunk: the sampler step the chunk stopped at
    # teacher context at `context_chunk` (latents, valid, cond)
    context: tuple[Tensor, Tensor, Conditioning] | None
    context_plans: list[ChunkPlan] | None
    memory: SlowFastMemory  # after the last chunk's commit (`commit_last`), else before it


def student_rollout(model: CausalVideoDiT, run: RunConfig, layout: MemoryLayout, cond: Conditioning,
                    num_frames: int, generator: torch.Generator, grad_from_chunk: int = 0,
                    exit_step: str = "shared",
                    context_chunk: int | None = None, grad: bool = True,
                    sample_generators: list[torch.Generator] | None = None,
                    commit_last: bool = True) -> RolloutResult:
    """Roll the student out for `num_frames` (whole chunks) with its memory.

    Chunks before `grad_from_chunk` run the full sampler without gradient; later chunks stop at a random exit
    step (one for all chunks with `exit_step="shared"`, else one per chunk) and keep the exit prediction's
    graph when `grad`. `context_chunk`: record the teacher context as the memory stands for that chunk.
    `commit_last=False` skips the last chunk's commit pass, which only the returned memory would see (the
    latents and the teacher context are the same; one forward fewer).
    """
    c = run.chunk
    if num_frames % c:
        raise ValueError(f"num_frames must be whole chunks of {c}, got {num_frames}")
    device = next(model.parameters()).device
    b = cond.batch_size
    sigmas = student_sigmas(run.sampler.student_timesteps, run.sampler.shift, run.sampler.num_train_timesteps)
    sigmas = sigmas.to(device)
    memory = new_memory(run, layout, b, device)
    first_pass = layout.admit_kv == "first_pass"
    shape = (b, c, run.model.in_channels, run.video.latent_height, run.video.latent_width)
    shared_exit = int(torch.randint(len(sigmas), (1,), generator=generator))

    def noise() -> Tensor:
        if sample_generators is None:
            return torch.randn(shape, generator=generator).to(device)
        return torch.stack([torch.randn(shape[1:], generator=g) for g in sample_generators]).to(device)

    with torch.no_grad():
        prompt_nograd = model.encode_prompt(cond)
    prompt_grad = model.encode_prompt(cond) if grad else prompt_nograd
    outputs, grad_masks, exits = [], [], []
    context, context_plans = None, None
    for index in range(num_frames // c):
        plans = memory.plan()
        if index == context_chunk:
            context, context_plans = memory_teacher_context(memory, plans, cond), plans
        trains = grad and index >= grad_from_chunk
        exit_at = len(sigmas) - 1 if index < grad_from_chunk else (
            shared_exit if exit_step == "shared"
            else int(torch.randint(len(sigmas), (1,), generator=generator)))
        chunk_cond = cond.frames(slice(index * c, index * c + c))
        temporal = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32, device=device)
        with torch.no_grad():
            ctx = memory.context(model, plans)
        inputs = ChunkInputs(prompt_grad if trains else prompt_nograd, temporal, chunk_cond, ctx)
        with contextlib.nullcontext() if trains else torch.no_grad():  # only the exit step keeps its graph
            x0, first_kv = denoise_chunk(model, inputs, noise(), sigmas, lambda _: noise(),
                                         run.sampler.num_train_timesteps, first_pass, exit_step=exit_at)
        if commit_last or index < num_frames // c - 1:
            with torch.no_grad():
                memory.commit(
                    commit_pass(model, ChunkInputs(prompt_nograd, temporal, chunk_cond, ctx), x0.detach()),
                    frame_inputs(model, run, x0.detach(), chunk_cond), first_kv)
        outputs.append(x0)
        grad_masks.append(torch.full((b, c), trains, dtype=torch.bool, device=device))
        exits.append(exit_at)
    return RolloutResult(torch.cat(outputs, 1), torch.cat(grad_masks, 1), exits, context,
                         context_plans, memory)

