"""Stage 1 (local DMD) and Stage 2 (contextual DMD with a rollout-length curriculum), DESIGN.md section 7.

Per generator update: `dmd.critic_ratio` critic updates (flow matching on fresh student rollouts), then one
generator update: the student rolls out with its memory (gradient only at each chunk's exit step), the
teacher (guided) and the critic score its target frames given the same context, and the DMD loss pulls the
student toward the teacher. Stage 1: 21-frame rollouts, empty teacher context. Stage 2: N ~ U{n_min..n_max(t)}
frames, chunks before the target without gradient, teacher and critic see the student's own memory as it
stood for the first target chunk (`dmd.teacher_context` "none": the target window only, LongLive-style).
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.config import RunConfig
from context_forcing.diffusion.schedule import add_noise, x0_from_velocity
from context_forcing.distill.dmd import dmd_gradient, dmd_loss, dmd_timesteps, flow_matching_loss
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.teacher import TeacherInputs, context_teacher_inputs
from context_forcing.rollout.training_rollout import RolloutResult, student_rollout
from context_forcing.training.config import TrainConfig
from context_forcing.training.curriculum import sample_rollout_length
from context_forcing.training.data import TrainingData
from context_forcing.training.distributed import local_samples
from context_forcing.training.ema import EMA
from context_forcing.training.optim import accumulate_step, adamw
from context_forcing.training.randomness import DrawSites, StepRandom
from context_forcing.training.stage import BaseStage, frozen


class DmdStage(BaseStage):
    """Stage 1 or Stage 2; see the module docstring."""

    def __init__(self, name: str, run: RunConfig, train: TrainConfig, layout: MemoryLayout,
                 generator: CausalVideoDiT, teacher: CausalVideoDiT, critic: CausalVideoDiT,
                 data: TrainingData) -> None:
        self.name, self.run, self.train, self.data = name, run, train, data
        self.generator, self.critic = generator.train(), critic.train()
        self.network = self.generator
        self.teacher = frozen(teacher)
        self.layout = layout
        self.opt_generator = adamw(generator, train.generator)
        self.opt_critic = adamw(critic, train.critic)
        self.ema = EMA(generator, train.ema_decay, train.ema_start)
        self.random = DrawSites(train.seed, local_samples(train.batch))
        self.device = next(generator.parameters()).device

    # ---- Stage protocol --------------------------------------------------------------------------------

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_generator, "critic": self.opt_critic}

    def train_step(self, step: int) -> dict[str, float]:
        self.random.start(step)
        metrics: dict[str, float] = {}
        for _ in range(self.train.dmd.critic_ratio):
            metrics["critic_loss"] = self._critic_update(step)
        metrics.update(self._generator_update(step))
        self.ema.update(self.generator, step + 1)
        return metrics

    def probe(self, episodes: int) -> dict[str, float]:
        """A short P1 and P2 eval of the live generator (eval/student_probe.py: recall, free-rollout drift);
        draws no training randomness."""
        from context_forcing.eval.student_probe import probe_student

        return probe_student(self.generator, self.run, self.layout, episodes, free_rollout=True)

    # ---- updates ---------------------------------------------------------------------------------------

    def _rollout_shape(self, step: int, random: StepRandom) -> tuple[int, int]:
        """(rollout frames N, target frames T) for this update."""
        if self.name == "stage1":
            return self.train.rollout_frames, self.train.rollout_frames
        curriculum = self.train.curriculum
        return sample_rollout_length(step, curriculum, self.run.chunk, random.shared), curriculum.target

    def _rollout(self, step: int, grad: bool, random: StepRandom) -> tuple[RolloutResult, TeacherInputs]:
        frames, target = self._rollout_shape(step, random)
        cond = self.data.next_conditioning(frames).to(self.device)
        first_target_chunk = (frames - target) // self.run.chunk
        rollout = student_rollout(self.generator, self.run, self.layout, cond, frames, random.shared,
                                  sample_generators=random.samples, grad_from_chunk=first_target_chunk,
                                  exit_step=self.train.dmd.exit_step, context_chunk=first_target_chunk,
                                  grad=grad, commit_last=False)  # no chunk follows the last
        x = rollout.latents[:, frames - target:]
        target_cond = cond.frames(slice(frames - target, frames))
        # Stage 1, a memory that was empty at the target, or teacher_context "none": an empty teacher context
        context = rollout.context if self.train.dmd.teacher_context == "memory" else None
        return rollout, context_teacher_inputs(context, x.detach(), target_cond)

    def _noised(self, x: Tensor, random: StepRandom) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, noise, t (B,)) at DMD timesteps, one t per sample for all its target frames."""
        dmd = self.train.dmd
        t = torch.cat([dmd_timesteps(1, dmd.t_min, dmd.t_max, self.run.sampler.shift, g)
                       for g in random.samples])
        t = t.to(self.device)
        noise = random.randn(*x.shape[1:]).to(self.device)
        sigma = (t / self.run.sampler.num_train_timesteps)[:, None]
        return add_noise(x, noise, sigma), noise, t

    def _critic_update(self, step: int) -> float:
        """Flow matching of the critic ("fake score") on the student's current samples, same context."""

        def micro_loss(_: int) -> Tensor:
            random = self.random.next()
            with torch.no_grad():
                rollout, inputs = self._rollout(step, grad=False, random=random)
            x = rollout.latents[:, -inputs.num_target:]
            x_t, noise, t = self._noised(x, random)
            return flow_matching_loss(inputs.target_velocity(self.critic, x_t, t), x, noise)

        loss, _ = accumulate_step(self.opt_critic, micro_loss, self.train.accumulation,
                                  self.train.critic.clip)
        return loss

    def _generator_update(self, step: int) -> dict[str, float]:
        """DMD: grad = (x0_fake - x0_real) / mean|x - x0_real|, only on frames that carry gradient."""
        grad_shares: list[float] = []

        def micro_loss(_: int) -> Tensor:
            random = self.random.next()
            rollout, inputs = self._rollout(step, grad=True, random=random)
            target = inputs.num_target
            x, mask = rollout.latents[:, -target:], rollout.grad_frames[:, -target:]
            x_t, _, t = self._noised(x.detach(), random)
            sigma = (t / self.run.sampler.num_train_timesteps)[:, None]
            with torch.no_grad():
                v_real = inputs.target_velocity(self.teacher, x_t, t, self.train.dmd.guidance)
                v_fake = inputs.target_velocity(self.critic, x_t, t)
            grad = dmd_gradient(x.detach(), x0_from_velocity(x_t, v_real, sigma),
                                x0_from_velocity(x_t, v_fake, sigma), mask)
            grad_shares.append(float(mask.float().mean()))
            return dmd_loss(x, grad, mask)

        loss, norm = accumulate_step(self.opt_generator, micro_loss, self.train.accumulation,
                                     self.train.generator.clip)
        return {"loss": loss, "grad_norm": norm, "grad_frame_share": sum(grad_shares) / len(grad_shares)}
