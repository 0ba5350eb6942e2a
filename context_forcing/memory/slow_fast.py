"""Slow-Fast Memory: per-sample tables (pure planner) over one preallocated slot store.

Per chunk (DESIGN.md section 5): `plan()` -> `context(model, plans)` (gather + rotate once, reused by every
denoising step) -> the sampler -> `commit(...)` with the clean chunk's K/V, which also moves frames out of
fast and decides admission to slow memory once for all layers.
"""

from __future__ import annotations

from array import array
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


@dataclass(frozen=True)
class AdmissionEvent:
    sample: int
    candidate: tuple[int, ...]
    admitted: bool


def host_tensor(values: list[int] | list[float] | list[bool], dtype: torch.dtype, rows: int,
                device: torch.device | str) -> Tensor:
    """(rows, len(values) // rows) tensor of flat Python numbers, built through a buffer.

    Not `torch.tensor(list)` on the per-chunk path: it probes the list for `__cuda_array_interface__` and
    `__dlpack__` under newly made name strings, and CPython 3.11's type-attribute cache keeps such strings
    alive (slots keyed by the string's address: up to 4096 of them), a slow rise in live memory over a long
    stream (docs/BENCHMARKS.md, soak). The values are converted exactly as `torch.tensor` would.
    """
    typecode = {torch.long: "q", torch.float32: "f", torch.bool: "B"}[dtype]
    return torch.frombuffer(array(typecode, values), dtype=dtype).view(rows, -1).to(device=device)


@dataclass
class MemoryStats:
    """Admission counters over a memory's life, for reports: O(1) in video length. The events themselves are
    `commit`'s return value (a session keeps the last chunk's)."""

    candidates: int = 0
    admissions: int = 0

    def add(self, event: AdmissionEvent) -> None:
        self.candidates += 1
        self.admissions += int(event.admitted)


@dataclass
class SampleMemory:
    """Everything the memory knows about one sample besides the slot store's tensors."""

    table: MemoryTable = field(default_factory=MemoryTable)  # which frame sits in which part
    admission: AdmissionState = field(default_factory=AdmissionState)  # what the policy remembers
    slots: dict[int, int] = field(default_factory=dict)  # frame -> slot of the store
    first_pass: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # first_pass: frame -> K/V
    stats: MemoryStats = field(default_factory=MemoryStats)


class SlowFastMemory:
    """K/V cache with sink, similarity-gated slow memory and fast memory, bounded positions.

    Per sample one `SampleMemory` record (`samples[b]`); the K/V and per-frame fields of all samples in one
    `SlotStore`. `layout.admit_kv` says which K/V a frame entering slow memory keeps.
    """

    def __init__(self, layout: MemoryLayout, shape: StoreShape, batch: int,
                 summary_layers: tuple[int, ...] = (), device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.layout = layout
        self.shape = shape
        self.batch = batch
        self.summary_layers = tuple(summary_layers) or tuple(range(shape.layers))
        capacity = layout.budget if layout.budget is not None else 8 * layout.chunk
        self.store = SlotStore(shape, batch, capacity, device, dtype)
        self.samples = [SampleMemory() for _ in range(batch)]
        # built once: indexing with a Python list would build a tensor from it every chunk (`host_tensor`)
        self._summary_index = torch.tensor(self.summary_layers, dtype=torch.long, device=device)

    @property
    def tables(self) -> list[MemoryTable]:
        """Each sample's table, a new list (to change a table, set `samples[b].table`)."""
        return [s.table for s in self.samples]

    @property
    def stats(self) -> MemoryStats:
        """Admission counters summed over the samples."""
        return MemoryStats(sum(s.stats.candidates for s in self.samples),
                           sum(s.stats.admissions for s in self.samples))

    # ---- planning -------------------------------------------------------------------------------------

    @property
    def next_frame(self) -> int:
        return self.samples[0].table.next_frame

    def plan(self) -> list[ChunkPlan]:
        """One plan per sample for the next chunk (pure function of each sample's table)."""
        return [plan_chunk(self.layout, s.table) for s in self.samples]

    def context(self, model: torch.nn.Module, plans: list[ChunkPlan],
                pad_to: int | None = None) -> AttentionContext | None:
        """Gather the planned frames' K/V (padded across samples) and rotate them at their plan positions.

        pad_to: pad every sample to this many context frames, masked (a compiled forward's fixed shapes: one
        graph from the first chunk on); the mask is then kept even where every frame is valid."""
        n = max(len(p.frames) for p in plans)
        if pad_to is not None:
            if n > pad_to:
                raise ValueError(f"a plan attends {n} context frames, more than pad_to={pad_to}")
            n = pad_to
        if n == 0:
            return None
        slots, temporal, valid = self._padded(plans, n)
        fields = self.store.gather(slots, ("keys", "values", "spatial"))  # what attention reads
        return model.prepare_context(fields["keys"], fields["values"], temporal, fields["spatial"], valid,
                                     keep_mask=pad_to is not None)

    def _padded(self, plans: list[ChunkPlan], n: int) -> tuple[Tensor, Tensor, Tensor]:
        """(slots, temporal positions, valid), each (B, n), of the planned context frames, zero-padded."""
        slots: list[int] = []
        temporal: list[float] = []
        valid: list[bool] = []
        for sample, plan in zip(self.samples, plans):
            pad = n - len(plan.frames)
            slots += [sample.slots[f] for f in plan.frames] + [0] * pad
            temporal += [float(x) for x in plan.positions] + [0.0] * pad
            valid += [True] * len(plan.frames) + [False] * pad
        b, device = len(plans), self.store.device
        return (host_tensor(slots, torch.long, b, device), host_tensor(temporal, torch.float32, b, device),
                host_tensor(valid, torch.bool, b, device))

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
        if self.layout.admit_kv == "first_pass":
            if first_pass_kv is None:
                raise ValueError("memory.admit_kv='first_pass' needs the first denoising pass's K/V")
            summary_keys = torch.stack([k for k, _ in first_pass_kv]).unflatten(2, (c, -1))
            self._keep_first_pass(first_pass_kv)
        summary = self._summaries(summary_keys)  # (B, c, S)
        slots = self._allocate_chunk()
        self.store.write(slots, keys, values, frames.latents, frames.actions, frames.pose,
                         frames.spatial, summary)
        events = []
        for b in range(self.batch):
            events.extend(self._leave_and_admit(b))
        return events

    def _summaries(self, keys: Tensor) -> Tensor:
        """Per-frame admission summary: mean un-rotated key over tokens, concatenated over summary layers."""
        index = self._summary_index.to(device=keys.device)
        chosen = keys.index_select(0, index).mean(dim=3)  # (layers_s, B, c, H, hd)
        return chosen.permute(1, 2, 0, 3, 4).flatten(2)  # (B, c, layers_s * H * hd)

    def _allocate_chunk(self) -> Tensor:
        """Free slots for the chunk's frames, per sample: (B, c)."""
        c = self.layout.chunk
        slots: list[int] = []
        for sample in self.samples:
            used = set(sample.slots.values())
            self.store.ensure_capacity(len(used) + c)
            free = [s for s in range(self.store.capacity) if s not in used][:c]
            start = sample.table.next_frame
            for i, slot in enumerate(free):
                sample.slots[start + i] = slot
            slots += free
        return host_tensor(slots, torch.long, self.batch, self.store.device)

    def _leave_and_admit(self, b: int) -> list[AdmissionEvent]:
        sample = self.samples[b]
        table, candidates = commit_chunk(self.layout, sample.table)
        events = []
        for candidate in candidates:
            rows = host_tensor([sample.slots[f] for f in candidate], torch.long, 1, self.store.device)[0]
            summary = self.store.summary[b, rows].mean(dim=0)  # (S,)
            admitted, sample.admission = decide(self.layout.policy, sample.admission, summary)
            table = admit(self.layout, table, candidate, admitted)
            events.append(AdmissionEvent(b, candidate, admitted))
            sample.stats.add(events[-1])
        sample.table = table
        self._release(b)
        return events

    def _release(self, b: int) -> None:
        """Free the slots of frames the table no longer references;
        swap in first-pass K/V for new slow frames."""
        sample = self.samples[b]
        table = sample.table
        kept = set(table.sink) | set(table.slow) | set(table.fast)
        for frame in list(sample.slots):
            if frame not in kept:
                del sample.slots[frame]
        if self.layout.admit_kv == "first_pass":
            for frame in table.slow:
                if frame in sample.first_pass:
                    self.store.write_kv(b, sample.slots[frame], *sample.first_pass.pop(frame))
            for frame in list(sample.first_pass):
                if frame not in kept:
                    del sample.first_pass[frame]

    def _keep_first_pass(self, kv: list[tuple[Tensor, Tensor]]) -> None:
        c = self.layout.chunk
        keys = torch.stack([k for k, _ in kv]).unflatten(2, (c, -1)).detach()
        values = torch.stack([v for _, v in kv]).unflatten(2, (c, -1)).detach()
        for b, sample in enumerate(self.samples):
            start = sample.table.next_frame
            for i in range(c):
                sample.first_pass[start + i] = (keys[:, b, i], values[:, b, i])
