"""Pure per-sample planning of the Slow-Fast Memory (DESIGN.md section 5, steps 1, 2, 4, 5 and 6).

A `MemoryTable` says which absolute latent frames one sample's memory holds in each part. `plan_chunk`
turns it into the context the next chunk attends to (frames, parts, temporal RoPE positions);
`commit_chunk` and `admit` advance it. No tensors here: the K/V store replays these decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from context_forcing.memory.layout import MemoryLayout

PARTS = ("sink", "slow", "fast")


@dataclass(frozen=True)
class MemoryTable:
    """One sample's memory bookkeeping: absolute latent frame indices per part, each in time order."""

    sink: tuple[int, ...] = ()
    slow: tuple[int, ...] = ()  # oldest first
    fast: tuple[int, ...] = ()  # committed non-sink frames still in fast, oldest first
    next_frame: int = 0  # first absolute frame index not committed yet


@dataclass(frozen=True)
class ChunkPlan:
    """What one chunk of one sample attends to: context frames in attention order, then the chunk."""

    frames: tuple[int, ...]  # sink, slow, fast frames (each part in time order)
    parts: tuple[str, ...]  # "sink" | "slow" | "fast" per context frame
    positions: tuple[int, ...]  # temporal RoPE position per context frame
    chunk_frames: tuple[int, ...]  # absolute indices of the chunk being generated
    chunk_positions: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.frames) == len(self.parts) == len(self.positions):
            raise ValueError(f"frames, parts and positions differ in length: {self}")
        if len(self.chunk_frames) != len(self.chunk_positions):
            raise ValueError(f"chunk_frames and chunk_positions differ in length: {self}")

    @property
    def slots(self) -> int:
        """Frames attended, the chunk itself included."""
        return len(self.frames) + len(self.chunk_frames)

    def part(self, name: str) -> tuple[int, ...]:
        """Context frames of one part ("sink" | "slow" | "fast"), in time order."""
        return tuple(f for f, p in zip(self.frames, self.parts) if p == name)


def chunk_frames(layout: MemoryLayout, table: MemoryTable) -> tuple[int, ...]:
    """Absolute indices of the chunk generated next: next_frame .. next_frame + chunk - 1."""
    return tuple(range(table.next_frame, table.next_frame + layout.chunk))


def positions_for(layout: MemoryLayout, table: MemoryTable) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Temporal positions of (context in attention order, chunk):
    bounded anchoring of DESIGN.md section 5.2."""
    chunk = chunk_frames(layout, table)
    if not layout.bounded:
        # `absolute` (the ablation) and `full` (no budget) keep absolute frame indices
        return (*table.sink, *table.slow, *table.fast), chunk
    budget = layout.budget
    assert budget is not None  # bounded implies a budget
    # the chunk's last frame sits at the anchor; chunk, fast, slow count down from it contiguously
    anchor = min(chunk[-1], budget - 1)
    below = len(table.slow) + len(table.fast) + len(chunk)
    counted = tuple(range(anchor - below + 1, anchor + 1))  # slow, fast, chunk in slot order
    sink = tuple(range(len(table.sink)))  # the sink always sits at 0 .. N_s - 1
    return sink + counted[: -len(chunk)], counted[-len(chunk):]


def plan_chunk(layout: MemoryLayout, table: MemoryTable) -> ChunkPlan:
    """Plan the next chunk (DESIGN.md section 5.1): context = sink + slow + fast, then the chunk itself."""
    positions, chunk_positions = positions_for(layout, table)
    parts = ("sink",) * len(table.sink) + ("slow",) * len(table.slow) + ("fast",) * len(table.fast)
    return ChunkPlan(
        frames=(*table.sink, *table.slow, *table.fast),
        parts=parts,
        positions=positions,
        chunk_frames=chunk_frames(layout, table),
        chunk_positions=chunk_positions,
    )


def commit_chunk(layout: MemoryLayout, table: MemoryTable) -> tuple[MemoryTable, tuple[tuple[int, ...], ...]]:
    """Commit the next chunk into sink or fast, then let the frames the next plan drops leave fast (5.4-5.5).

    Returns the new table and the leaving frames as candidate chunks, oldest first; the caller decides on
    each with `admit`.
    """
    chunk = chunk_frames(layout, table)
    sink, fast = table.sink, table.fast
    if len(sink) < layout.sink:
        # the first N_s frames form the sink and never enter fast (5.6); N_s is a multiple of the chunk
        sink = sink + chunk
    else:
        fast = fast + chunk
    leaving: tuple[int, ...] = ()
    if layout.fast is not None:
        # fast keeps N_l - c committed frames: the next chunk fills the rest of N_l
        keep = layout.fast - layout.chunk
        cut = max(len(fast) - keep, 0)
        leaving, fast = fast[:cut], fast[cut:]
    candidates = tuple(leaving[i:i + layout.chunk] for i in range(0, len(leaving), layout.chunk))
    new_table = MemoryTable(sink=sink, slow=table.slow, fast=fast, next_frame=chunk[-1] + 1)
    return new_table, candidates


def admit(layout: MemoryLayout, table: MemoryTable, candidate: tuple[int, ...],
          decision: bool) -> MemoryTable:
    """Admit a leaving candidate chunk into slow memory, or drop it (5.5); slow evicts oldest first."""
    if not decision or not layout.admits or not candidate:
        return table
    # the paper copies only the candidate chunk's first frame; `all` copies the whole chunk
    entering = candidate[:1] if layout.policy.frames == "first" else tuple(candidate)
    slow = (table.slow + entering)[-layout.slow:]
    return MemoryTable(sink=table.sink, slow=slow, fast=table.fast, next_frame=table.next_frame)


def simulate(
    layout: MemoryLayout, num_chunks: int, decide: Callable[[int, tuple[int, ...]], bool],
) -> list[ChunkPlan]:
    """Plan, commit and admit `num_chunks` chunks from an empty memory; returns the plans in order.

    `decide(candidate_index, candidate_frames)` says whether the candidate enters slow memory. It is
    called only when the layout can admit (a slow part and a policy other than `none`); candidate
    indices count every candidate, from 0.
    """
    table = MemoryTable()
    plans: list[ChunkPlan] = []
    candidate_index = 0
    for _ in range(num_chunks):
        plans.append(plan_chunk(layout, table))
        table, candidates = commit_chunk(layout, table)
        for candidate in candidates:
            if layout.admits:
                table = admit(layout, table, candidate, bool(decide(candidate_index, candidate)))
            candidate_index += 1
    return plans
