"""What a prompt switch does to the Slow-Fast Memory: the policies `keep`, `recache` and `flush`.

Every policy makes the next chunks cross-attend to the new prompt; they differ in what the memory keeps
(sink / slow / fast are DESIGN.md section 5's parts; "K/V" is a slot's per-layer keys and values):

| policy  | sink            | slow                  | fast                                            | admission state |
|---------|-----------------|-----------------------|-------------------------------------------------|-----------------|
| keep    | unchanged       | unchanged             | unchanged                                       | unchanged       |
| recache | unchanged       | unchanged             | same frames; K/V and summaries re-encoded under the new prompt (LongLive) | unchanged |
| flush   | unchanged (K/V) | emptied, slots freed  | only the last committed chunk is kept (K/V unchanged); older fast frames freed (Infinity-RoPE) | reset: the next candidate is judged as in a new memory |

`recache` re-runs the commit pass (timestep 0) on the fast frames' stored clean latents, one chunk at a time
in time order, each attending to sink + slow + the fast frames before it at the temporal positions the next
chunk's plan gives them, so the fast memory reads as if it had been made under the new prompt. Its cost is one
commit pass per fast chunk ((N_l - c) / c passes; with `full`, every non-sink frame).
"""  # noqa: E501 (Markdown table rows cannot be wrapped; a docstring's noqa goes after its closing quotes)

from __future__ import annotations

import torch

from context_forcing.conditioning import Conditioning
from context_forcing.memory.plan import ChunkPlan, MemoryTable
from context_forcing.memory.policy import AdmissionState
from context_forcing.memory.slow_fast import SlowFastMemory
from context_forcing.model.attention import PromptContext
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.chunk_step import ChunkInputs, commit_pass

POLICIES = ("keep", "recache", "flush")


def check_policy(policy: str) -> str:
    """The policy name, or ValueError naming the allowed ones."""
    if policy not in POLICIES:
        raise ValueError(f"prompt switch policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def flush(memory: SlowFastMemory) -> None:
    """Keep each sample's sink and last committed chunk;
    empty slow memory, free the other slots, reset admission."""
    c = memory.layout.chunk
    for sample in memory.samples:
        table = sample.table
        fast = table.fast[-c:]
        sample.table = MemoryTable(sink=table.sink, slow=(), fast=fast, next_frame=table.next_frame)
        sample.admission = AdmissionState()
        kept = set(table.sink) | set(fast)
        for frame in [f for f in sample.slots if f not in kept]:
            del sample.slots[frame]  # the slot is free for the next commit
        for frame in [f for f in sample.first_pass if f not in kept]:
            del sample.first_pass[frame]


def recache_plans(memory: SlowFastMemory) -> list[list[ChunkPlan]]:
    """For each fast chunk, oldest first: one plan per sample (context = sink + slow + earlier
    fast frames)."""
    c = memory.layout.chunk
    per_sample = []
    for plan in memory.plan():
        positions = dict(zip(plan.frames, plan.positions))
        fast = plan.part("fast")
        plans = []
        for i in range(0, len(fast), c):
            frames = plan.part("sink") + plan.part("slow") + fast[:i]
            parts = ("sink",) * len(plan.part("sink")) + ("slow",) * len(plan.part("slow")) + ("fast",) * i
            chunk = fast[i : i + c]
            plans.append(
                ChunkPlan(
                    frames=frames,
                    parts=parts,
                    positions=tuple(positions[f] for f in frames),
                    chunk_frames=chunk,
                    chunk_positions=tuple(positions[f] for f in chunk),
                )
            )
        per_sample.append(plans)
    return [list(step) for step in zip(*per_sample)]  # fast counts agree across samples (same chunk count)


@torch.no_grad()
def recache_fast(
    model: CausalVideoDiT, memory: SlowFastMemory, prompt: PromptContext, cond: Conditioning
) -> int:
    """Re-encode every fast frame's K/V (and admission summary) under `prompt`; returns the frames re-encoded.

    `cond` supplies the prompt field only; per-frame actions, pose and spatial maps come from the store.
    """
    store, done = memory.store, 0
    rows = torch.arange(memory.batch, device=store.device)[:, None]
    for plans in recache_plans(memory):
        slots = torch.tensor(
            [[memory.samples[b].slots[f] for f in p.chunk_frames] for b, p in enumerate(plans)],
            device=store.device,
        )  # (B, c)
        stored = store.gather(slots)
        frames_cond = Conditioning(
            prompt=cond.prompt,
            prompt_embeds=cond.prompt_embeds,
            actions=stored["actions"] if model.cfg.action_dim else None,
            pose=stored["pose"] if model.cfg.pose_freqs else None,
            spatial_positions=stored["spatial"],
        )
        temporal = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32, device=store.device)
        inputs = ChunkInputs(prompt, temporal, frames_cond, memory.context(model, plans))
        kv = commit_pass(model, inputs, stored["latents"])
        c = slots.shape[1]
        keys = torch.stack([k for k, _ in kv]).unflatten(2, (c, -1))  # (layers, B, c, Lf, H, hd)
        values = torch.stack([v for _, v in kv]).unflatten(2, (c, -1))
        store.keys[:, rows, slots] = keys.to(store.dtype)
        store.values[:, rows, slots] = values.to(store.dtype)
        store.summary[rows, slots] = memory._summaries(keys).to(
            store.dtype
        )  # the admission test sees the new K
        for b, plan in enumerate(plans):  # pending first-pass K/V were made under the old prompt
            for frame in plan.chunk_frames:
                memory.samples[b].first_pass.pop(frame, None)
        done += c
    return done
