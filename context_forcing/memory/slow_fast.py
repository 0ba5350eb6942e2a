"""Slow-Fast Memory: per-sample tables (pure planner) over one preallocated slot store.

Per chunk (DESIGN.md section 5): `plan()` -> `context(model, plans)` (gather + rotate once, reused by every
denoising step) -> the sampler -> `commit(...)` with the clean chunk's K/V, which also moves frames out of
fast and decides admission to slow memory once for all layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from context_forcing.memory.layout import MemoryLayout
from context_forcing.memory.plan import ChunkPlan, MemoryTable, admit, commit_chunk, plan_chunk
from context_forcing.memory.policy import AdmissionState, decide
from context_forcing.memory.store import SlotStore, StoreShape
from context_forcing.model.attention import AttentionContext


@dataclass(frozen=True)
class FrameInputs:
    """What the memory keeps about committed frames besides K/V: latents (B, n, C, H, W), actions (B, n, A),
    pose (B, n, 1), spatial positions (B, n, Lf, 2)."""

    latents: Tensor
    actions: Tensor
    pose: Tensor
    spatial: Tensor


@dataclass
class AdmissionEvent:
    sample: int
    candidate: tuple[int, ...]
    admitted: bool


@dataclass
class MemoryStats:
    """Counters across the memory's life, for reports."""

    candidates: int = 0
    admissions: int = 0
    events: list[AdmissionEvent] = field(default_factory=list)


class SlowFastMemory:
    """K/V cache with sink, similarity-gated slow memory and fast memory, bounded positions."""

    def __init__(self, layout: MemoryLayout, shape: StoreShape, batch: int, summary_layers: tuple[int, ...] = (),
                 admit_kv: str = "clean", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.layout = layout
        self.shape = shape
        self.batch = batch
        self.summary_layers = tuple(summary_layers) or tuple(range(shape.layers))
        self.admit_kv = admit_kv
        capacity = layout.budget if layout.budget is not None else 8 * layout.chunk
        self.store = SlotStore(shape, batch, capacity, device, dtype)
        self.tables = [MemoryTable() for _ in range(batch)]
        self.admission = [AdmissionState() for _ in range(batch)]
        self.slots: list[dict[int, int]] = [{} for _ in range(batch)]  # per sample: frame -> slot
        self.first_pass: list[dict[int, tuple[Tensor, Tensor]]] = [{} for _ in range(batch)]
        self.stats = MemoryStats()

    # ---- planning -------------------------------------------------------------------------------------

    @property
    def next_frame(self) -> int:
        return self.tables[0].next_frame

    def plan(self) -> list[ChunkPlan]:
        """One plan per sample for the next chunk (pure function of each sample's table)."""
        return [plan_chunk(self.layout, table) for table in self.tables]

    def context(self, model: torch.nn.Module, plans: list[ChunkPlan]) -> AttentionContext | None:
        """Gather the planned frames' K/V (padded across samples) and rotate them at their plan positions."""
        n = max(len(p.frames) for p in plans)
        if n == 0:
            return None
        slots, temporal, valid = self._padded(plans, n)
        fields = self.store.gather(slots)
        return model.prepare_context(fields["keys"], fields["values"], temporal, fields["spatial"], valid)

    def _padded(self, plans: list[ChunkPlan], n: int) -> tuple[Tensor, Tensor, Tensor]:
        slots = torch.zeros(self.batch, n, dtype=torch.long)
        temporal = torch.zeros(self.batch, n)
        valid = torch.zeros(self.batch, n, dtype=torch.bool)
        for b, plan in enumerate(plans):
            k = len(plan.frames)
            slots[b, :k] = torch.tensor([self.slots[b][f] for f in plan.frames], dtype=torch.long)
            temporal[b, :k] = torch.tensor(plan.positions, dtype=torch.float32)
            valid[b, :k] = True
        device = self.store.device
        return slots.to(device), temporal.to(device), valid.to(device)

    def context_frames(self, plans: list[ChunkPlan]) -> tuple[dict[str, Tensor], Tensor] | None:
        """Stored latents and per-frame conditioning of the planned context, padded: (fields, valid (B, n)).

        This is what the teacher sees in contextual DMD: the student's own memory (DESIGN.md section 7).
        """
        n = max(len(p.frames) for p in plans)
        if n == 0:
            return None
        slots, _, valid = self._padded(plans, n)
        return self.store.gather(slots), valid

    # ---- commit and admission -------------------------------------------------------------------------

    def commit(self, kv: list[tuple[Tensor, Tensor]], frames: FrameInputs,
               first_pass_kv: list[tuple[Tensor, Tensor]] | None = None) -> list[AdmissionEvent]:
        """Write the clean chunk's K/V (per layer (B, c * Lf, H, hd)) into fast, then leave-and-admit."""
        c = self.layout.chunk
        keys = torch.stack([k for k, _ in kv]).unflatten(2, (c, -1))  # (layers, B, c, Lf, H, hd)
        values = torch.stack([v for _, v in kv]).unflatten(2, (c, -1))
        summary_keys = keys
        if self.admit_kv == "first_pass":
            if first_pass_kv is None:
                raise ValueError("memory.admit_kv='first_pass' needs the first denoising pass's K/V")
            summary_keys = torch.stack([k for k, _ in first_pass_kv]).unflatten(2, (c, -1))
            self._keep_first_pass(first_pass_kv)
        summary = self._summaries(summary_keys)  # (B, c, S)
        slots = self._allocate_chunk()
        self.store.write(slots, keys, values, frames.latents, frames.actions, frames.pose, frames.spatial, summary)
        events = []
        for b in range(self.batch):
            events.extend(self._leave_and_admit(b))
        return events

    def _summaries(self, keys: Tensor) -> Tensor:
        """Per-frame admission summary: mean un-rotated key over tokens, concatenated over summary layers."""
        chosen = keys[list(self.summary_layers)].mean(dim=3)  # (layers_s, B, c, H, hd)
        return chosen.permute(1, 2, 0, 3, 4).flatten(2)  # (B, c, layers_s * H * hd)

    def _allocate_chunk(self) -> Tensor:
        """Free slots for the chunk's frames, per sample: (B, c)."""
        c = self.layout.chunk
        out = torch.zeros(self.batch, c, dtype=torch.long)
        for b in range(self.batch):
            used = set(self.slots[b].values())
            needed = len(used) + c
            self.store.ensure_capacity(needed)
            free = [s for s in range(self.store.capacity) if s not in used][:c]
            start = self.tables[b].next_frame
            for i, slot in enumerate(free):
                self.slots[b][start + i] = slot
            out[b] = torch.tensor(free)
        return out.to(self.store.device)

    def _leave_and_admit(self, b: int) -> list[AdmissionEvent]:
        table, candidates = commit_chunk(self.layout, self.tables[b])
        events = []
        for candidate in candidates:
            summary = self.store.summary[b, [self.slots[b][f] for f in candidate]].mean(dim=0)
            admitted, self.admission[b] = decide(self.layout.policy, self.admission[b], summary)
            table = admit(self.layout, table, candidate, admitted)
            self.stats.candidates += 1
            self.stats.admissions += int(admitted)
            events.append(AdmissionEvent(b, candidate, admitted))
            self.stats.events.append(events[-1])
        self.tables[b] = table
        self._release(b)
        return events

    def _release(self, b: int) -> None:
        """Free the slots of frames the table no longer references; swap in first-pass K/V for new slow frames."""
        table = self.tables[b]
        kept = set(table.sink) | set(table.slow) | set(table.fast)
        for frame in list(self.slots[b]):
            if frame not in kept:
                del self.slots[b][frame]
        if self.admit_kv == "first_pass":
            for frame in table.slow:
                if frame in self.first_pass[b]:
                    self.store.write_kv(b, self.slots[b][frame], *self.first_pass[b].pop(frame))
            for frame in list(self.first_pass[b]):
                if frame not in kept:
                    del self.first_pass[b][frame]

    def _keep_first_pass(self, kv: list[tuple[Tensor, Tensor]]) -> None:
        c = self.layout.chunk
        keys = torch.stack([k for k, _ in kv]).unflatten(2, (c, -1)).detach()
        values = torch.stack([v for _, v in kv]).unflatten(2, (c, -1)).detach()
        for b in range(self.batch):
            start = self.tables[b].next_frame
            for i in range(c):
                self.first_pass[b][start + i] = (keys[:, b, i], values[:, b, i])
