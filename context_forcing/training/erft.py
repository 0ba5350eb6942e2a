"""Error-Recycling Fine-Tuning (ERFT, Stable Video Infinity, Li et al. 2025) as the context teacher uses it.

The teacher's own per-frame prediction errors are banked by timestep and recycled: added to the fast (and
optionally slow) context frames and to the clean target before noising, so the teacher learns to continue
well from drifted, self-generated context. Two kinds of error: "x0" (x0_pred - x0, the data end) and
"noise" (eps_pred - eps, the noise end).
"""

from __future__ import annotations

import torch
from torch import Tensor

from context_forcing.training.config import ErftConfig

KINDS = ("x0", "noise")


class ErrorBank:
    """Per-frame error banks: `cfg.groups` equal timestep groups of [0, T) x 2 kinds, `cfg.bank_size` each.

    Buffers live on the CPU and grow on demand (a paper-scale bank is GBs; most runs never fill it).
    """

    def __init__(self, cfg: ErftConfig, frame_shape: tuple[int, ...], num_timesteps: int = 1000) -> None:
        self.cfg, self.frame_shape, self.num_timesteps = cfg, tuple(frame_shape), num_timesteps
        self._buffers: dict[str, list[Tensor]] = {k: [self._empty(0)] * cfg.groups for k in KINDS}
        self._counts: dict[str, list[int]] = {k: [0] * cfg.groups for k in KINDS}

    def _empty(self, rows: int) -> Tensor:
        return torch.zeros(rows, *self.frame_shape)

    def group_of(self, timesteps: Tensor) -> Tensor:
        """Group index (N,) of each timestep: floor(t * groups / T), clamped so t = T joins the last group."""
        g = torch.floor(timesteps.double().cpu() * self.cfg.groups / self.num_timesteps).long()
        return g.clamp(0, self.cfg.groups - 1)

    def count(self, kind: str, group: int) -> int:
        return self._counts[kind][group]

    def entries(self, kind: str, group: int) -> Tensor:
        """The stored errors of one (kind, group): (count, *frame_shape), a view."""
        return self._buffers[kind][group][:self._counts[kind][group]]

    def add(self, kind: str, errors: Tensor, timesteps: Tensor) -> None:
        """Bank errors (N, *frame_shape) at timesteps (N,); a full group replaces its nearest entry (SVI)."""
        if tuple(errors.shape[1:]) != self.frame_shape or kind not in KINDS:
            raise ValueError(f"erft: expected {KINDS} errors of shape (N, {self.frame_shape}), got {kind!r} "
                             f"{tuple(errors.shape)}")
        if self.cfg.bank_size == 0:
            return
        errors = errors.detach().to("cpu", torch.float32)
        for error, group in zip(errors, self.group_of(timesteps).tolist()):
            self._add_one(kind, group, error)

    def _add_one(self, kind: str, group: int, error: Tensor) -> None:
        n = self._counts[kind][group]
        if n < self.cfg.bank_size:
            self._reserve(kind, group, n + 1)
            self._buffers[kind][group][n] = error
            self._counts[kind][group] = n + 1
            return
        # full: replace the nearest stored error (L2), so the bank keeps diverse errors, not just recent ones
        stored = self._buffers[kind][group]
        nearest = int(((stored - error) ** 2).flatten(1).sum(1).argmin())
        stored[nearest] = error

    def _reserve(self, kind: str, group: int, rows: int) -> None:
        """Grow a buffer geometrically (amortised O(1) appends) up to the bank size."""
        buffer = self._buffers[kind][group]
        if buffer.shape[0] >= rows:
            return
        grown = self._empty(min(self.cfg.bank_size, max(rows, 2 * buffer.shape[0], 8)))
        grown[:buffer.shape[0]] = buffer
        self._buffers[kind][group] = grown

    def sample(self, kind: str, timesteps: Tensor, generator: torch.Generator) -> Tensor:
        """One error per timestep (N, *frame_shape): uniform in its group, else in the nearest non-empty one.

        Zeros when the bank of this kind is empty.
        """
        out = self._empty(timesteps.shape[0])
        filled = [g for g in range(self.cfg.groups) if self._counts[kind][g] > 0]
        if not filled:
            return out
        for i, group in enumerate(self.group_of(timesteps).tolist()):
            source = min(filled, key=lambda g: (abs(g - group), g))  # ties go to the lower-noise group
            pick = int(torch.randint(self._counts[kind][source], (1,), generator=generator))
            out[i] = self._buffers[kind][source][pick]
        return out

    def state_dict(self) -> dict[str, Tensor]:
        """Flat dict of tensors for safetensors: `{kind}.counts` (groups,), `{kind}.{g}` per filled group."""
        state: dict[str, Tensor] = {}
        for kind in KINDS:
            state[f"{kind}.counts"] = torch.tensor(self._counts[kind], dtype=torch.long)
            for g, n in enumerate(self._counts[kind]):
                if n:
                    # own storage: safetensors rejects views into a larger buffer shared with others
                    state[f"{kind}.{g}"] = self.entries(kind, g).clone()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from `state_dict()`; groups and frame shape must match; entries past bank_size drop."""
        for kind in KINDS:
            counts = state[f"{kind}.counts"].tolist()
            if len(counts) != self.cfg.groups:
                raise ValueError(f"erft bank has {len(counts)} groups, config erft.groups={self.cfg.groups}")
            for g, n in enumerate(counts):
                entries = state[f"{kind}.{g}"][:min(n, self.cfg.bank_size)] if n else self._empty(0)
                if tuple(entries.shape[1:]) != self.frame_shape:
                    raise ValueError(f"erft bank frames are {tuple(entries.shape[1:])}, "
                                     f"expected {self.frame_shape}")
                self._buffers[kind][g] = entries.to("cpu", torch.float32).clone()
                self._counts[kind][g] = entries.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the bank buffers (allocated, including reserved growth)."""
        return sum(b.numel() * b.element_size() for kind in KINDS for b in self._buffers[kind])


def inject(context: Tensor, context_mask: Tensor | tuple[Tensor, Tensor], target: Tensor, bank: ErrorBank,
           cfg: ErftConfig, generator: torch.Generator) -> tuple[Tensor, Tensor, dict[str, int]]:
    """ERFT injection (SVI): recycled x0 errors added to context (B, n, ...) and clean target (B, T, ...).

    context_mask is a (B, n) bool of the frames that may be perturbed, or a (fast, slow) pair of (B, n) bools
    from which cfg.inject_slow decides. Per sample: with p_clean nothing; otherwise, independently, the
    allowed context frames with p_context and all target frames with p_target. Errors are drawn per frame
    from one random timestep group per sample. Returns (context', target', counts for logging).
    """
    allowed = _allowed_frames(context_mask, cfg).to(context.device)
    b = target.shape[0]
    draws = torch.rand(b, 3, generator=generator)  # (B, 3): clean?, context?, target?
    active = draws[:, 0] >= cfg.p_clean
    hit_context = (active & (draws[:, 1] < cfg.p_context)).to(context.device)
    hit_target = (active & (draws[:, 2] < cfg.p_target)).to(target.device)
    t = torch.randint(bank.num_timesteps, (b,), generator=generator)  # (B,) whose group supplies the errors
    context_frames = allowed & hit_context[:, None]  # (B, n)
    target_frames = hit_target[:, None].expand(target.shape[:2])  # (B, T)
    info = {"clean": int((~active).sum()), "context": int(hit_context.sum()), "target": int(hit_target.sum()),
            "context_frames": int(context_frames.sum()), "target_frames": int(target_frames.sum())}
    if cfg.bank_size == 0:  # ERFT disabled: decisions are drawn (same generator stream), nothing is added
        return context, target, info
    return (_add_errors(context, context_frames, t, bank, generator),
            _add_errors(target, target_frames, t, bank, generator), info)


def _allowed_frames(context_mask: Tensor | tuple[Tensor, Tensor], cfg: ErftConfig) -> Tensor:
    if isinstance(context_mask, Tensor):
        return context_mask.bool()
    fast, slow = context_mask
    return fast.bool() | slow.bool() if cfg.inject_slow else fast.bool()


def _add_errors(latents: Tensor, frames: Tensor, t: Tensor, bank: ErrorBank,
                generator: torch.Generator) -> Tensor:
    """latents (B, F, ...) plus a recycled x0 error on each selected frame of frames (B, F); out of place."""
    rows, cols = frames.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return latents
    errors = bank.sample("x0", t[rows.cpu()], generator)  # (N, C, H, W) on the CPU
    return latents.index_put((rows, cols), errors.to(latents.device, latents.dtype), accumulate=True)
