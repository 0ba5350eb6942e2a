"""ODE init: the few-step student regresses the teacher's multi-step trajectories (CausVid / Self Forcing init).

For a context drawn by the context sampler and a target of whole chunks, the teacher integrates the flow ODE
with CFG from noise, on a grid that passes through the student's noise levels; the student then sees the
trajectory state at each of its levels, chunk by chunk, with a context made of the clean context frames and
the earlier target chunks (committed through the chunk step), and regresses the trajectory's end point x0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.config import RunConfig
from context_forcing.diffusion.samplers import guided
from context_forcing.diffusion.schedule import student_sigmas, timesteps_of, x0_from_velocity
from context_forcing.memory.context_sampler import sample_context
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.teacher import TeacherInputs, teacher_inputs
from context_forcing.training.common import EmaStage, TrainingData, adamw, frozen
from context_forcing.training.config import TrainConfig
from context_forcing.training.distributed import local_samples
from context_forcing.training.ema import EMA
from context_forcing.training.randomness import DrawCounter


def ode_grid(student_levels: Tensor, steps: int) -> Tensor:
    """Euler grid from 1 to 0 that contains every student level: `steps` split evenly over the intervals."""
    anchors = torch.cat([student_levels, student_levels.new_zeros(1)])
    per = max(1, steps // (len(anchors) - 1))
    parts = [torch.linspace(float(a), float(b), per + 1)[:-1] for a, b in zip(anchors[:-1], anchors[1:])]
    return torch.cat(parts + [anchors.new_zeros(1)])


@torch.no_grad()
def teacher_trajectory(teacher: CausalVideoDiT, inputs: TeacherInputs, noise: Tensor, grid: Tensor,
                       keep: Tensor, guidance: float, num_train_timesteps: int) -> tuple[list[Tensor], Tensor]:
    """Euler with CFG along `grid`; returns the states at the grid levels in `keep` and the end point x0."""
    prompt_c = teacher.encode_prompt(inputs.cond)
    prompt_u = teacher.encode_prompt(inputs.cond.null_prompt())
    x, kept = noise, []
    for sigma, next_sigma in zip(grid[:-1], grid[1:]):
        if bool((keep == sigma).any()):
            kept.append(x)
        t = inputs.timesteps(timesteps_of(sigma, num_train_timesteps).expand(noise.shape[0]))
        seq = inputs.with_target(x)
        v_c = teacher(seq, t, prompt_c, inputs.temporal, inputs.cond, frame_mask=inputs.frame_mask).velocity
        v_u = teacher(seq, t, prompt_u, inputs.temporal, inputs.cond, frame_mask=inputs.frame_mask).velocity
        x = x + (next_sigma - sigma) * guided(v_c, v_u, guidance)[:, inputs.num_context:]
    return kept, x


class OdeInitStage(EmaStage):
    """Regress teacher ODE trajectories with the few-step student (DESIGN.md section 7, "ODE init")."""

    name = "ode-init"

    def __init__(self, run: RunConfig, train: TrainConfig, student: CausalVideoDiT, teacher: CausalVideoDiT,
                 data: TrainingData) -> None:
        self.run, self.train, self.data = run, train, data
        self.student, self.teacher = student.train(), frozen(teacher)
        self.trained = self.student
        self.opt = adamw(student, train.generator)
        self.ema = EMA(student, train.ema_decay, train.ema_start)
        self.random = DrawCounter(train.seed, local_samples(train.batch))
        self.device = next(student.parameters()).device
        self.levels = student_sigmas(run.sampler.student_timesteps, run.sampler.shift,
                                     run.sampler.num_train_timesteps).to(self.device)
        self.grid = ode_grid(self.levels.cpu(), train.ode_steps).to(self.device)

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"student": self.student}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"student": self.opt}

    def train_step(self, step: int) -> dict[str, float]:
        return self._update(step, self.opt, self.train.generator.clip)

    def _micro_step(self) -> float:
        c, random = self.run.chunk, self.random.next()
        target = c * int(torch.randint(1, self.train.rollout_frames // c + 1, (1,), generator=random.shared))
        history = self.train.rollout_frames + 6 * self.train.context.max_slow
        latents, cond = self.data.next_clip(history + target)
        latents, cond = latents.to(self.device), cond.to(self.device)
        choice = sample_context(history, self.train.context, c, random.shared)  # one context shape for the batch
        frames = list(choice.frames)
        b = latents.shape[0]
        valid = torch.ones(b, len(frames), dtype=torch.bool, device=self.device)
        inputs = teacher_inputs(latents[:, frames], valid, cond.frames(torch.tensor(frames, dtype=torch.long).expand(b, -1)),
                                latents[:, history:], cond.frames(slice(history, None)))
        noise = random.randn(target, *inputs.latents.shape[2:]).to(self.device)
        states, x0 = teacher_trajectory(self.teacher, inputs, noise, self.grid, self.levels, self.train.dmd.guidance,
                                        self.run.sampler.num_train_timesteps)
        loss = self._regress(inputs, states, x0)
        (loss / self.train.accumulation).backward()
        return float(loss.detach())

    def _regress(self, inputs: TeacherInputs, states: list[Tensor], x0: Tensor) -> Tensor:
        """Student chunk steps at each level against clean context + earlier target chunks; MSE to x0."""
        c, n = self.run.chunk, inputs.num_context
        clean = inputs.with_target(x0)  # (B, n + T, ...): the committed frames the student sees
        prompt = self.student.encode_prompt(inputs.cond)
        with torch.no_grad():
            total = clean.shape[1]
            kv = self.student(clean, torch.zeros(clean.shape[:2], device=self.device), prompt, inputs.temporal,
                              inputs.cond, frame_mask=_commit_mask(n, total, c, self.device), return_kv=True).kv
        losses = []
        for start in range(n, clean.shape[1], c):
            context = _prefix_context(self.student, kv, inputs, start, self.run)
            chunk = slice(start, start + c)
            for level, state in zip(self.levels, states):
                x = state[:, start - n:start - n + c]
                sigma = level.expand(x.shape[:2])
                v = self.student(x, timesteps_of(sigma, self.run.sampler.num_train_timesteps), prompt,
                                 inputs.temporal[:, chunk], inputs.cond.frames(chunk), context=context).velocity
                losses.append((x0_from_velocity(x, v, sigma) - x0[:, start - n:start - n + c]).square().mean())
        return torch.stack(losses).mean()


def _commit_mask(context: int, total: int, chunk: int, device: torch.device) -> Tensor:
    """Commit structure of [context | target]: the context as chunk-causal blocks from its start, then the target
    chunks, each seeing everything before it and itself."""
    blocks = torch.cat([torch.arange(context, device=device) // chunk,
                        (context + chunk - 1) // chunk + torch.arange(total - context, device=device) // chunk])
    return (blocks[None, :] <= blocks[:, None])[None]


def _prefix_context(model: CausalVideoDiT, kv: list[tuple[Tensor, Tensor]], inputs: TeacherInputs, end: int,
                    run: RunConfig):
    """AttentionContext of the first `end` frames of a committed sequence (None when end == 0)."""
    if end == 0:
        return None
    lf = run.tokens_per_frame
    keys = torch.stack([k[:, :end * lf] for k, _ in kv]).unflatten(2, (end, lf))
    values = torch.stack([v[:, :end * lf] for _, v in kv]).unflatten(2, (end, lf))
    b = keys.shape[1]
    spatial = model.spatial_positions(inputs.cond.frames(slice(0, end)), b, end, run.token_grid, keys.device)
    return model.prepare_context(keys, values, inputs.temporal[:, :end], spatial)
