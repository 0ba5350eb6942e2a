"""`teacher_inputs`: the teacher forward's sequence [context (clean) | target (noisy)]
(DESIGN.md section 4.3).

Context frames attend frame-causally to the context (never to the target); target frames attend to the
whole context and bidirectionally among themselves. Temporal positions are contiguous from 0 over the
real frames. Used alike by teacher training, ODE init and contextual DMD (teacher and critic).

Since context frames never see the target, their K/V do not depend on it: a sampler that integrates the
target over many steps (`sampler_velocity`: ODE init's teacher trajectories, the teacher probe) computes them
once per prompt (`contexts`) and runs only the target frames against them, as a chunk step runs against its
memory; the same velocities within float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning, concat_frames
from context_forcing.diffusion.samplers import Velocity, guided
from context_forcing.diffusion.schedule import timesteps_of
from context_forcing.memory.plan import ChunkPlan
from context_forcing.memory.slow_fast import SlowFastMemory
from context_forcing.model.attention import AttentionContext
from context_forcing.model.dit import CausalVideoDiT, PromptContext


def guides(guidance: float | None) -> bool:
    """Whether classifier-free guidance of this weight needs the null prompt's velocity: not for None (no
    guidance) nor for 1, where v_u + 1 (v_c - v_u) is v_c."""
    return guidance is not None and guidance != 1


@dataclass(frozen=True)
class TeacherInputs:
    latents: Tensor  # (B, n + T, C, H, W) clean context then target (the caller noises the target)
    temporal: Tensor  # (B, n + T) positions
    cond: Conditioning  # per-frame fields for the n + T frames
    frame_mask: Tensor  # (B, n + T, n + T) bool: frame i sees frame j
    context_valid: Tensor  # (B, n) bool: real context frames (samples may have fewer)
    num_target: int

    @property
    def num_context(self) -> int:
        return self.context_valid.shape[1]

    def timesteps(self, target_timesteps: Tensor) -> Tensor:
        """Per-frame timesteps (B, n + T): 0 for the clean context,
        the given (B, T) or (B,) for the target."""
        b, n, t = self.latents.shape[0], self.num_context, self.num_target
        target = target_timesteps.reshape(b, -1).expand(b, t).to(self.latents.dtype)
        return torch.cat([target.new_zeros(b, n), target], dim=1)

    def with_target(self, target: Tensor) -> Tensor:
        """The sequence latents with the target part replaced (e.g. by its noised version)."""
        return torch.cat([self.latents[:, :self.num_context], target], dim=1)

    def prompts(self, model: CausalVideoDiT) -> tuple[PromptContext, PromptContext]:
        """`model`'s encoded prompt and null prompt (for `target_velocity` calls that share them)."""
        return model.encode_prompt(self.cond), model.encode_prompt(self.cond.null_prompt())

    def contexts(self, model: CausalVideoDiT, prompts: tuple[PromptContext, PromptContext],
                 guidance: float | None) -> tuple[AttentionContext, AttentionContext | None] | None:
        """`model`'s K/V of the clean context frames under the prompt and, when `guidance` needs it, the null
        prompt (else None in its place), for `target_velocity` calls that share them (module docstring); None
        without context frames."""
        if self.num_context == 0:
            return None
        null = self._context_kv(model, self.cond.null_prompt(), prompts[1]) if guides(guidance) else None
        return self._context_kv(model, self.cond, prompts[0]), null

    def _context_kv(self, model: CausalVideoDiT, cond: Conditioning,
                    prompt: PromptContext) -> AttentionContext:
        n, (b, _, _, h, w) = self.num_context, self.latents.shape
        grid = (h // model.cfg.patch[1], w // model.cfg.patch[2])
        own = cond.frames(slice(0, n))
        out = model(self.latents[:, :n], self.latents.new_zeros(b, n), prompt, self.temporal[:, :n], own,
                    frame_mask=self.frame_mask[:, :n, :n], return_kv=True)
        # per layer (B, n * Lf, H, hd) -> (layers, B, n, Lf, H, hd), rotated at the context's positions
        keys, values = (torch.stack(parts).unflatten(2, (n, grid[0] * grid[1])) for parts in zip(*out.kv))
        spatial = model.spatial_positions(own, b, n, grid, self.latents.device)
        return model.prepare_context(keys, values, self.temporal[:, :n], spatial, self.context_valid)

    def target_velocity(self, model: CausalVideoDiT, target: Tensor, target_timesteps: Tensor,
                        guidance: float | None = None,
                        prompts: tuple[PromptContext, PromptContext] | None = None,
                        contexts: tuple[AttentionContext, AttentionContext | None] | None = None) -> Tensor:
        """`model`'s velocity of the target frames over [context | target] (B, T, C, H, W), at the given
        (B, T) or (B,) timesteps; with classifier-free guidance of weight `guidance` when one is given
        (weight 1 is the conditional velocity itself, computed without the null prompt's forward).
        `prompts`: `self.prompts(model)` computed once by a caller that integrates over many calls;
        `contexts`: `self.contexts(model, prompts, guidance)` likewise (then only the target frames run)."""
        if contexts is not None and prompts is None:
            raise ValueError("target_velocity: contexts are computed under given prompts; pass those prompts")
        if contexts is not None and contexts[1] is None and guides(guidance):
            raise ValueError(f"target_velocity: guidance {guidance} needs the null prompt's context; "
                             "compute `contexts` with that guidance")
        n = self.num_context
        if contexts is not None:
            b = target.shape[0]
            timesteps = target_timesteps.reshape(b, -1).expand(b, self.num_target).to(self.latents.dtype)

            def forward(cond: Conditioning, index: int) -> Tensor:
                own = cond.frames(slice(n, None))
                return model(target, timesteps, prompts[index], self.temporal[:, n:], own,
                             context=contexts[index]).velocity
        else:
            seq, timesteps = self.with_target(target), self.timesteps(target_timesteps)

            def forward(cond: Conditioning, index: int) -> Tensor:
                prompt = prompts[index] if prompts is not None else model.encode_prompt(cond)
                out = model(seq, timesteps, prompt, self.temporal, cond, frame_mask=self.frame_mask).velocity
                return out[:, n:]

        v = forward(self.cond, 0)
        if not guides(guidance):
            return v
        return guided(v, forward(self.cond.null_prompt(), 1), guidance)

    def sampler_velocity(self, model: CausalVideoDiT, guidance: float | None,
                         num_train_timesteps: int = 1000) -> Velocity:
        """v(x, sigma) of the target for a multi-step sampler: the prompts and the context's K/V computed
        once, each step runs the target frames only."""
        prompts = self.prompts(model)
        contexts = self.contexts(model, prompts, guidance)

        def velocity(x: Tensor, sigma: Tensor) -> Tensor:
            return self.target_velocity(model, x, timesteps_of(sigma, num_train_timesteps), guidance, prompts,
                                        contexts)

        return velocity


def teacher_inputs(context_latents: Tensor, context_valid: Tensor, context_cond: Conditioning,
                   target_latents: Tensor, target_cond: Conditioning) -> TeacherInputs:
    """Build the teacher sequence from padded context frames (B, n, ...) and target frames (B, T, ...).

    context_valid (B, n) marks real frames (any order of padding); positions count real frames only.
    """
    b, n = context_valid.shape
    t = target_latents.shape[1]
    valid = torch.cat([context_valid, context_valid.new_ones(b, t)], dim=1)  # (B, n + T)
    temporal = torch.where(valid, valid.long().cumsum(dim=1) - 1, 0).float()  # padding sits at 0, masked
    idx = torch.arange(n + t, device=valid.device)
    is_target = idx >= n
    causal = idx[None, :] <= idx[:, None]  # j <= i
    sees = (is_target[:, None] | causal) & (~is_target[None, :] | is_target[:, None])  # (F, F)
    frame_mask = sees[None] & valid[:, None, :]  # nobody sees padding
    frame_mask = frame_mask | (torch.eye(n + t, dtype=torch.bool, device=valid.device)[None]
                               & ~valid[:, :, None])
    latents = torch.cat([context_latents, target_latents], dim=1)
    cond = concat_frames([context_cond, target_cond]) if n else target_cond
    return TeacherInputs(latents, temporal, cond, frame_mask, context_valid, t)


def context_teacher_inputs(context: tuple[Tensor, Tensor, Conditioning] | None, target_latents: Tensor,
                           target_cond: Conditioning) -> TeacherInputs:
    """`teacher_inputs` from a `memory_teacher_context` result, or with an empty context when it is None."""
    if context is None:
        empty = torch.zeros(target_latents.shape[0], 0, dtype=torch.bool, device=target_latents.device)
        return teacher_inputs(target_latents[:, :0], empty, target_cond.frames(slice(0, 0)), target_latents,
                              target_cond)
    return teacher_inputs(*context, target_latents, target_cond)


def memory_teacher_context(memory: SlowFastMemory, plans: list[ChunkPlan], prompt_cond: Conditioning
                           ) -> tuple[Tensor, Tensor, Conditioning] | None:
    """The student's memory as it stands for `plans`, as teacher context: (latents, valid, cond) or None."""
    gathered = memory.context_frames(plans)
    if gathered is None:
        return None
    fields, valid = gathered
    # per-frame fields the conditioning has (the store keeps placeholders for the others)
    has = {name: getattr(prompt_cond, name) is not None for name in ("actions", "pose", "spatial_positions")}
    cond = Conditioning(prompt=prompt_cond.prompt, prompt_embeds=prompt_cond.prompt_embeds,
                        actions=fields["actions"] if has["actions"] else None,
                        pose=fields["pose"] if has["pose"] else None,
                        spatial_positions=fields["spatial"] if has["spatial_positions"] else None)
    return fields["latents"], valid, cond
