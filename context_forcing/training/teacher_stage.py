"""The context teacher: flow matching on `teacher_inputs` with memory-structured context and ERFT.

Per sample, the model-free context sampler picks sink / slow / fast frames from a real history; the target is
the next T frames (whole chunks). Recycled errors perturb the fast (optionally slow) context and the clean
target before noising (Error-Recycling Fine-Tuning); the loss asks for the velocity toward the clean target,
so the teacher learns to continue well from drifted context. Prompt dropout trains the null prompt for CFG.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.diffusion.schedule import add_noise, shift_sigma, velocity_target
from context_forcing.distill.dmd import flow_matching_loss
from context_forcing.memory.context_sampler import sample_context
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.teacher import TeacherInputs, teacher_inputs
from context_forcing.training.config import TrainConfig
from context_forcing.training.data import TrainingData
from context_forcing.training.distributed import gather_samples, local_samples
from context_forcing.training.ema import EMA
from context_forcing.training.erft import ErrorBank, banked_error, inject
from context_forcing.training.optim import adamw
from context_forcing.training.randomness import DrawSites, StepRandom, whole_chunks
from context_forcing.training.stage import BaseStage


def gather_context(latents: Tensor, cond: Conditioning, frames: list[tuple[int, ...]]
                   ) -> tuple[Tensor, Tensor, Conditioning]:
    """Per-sample context frames of real clips, padded: (latents (B, n, ...), valid (B, n), cond (B, n))."""
    b, device = latents.shape[0], latents.device
    n = max((len(f) for f in frames), default=0)
    # one host-built tensor each (no per-sample writes); padding gathers frame 0, masked by `valid`
    index = torch.tensor([list(f) + [0] * (n - len(f)) for f in frames], dtype=torch.long).reshape(b, n)
    valid = torch.arange(n)[None, :] < torch.tensor([len(f) for f in frames])[:, None]  # (B, n)
    index, valid = index.to(device), valid.to(device)
    rows = torch.arange(b, device=device)[:, None]
    return latents[rows, index], valid, cond.frames(index)


def sample_teacher_batch(latents: Tensor, cond: Conditioning, target: int, train: TrainConfig, chunk: int,
                         generators: list[torch.Generator]) -> tuple[TeacherInputs, Tensor, Tensor]:
    """Context chosen per sample (sample b with generators[b]) from the history before the last
    `target` frames.

    Returns the teacher inputs plus (B, n) masks of fast and slow context frames (for ERFT)."""
    history = latents.shape[1] - target
    choices = [sample_context(history, train.context, chunk, g) for g in generators]
    ctx, valid, ctx_cond = gather_context(latents, cond, [c.frames for c in choices])
    n = valid.shape[1]
    parts = [list(c.parts) + [""] * (n - len(c.parts)) for c in choices]  # padded like `valid`
    fast, slow = (torch.tensor([[p == kind for p in row] for row in parts], dtype=torch.bool)
                  .reshape(valid.shape).to(valid.device) for kind in ("fast", "slow"))
    tgt_cond = cond.frames(slice(history, None))
    return teacher_inputs(ctx, valid, ctx_cond, latents[:, history:], tgt_cond), fast, slow


class TeacherStage(BaseStage):
    """Trains the context teacher (DESIGN.md section 7)."""

    name = "teacher"

    def __init__(self, run: RunConfig, train: TrainConfig, model: CausalVideoDiT, data: TrainingData) -> None:
        self.run, self.train, self.data = run, train, data
        self.model = self.network = model.train()
        self.opt = adamw(model, train.generator, fused=True)  # see adamw: 8 % of an update before
        self.ema = EMA(model, train.ema_decay, train.ema_start)
        frame = (run.model.in_channels, run.video.latent_height, run.video.latent_width)
        self.bank = ErrorBank(train.erft, frame, run.sampler.num_train_timesteps)
        self.random = DrawSites(train.seed, local_samples(train.batch))
        self.device = next(model.parameters()).device
        self._errors: list[float] = []  # std of the errors banked in this update (for the log)
        self._probe_set = None  # built on the first probe

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"teacher": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"teacher": self.opt}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "erft": self.bank.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.bank.load_state_dict(state["erft"])

    def train_step(self, step: int) -> dict[str, float]:
        self._errors = []
        metrics = self._update(step, self.opt, self.train.generator.clip)
        metrics["erft_bank_std"] = self.bank.std()  # the error scale being recycled ...
        if self._errors:  # ... next to the model's current one (both 0 before the ERFT warm-up ends)
            metrics["erft_error_std"] = sum(self._errors) / len(self._errors)
        return metrics

    def probe(self, episodes: int) -> dict[str, float]:
        """probe-teacher's figures for the current (raw) weights on fixed eval episodes;
        touches no RNG state."""
        from context_forcing.eval.teacher_probe import build_probe_set, probe_teacher

        if self._probe_set is None or self._probe_set.target.shape[0] != episodes:
            self._probe_set = build_probe_set(self.run, episodes)
        try:
            return probe_teacher(self.model, self.run, self._probe_set, sample_steps=10)
        finally:
            self.model.train()

    def _erft_active(self) -> bool:
        return self.random.step >= self.train.erft.warmup_steps

    @property
    def max_history(self) -> int:
        """Most real frames before a target: room for the rollout and a sparse slow memory."""
        return self.train.rollout_frames + self.train.context.slow_every * self.train.context.max_slow

    def _history_frames(self, random: StepRandom) -> int:
        """Real frames before the target, whole chunks, uniform in [0, max_history]: targets sample every part
        of the early episode, not one fixed frame."""
        return whole_chunks(random.shared, 0, self.max_history // self.run.chunk, self.run.chunk)

    def _micro_loss(self) -> Tensor:
        random = self.random.next()
        c = self.run.chunk  # target: whole chunks up to rollout_frames, like the paper's 21-latent targets
        target = whole_chunks(random.shared, 1, self.train.rollout_frames // c, c)
        history = self._history_frames(random)
        # one length: one stream
        latents, cond = self.data.next_clip(self.max_history + self.train.rollout_frames)
        latents, cond = latents[:, :history + target].to(self.device), cond.frames(slice(0, history + target))
        cond = cond.to(self.device)
        inputs, fast, slow = sample_teacher_batch(latents, cond, target, self.train, self.run.chunk,
                                                  random.samples)
        clean = inputs.latents[:, inputs.num_context:]
        shift = self.train.timestep_shift or self.run.sampler.shift
        sigma = shift_sigma(random.rand(), shift).float().to(self.device)
        t = sigma * self.run.sampler.num_train_timesteps
        allowed = fast | slow if self.train.erft.inject_slow else fast
        context, perturbed = self._inject(inputs.latents[:, :inputs.num_context], allowed, clean, t, random)
        noise = random.randn(*clean.shape[1:]).to(self.device)
        x_t = add_noise(perturbed, noise, sigma[:, None])
        drop = random.rand() < self.train.prompt_dropout
        cond_in = _drop_prompts(inputs.cond, drop.to(self.device))
        sequence = torch.cat([context, x_t], dim=1)
        v = self.model(sequence, inputs.timesteps(t), self.model.encode_prompt(cond_in), inputs.temporal,
                       cond_in, frame_mask=inputs.frame_mask).velocity[:, inputs.num_context:]
        # toward the clean target: the teacher corrects recycled errors
        loss = flow_matching_loss(v, clean, noise)
        if self._erft_active():
            self._recycle(v.detach(), x_t, velocity_target(clean, noise), sigma, t)
        return loss

    def _inject(self, context: Tensor, allowed: Tensor, clean: Tensor, t: Tensor, random: StepRandom
                ) -> tuple[Tensor, Tensor]:
        """ERFT injection, sample by sample with each sample's own generator (none during the warm-up)."""
        if not self._erft_active():
            return context, clean
        parts = [inject(context[i:i + 1], allowed[i:i + 1], clean[i:i + 1], t[i:i + 1], self.bank,
                        self.train.erft, g)[:2] for i, g in enumerate(random.samples)]
        return torch.cat([c for c, _ in parts]), torch.cat([x for _, x in parts])

    def _recycle(self, v: Tensor, x_t: Tensor, v_target: Tensor, sigma: Tensor, t: Tensor) -> None:
        """Bank this prediction's per-frame x0 errors s (v* - v), grouped by timestep, frames in order; every
        process banks the errors of the whole global batch, in global order,
        so banks agree across processes."""
        frames = v.shape[1]
        per_frame_t = gather_samples(t[:, None].expand(-1, frames).contiguous()).reshape(-1)
        errors = gather_samples(banked_error(x_t, v, v_target, sigma[:, None])).flatten(0, 1)
        self._errors.append(float(errors.std()))
        self.bank.add(errors, per_frame_t)


def _drop_prompts(cond: Conditioning, drop: Tensor) -> Conditioning:
    """Replace the prompt of samples where `drop` (B,) is true by the null prompt."""
    null = cond.null_prompt()
    if cond.prompt is not None:
        return Conditioning(prompt=torch.where(drop[:, None], null.prompt, cond.prompt), actions=cond.actions,
                            pose=cond.pose, spatial_positions=cond.spatial_positions)
    return Conditioning(prompt_embeds=torch.where(drop[:, None, None], null.prompt_embeds,
                                                  cond.prompt_embeds),
                        actions=cond.actions, pose=cond.pose, spatial_positions=cond.spatial_positions)
