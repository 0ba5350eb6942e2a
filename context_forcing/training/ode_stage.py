"""ODE init: the few-step student regresses the teacher's multi-step trajectories
(CausVid / Self Forcing init).

The student streams a real history (the first H frames of a PanWorld episode, H random in whole chunks) into
its Slow-Fast Memory through a `StreamingSession`, exactly as generation builds it (DESIGN.md section 7,
"Learnability rules"): admission, eviction and bounded positions are the layout's. The teacher sees what that
memory holds at the first target chunk (sink + slow + fast, as in contextual DMD) and integrates the flow ODE
with CFG from noise for the target (whole chunks), on a grid through the student's noise levels. Each target
chunk is then denoised by the student at the memory's planned positions against its planned context, at every
student level regressing the trajectory's end point x0; the clean chunk is committed before the next one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.samplers import euler_sample
from context_forcing.diffusion.schedule import student_sigmas, timesteps_of, x0_from_velocity
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.session import StreamingSession
from context_forcing.rollout.teacher import TeacherInputs, context_teacher_inputs, memory_teacher_context
from context_forcing.training.config import TrainConfig
from context_forcing.training.data import TrainingData
from context_forcing.training.distributed import local_samples
from context_forcing.training.ema import EMA
from context_forcing.training.optim import adamw
from context_forcing.training.randomness import DrawSites, StepRandom, whole_chunks
from context_forcing.training.stage import BaseStage, frozen

MIN_INTERVAL_STEPS = 2  # Euler steps every interval of the ODE grid gets at least


def ode_grid(student_levels: Tensor, steps: int, min_steps: int = MIN_INTERVAL_STEPS) -> Tensor:
    """Euler grid from 1 to 0 through every student level: `min_steps` per interval, the rest by width.

    The intervals are (1 ->) level 0 -> level 1 -> ... -> last level -> 0. Each gets `min_steps` Euler steps;
    the other `steps - min_steps * intervals` go to the intervals in proportion to their width in sigma
    (largest remainder, ties to the lower-noise interval), uniform in sigma inside each. The shift-5 levels
    (1, 0.94, 0.83, 0.625) leave 5/8 of the path below the last level, so an even split per interval would
    give the low-noise end, where the detail of x0 is integrated, a quarter of the steps.
    Total: max(steps, min_steps * intervals). Deterministic: a pure function of its arguments.
    """
    levels = [float(s) for s in student_levels]
    anchors = ([1.0] if levels[0] < 1.0 else []) + levels + [0.0]  # the trajectory starts from pure noise
    widths = [a - b for a, b in zip(anchors[:-1], anchors[1:])]
    counts = _apportion(widths, max(steps - min_steps * len(widths), 0))
    parts = [torch.linspace(a, b, min_steps + k + 1)[:-1]  # k extra steps from a toward b
             for a, b, k in zip(anchors[:-1], anchors[1:], counts)]
    return torch.cat(parts + [torch.zeros(1)])


def _apportion(widths: list[float], total: int) -> list[int]:
    """`total` integers in proportion to `widths` (largest remainder; ties go to the later entry)."""
    quotas = [total * w / sum(widths) for w in widths]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(widths)), key=lambda i: (counts[i] - quotas[i], -i))  # largest remainder first
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


@torch.no_grad()
def teacher_trajectory(teacher: CausalVideoDiT, inputs: TeacherInputs, noise: Tensor, grid: Tensor,
                       keep: Tensor, guidance: float,
                       num_train_timesteps: int) -> tuple[list[Tensor], Tensor]:
    """Euler with CFG along `grid`; returns the states at the grid levels in `keep` and the end point x0."""
    # x (B, T, C, H, W) target, sigma (B, T); prompts and the context's K/V once for the whole trajectory
    velocity = inputs.sampler_velocity(teacher, guidance, num_train_timesteps)
    kept: list[Tensor] = []
    x0 = euler_sample(velocity, noise, grid, trajectory=kept, record=keep)
    return kept, x0


class OdeInitStage(BaseStage):
    """Regress teacher ODE trajectories with the few-step student (DESIGN.md section 7, "ODE init")."""

    name = "ode-init"

    def __init__(self, run: RunConfig, train: TrainConfig, layout: MemoryLayout, student: CausalVideoDiT,
                 teacher: CausalVideoDiT, data: TrainingData) -> None:
        self.run, self.train, self.data = run, train, data
        self.student, self.teacher = student.train(), frozen(teacher)
        self.network = self.student
        self.layout = layout  # the memory streaming will run with
        self.opt = adamw(student, train.generator)
        self.ema = EMA(student, train.ema_decay, train.ema_start)
        self.random = DrawSites(train.seed, local_samples(train.batch))
        self.device = next(student.parameters()).device
        self.levels = student_sigmas(run.sampler.student_timesteps, run.sampler.shift,
                                     run.sampler.num_train_timesteps).to(self.device)
        self.grid = ode_grid(self.levels.cpu(), train.ode_steps).to(self.device)
        # history long enough that slow memory fills: max_slow admissions at the layout's admission spacing
        policy = self.layout.policy
        # candidates per admission (similarity: ~1.3)
        spacing = policy.every if policy.kind == "uniform" else 2
        self.max_history = train.rollout_frames + self.layout.chunk * spacing * (self.layout.slow + 1)

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"student": self.student}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"student": self.opt}

    def train_step(self, step: int) -> dict[str, float]:
        return self._update(step, self.opt, self.train.generator.clip)

    def probe(self, episodes: int) -> dict[str, float]:
        """A short P1 and P2 eval of the live student (eval/student_probe.py: recall and free-rollout drift);
        draws no training randomness."""
        from context_forcing.eval.student_probe import probe_student

        return probe_student(self.student, self.run, self.layout, episodes, free_rollout=True)

    def _history_frames(self, random: StepRandom) -> int:
        """Real frames streamed into the student's memory before the target: whole chunks, uniform in
        [0, max_history] (long enough for slow memory to fill under sparse admission)."""
        return whole_chunks(random.shared, 0, self.max_history // self.run.chunk, self.run.chunk)

    def _micro_loss(self) -> Tensor:
        c, random = self.run.chunk, self.random.next()
        target = whole_chunks(random.shared, 1, self.train.rollout_frames // c, c)
        history = self._history_frames(random)
        latents, cond = self.data.next_clip(self.max_history + self.train.rollout_frames)  # one stream
        latents, cond = latents[:, :history + target].to(self.device), cond.frames(slice(0, history + target))
        cond = cond.to(self.device)
        # the student streams the real history into its Slow-Fast Memory exactly as generation does; the
        # teacher sees what that memory holds at the first target chunk (as in contextual DMD)
        session = StreamingSession(self.student, self.run, cond, layout=self.layout)
        if history:
            session.prefill(latents[:, :history])
        context = memory_teacher_context(session.memory, session.memory.plan(), cond)
        inputs = context_teacher_inputs(context, latents[:, history:], cond.frames(slice(history, None)))
        noise = random.randn(target, *inputs.latents.shape[2:]).to(self.device)
        states, x0 = teacher_trajectory(self.teacher, inputs, noise, self.grid, self.levels,
                                        self.train.dmd.guidance, self.run.sampler.num_train_timesteps)
        return self._regress(session, cond, history, states, x0)

    def _regress(self, session: StreamingSession, cond: Conditioning, history: int, states: list[Tensor],
                 x0: Tensor) -> Tensor:
        """Chunk steps against the student's streaming memory at every level; MSE of the student's x0 to x0.

        session: the student's session after streaming the `history` real frames; cond covers those and the
        target's frames; states: the trajectory (B, T, C, H, W) at each student level; x0 its end point.
        """
        c = self.run.chunk
        prompt = self.student.encode_prompt(cond)  # with gradient, unlike the session's own
        losses = []
        for start in range(0, x0.shape[1], c):
            plans = session.memory.plan()
            with torch.no_grad():
                memory_context = session.memory.context(self.student, plans)  # detached, as in the rollouts
            temporal = torch.tensor([p.chunk_positions for p in plans], dtype=torch.float32,
                                    device=self.device)  # (B, c) bounded plan positions
            chunk_cond = cond.frames(slice(history + start, history + start + c))
            for level, state in zip(self.levels, states):
                x = state[:, start:start + c]
                sigma = level.expand(x.shape[:2])
                t = timesteps_of(sigma, self.run.sampler.num_train_timesteps)
                v = self.student(x, t, prompt, temporal, chunk_cond, context=memory_context).velocity
                losses.append((x0_from_velocity(x, v, sigma) - x0[:, start:start + c]).square().mean())
            if start + c < x0.shape[1]:  # commit the clean chunk as streaming commits its output
                session.prefill(x0[:, start:start + c])
        return torch.stack(losses).mean()
