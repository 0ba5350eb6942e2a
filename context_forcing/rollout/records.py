"""What a streaming session remembers of its chunks: O(1) in video length.

Counters over every chunk (count, largest attended context, largest position, the timings right after the
memory filled), the timings of the last WINDOW generated chunks and the latest record in full; reports read
them. A caller that wants every record takes them from `StreamingSession.stream` as they come.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from context_forcing.memory.plan import PARTS, ChunkPlan

WINDOW = 10  # chunks per timing median


@dataclass
class ChunkRecord:
    """What happened in one chunk (for reports and tests)."""

    index: int
    start: int  # first absolute latent frame of the chunk
    plans: list[ChunkPlan]
    wall_ms: float
    prefill: bool


def attended_frames(plans: list[ChunkPlan]) -> int:
    """Frames the chunk attends to, itself included (the padded maximum over the batch)."""
    return max(p.slots for p in plans)


def part_counts(plan: ChunkPlan) -> dict[str, int]:
    """Frames per memory part; fast includes the chunk being generated (glossary, DESIGN.md section 2)."""
    counts = {part: sum(1 for p in plan.parts if p == part) for part in PARTS}
    counts["fast"] += len(plan.chunk_frames)
    return counts


@dataclass
class ChunkHistory:
    """A session's chunk history: counters over all chunks, the latest record, the last WINDOW timings."""

    count: int = 0  # chunks recorded (generated and prefilled)
    generated: int = 0  # of which generated
    max_attended: int = 0  # frames attended by the widest chunk
    max_by_part: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    max_position: int = 0
    # wall ms of the first WINDOW generated chunks from the first that reached the widest context so far
    after_fill_ms: list[float] = field(default_factory=list)
    last_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # the last generated chunks
    last: ChunkRecord | None = None
    _fill_attended: int = 0

    def append(self, record: ChunkRecord) -> None:
        self.count += 1
        self.last = record
        attended = attended_frames(record.plans)
        self.max_attended = max(self.max_attended, attended)
        for plan in record.plans:
            for part, n in part_counts(plan).items():
                self.max_by_part[part] = max(self.max_by_part[part], n)
            self.max_position = max(self.max_position, *plan.positions, *plan.chunk_positions)
        if record.prefill:
            return
        self.generated += 1
        self.last_ms.append(record.wall_ms)
        if attended > self._fill_attended:  # a wider context than before: the memory fills further
            self._fill_attended, self.after_fill_ms = attended, [record.wall_ms]
        elif len(self.after_fill_ms) < WINDOW:
            self.after_fill_ms.append(record.wall_ms)
