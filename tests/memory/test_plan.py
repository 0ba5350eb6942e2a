"""Memory planning: golden plans from DESIGN.md section 5 and invariants over random layouts
and admissions."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.memory.layout import AdmissionPolicy, MemoryLayout, parse_layout
from context_forcing.memory.plan import (
    PARTS,
    ChunkPlan,
    MemoryTable,
    admit,
    commit_chunk,
    plan_chunk,
    positions_for,
    simulate,
)
from context_forcing.memory.policy import make_decider

DEFAULT = "sink3-slow12-fast6:similarity0.95:bounded"


def _group(frames, positions) -> str:
    if not frames:
        return "-"
    return ",".join(map(str, frames)) + "@" + ",".join(map(str, positions))


def render(plan: ChunkPlan) -> str:
    """`sink | slow | fast || chunk`, each `frames@positions`; fails if parts are out of attention order."""
    assert list(plan.parts) == sorted(plan.parts, key=PARTS.index), plan.parts
    groups = []
    for part in PARTS:
        picked = [(f, p) for f, p, q in zip(plan.frames, plan.positions, plan.parts) if q == part]
        groups.append(_group([f for f, _ in picked], [p for _, p in picked]))
    return " | ".join(groups) + " || " + _group(plan.chunk_frames, plan.chunk_positions)


def renders(spec: str, chunk: int, num_chunks: int, decide) -> list[str]:
    return [render(plan) for plan in simulate(parse_layout(spec, chunk), num_chunks, decide)]


# ---------------------------------------------------------------------------------------------------------
# golden plans: written by hand from DESIGN.md section 5, not computed

SINK = "0,1,2@0,1,2"

GOLDEN_ALL_ADMITTED = [
    "- | - | - || 0,1,2@0,1,2",
    f"{SINK} | - | - || 3,4,5@3,4,5",
    f"{SINK} | - | 3,4,5@3,4,5 || 6,7,8@6,7,8",
    f"{SINK} | 3@5 | 6,7,8@6,7,8 || 9,10,11@9,10,11",
    f"{SINK} | 3,6@7,8 | 9,10,11@9,10,11 || 12,13,14@12,13,14",
    f"{SINK} | 3,6,9@9,10,11 | 12,13,14@12,13,14 || 15,16,17@15,16,17",
    f"{SINK} | 3,6,9,12@11,12,13,14 | 15,16,17@15,16,17 || 18,19,20@18,19,20",
    f"{SINK} | 3,6,9,12,15@10,11,12,13,14 | 18,19,20@15,16,17 || 21,22,23@18,19,20",
    f"{SINK} | 3,6,9,12,15,18@9,10,11,12,13,14 | 21,22,23@15,16,17 || 24,25,26@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21@8,9,10,11,12,13,14 | 24,25,26@15,16,17 || 27,28,29@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21,24@7,8,9,10,11,12,13,14 | 27,28,29@15,16,17 || 30,31,32@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21,24,27@6,7,8,9,10,11,12,13,14 | 30,31,32@15,16,17 || 33,34,35@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21,24,27,30@5,6,7,8,9,10,11,12,13,14 | 33,34,35@15,16,17 || 36,37,38@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21,24,27,30,33@4,5,6,7,8,9,10,11,12,13,14 | 36,37,38@15,16,17"
    " || 39,40,41@18,19,20",
    f"{SINK} | 3,6,9,12,15,18,21,24,27,30,33,36@3,4,5,6,7,8,9,10,11,12,13,14 | 39,40,41@15,16,17"
    " || 42,43,44@18,19,20",
    f"{SINK} | 6,9,12,15,18,21,24,27,30,33,36,39@3,4,5,6,7,8,9,10,11,12,13,14 | 42,43,44@15,16,17"
    " || 45,46,47@18,19,20",
]

GOLDEN_NONE_ADMITTED = [
    "- | - | - || 0,1,2@0,1,2",
    f"{SINK} | - | - || 3,4,5@3,4,5",
    f"{SINK} | - | 3,4,5@3,4,5 || 6,7,8@6,7,8",
    f"{SINK} | - | 6,7,8@6,7,8 || 9,10,11@9,10,11",
    f"{SINK} | - | 9,10,11@9,10,11 || 12,13,14@12,13,14",
    f"{SINK} | - | 12,13,14@12,13,14 || 15,16,17@15,16,17",
    f"{SINK} | - | 15,16,17@15,16,17 || 18,19,20@18,19,20",
    f"{SINK} | - | 18,19,20@15,16,17 || 21,22,23@18,19,20",
    f"{SINK} | - | 21,22,23@15,16,17 || 24,25,26@18,19,20",
    f"{SINK} | - | 24,25,26@15,16,17 || 27,28,29@18,19,20",
    f"{SINK} | - | 27,28,29@15,16,17 || 30,31,32@18,19,20",
    f"{SINK} | - | 30,31,32@15,16,17 || 33,34,35@18,19,20",
    f"{SINK} | - | 33,34,35@15,16,17 || 36,37,38@18,19,20",
    f"{SINK} | - | 36,37,38@15,16,17 || 39,40,41@18,19,20",
    f"{SINK} | - | 39,40,41@15,16,17 || 42,43,44@18,19,20",
]

# candidates are chunks 1, 2, 3, ... (frames 3-5, 6-8, ...); every 2nd admitted: chunks 1, 3, 5, ...
GOLDEN_EVERY_SECOND = [
    "- | - | - || 0,1,2@0,1,2",
    f"{SINK} | - | - || 3,4,5@3,4,5",
    f"{SINK} | - | 3,4,5@3,4,5 || 6,7,8@6,7,8",
    f"{SINK} | 3@5 | 6,7,8@6,7,8 || 9,10,11@9,10,11",
    f"{SINK} | 3@8 | 9,10,11@9,10,11 || 12,13,14@12,13,14",
    f"{SINK} | 3,9@10,11 | 12,13,14@12,13,14 || 15,16,17@15,16,17",
    f"{SINK} | 3,9@13,14 | 15,16,17@15,16,17 || 18,19,20@18,19,20",
    f"{SINK} | 3,9,15@12,13,14 | 18,19,20@15,16,17 || 21,22,23@18,19,20",
    f"{SINK} | 3,9,15@12,13,14 | 21,22,23@15,16,17 || 24,25,26@18,19,20",
    f"{SINK} | 3,9,15,21@11,12,13,14 | 24,25,26@15,16,17 || 27,28,29@18,19,20",
    f"{SINK} | 3,9,15,21@11,12,13,14 | 27,28,29@15,16,17 || 30,31,32@18,19,20",
    f"{SINK} | 3,9,15,21,27@10,11,12,13,14 | 30,31,32@15,16,17 || 33,34,35@18,19,20",
    f"{SINK} | 3,9,15,21,27@10,11,12,13,14 | 33,34,35@15,16,17 || 36,37,38@18,19,20",
    f"{SINK} | 3,9,15,21,27,33@9,10,11,12,13,14 | 36,37,38@15,16,17 || 39,40,41@18,19,20",
    f"{SINK} | 3,9,15,21,27,33@9,10,11,12,13,14 | 39,40,41@15,16,17 || 42,43,44@18,19,20",
]


def test_golden_default_every_candidate_admitted():
    assert renders(DEFAULT, 3, len(GOLDEN_ALL_ADMITTED), lambda i, c: True) == GOLDEN_ALL_ADMITTED


def test_golden_default_none_admitted():
    assert renders(DEFAULT, 3, len(GOLDEN_NONE_ADMITTED), lambda i, c: False) == GOLDEN_NONE_ADMITTED
    # policy `none` is the same memory with nothing ever admitted
    plans = renders("sink3-slow12-fast6:none", 3, len(GOLDEN_NONE_ADMITTED), lambda i, c: True)
    assert plans == GOLDEN_NONE_ADMITTED


def test_golden_default_every_second_candidate():
    assert renders(DEFAULT, 3, len(GOLDEN_EVERY_SECOND), lambda i, c: i % 2 == 0) == GOLDEN_EVERY_SECOND
    # the uniform policy, driven through `policy.decide`, gives the same plans
    layout = parse_layout("sink3-slow12-fast6:uniform2", 3)
    decider, decisions = make_decider(layout.policy, lambda frames: torch.ones(4))
    assert [render(p) for p in simulate(layout, len(GOLDEN_EVERY_SECOND), decider)] == GOLDEN_EVERY_SECOND
    assert decisions[:6] == [True, False, True, False, True, False]


def test_design_trace_literally():
    """DESIGN.md section 5.2: the trace of the default layout with every candidate admitted."""
    plans = simulate(parse_layout(DEFAULT, 3), 15, lambda i, c: True)
    assert plans[0].frames == () and plans[0].chunk_frames == (0, 1, 2)
    assert plans[1].frames == (0, 1, 2) and plans[1].parts == ("sink",) * 3
    assert plans[2].frames == (0, 1, 2, 3, 4, 5) and plans[2].parts == ("sink",) * 3 + ("fast",) * 3
    p3 = plans[3]
    assert (p3.chunk_frames, p3.chunk_positions) == ((9, 10, 11), (9, 10, 11))
    assert p3.frames == (0, 1, 2, 3, 6, 7, 8)
    assert p3.parts == ("sink",) * 3 + ("slow",) + ("fast",) * 3
    assert p3.positions == (0, 1, 2, 5, 6, 7, 8)
    p14 = plans[14]
    assert p14.chunk_frames == (42, 43, 44) and p14.chunk_positions == (18, 19, 20)
    assert p14.part("sink") == (0, 1, 2)
    assert p14.part("slow") == tuple(range(3, 37, 3))
    assert p14.part("fast") == (39, 40, 41)
    assert p14.slots == 21 and all(p.slots < 21 for p in plans[:14])


def test_golden_default_absolute_positions():
    plans = renders("sink3-slow12-fast6:absolute", 3, 16, lambda i, c: True)
    assert plans[3] == f"{SINK} | 3@3 | 6,7,8@6,7,8 || 9,10,11@9,10,11"
    assert plans[7] == f"{SINK} | 3,6,9,12,15@3,6,9,12,15 | 18,19,20@18,19,20 || 21,22,23@21,22,23"
    assert plans[14] == (f"{SINK} | 3,6,9,12,15,18,21,24,27,30,33,36@3,6,9,12,15,18,21,24,27,30,33,36"
                         " | 39,40,41@39,40,41 || 42,43,44@42,43,44")
    assert plans[15] == (f"{SINK} | 6,9,12,15,18,21,24,27,30,33,36,39@6,9,12,15,18,21,24,27,30,33,36,39"
                         " | 42,43,44@42,43,44 || 45,46,47@45,46,47")


def test_golden_admit_all_frames():
    plans = renders("sink3-slow12-fast6:admit-all", 3, 8, lambda i, c: True)
    assert plans[3:] == [
        f"{SINK} | 3,4,5@3,4,5 | 6,7,8@6,7,8 || 9,10,11@9,10,11",
        f"{SINK} | 3,4,5,6,7,8@3,4,5,6,7,8 | 9,10,11@9,10,11 || 12,13,14@12,13,14",
        f"{SINK} | 3,4,5,6,7,8,9,10,11@3,4,5,6,7,8,9,10,11 | 12,13,14@12,13,14 || 15,16,17@15,16,17",
        f"{SINK} | 3,4,5,6,7,8,9,10,11,12,13,14@3,4,5,6,7,8,9,10,11,12,13,14 | 15,16,17@15,16,17"
        " || 18,19,20@18,19,20",
        f"{SINK} | 6,7,8,9,10,11,12,13,14,15,16,17@3,4,5,6,7,8,9,10,11,12,13,14 | 18,19,20@15,16,17"
        " || 21,22,23@18,19,20",
    ]


def test_golden_window6():
    assert renders("window-6", 3, 5, lambda i, c: True) == [
        "- | - | - || 0,1,2@0,1,2",
        "- | - | 0,1,2@0,1,2 || 3,4,5@3,4,5",
        "- | - | 3,4,5@0,1,2 || 6,7,8@3,4,5",
        "- | - | 6,7,8@0,1,2 || 9,10,11@3,4,5",
        "- | - | 9,10,11@0,1,2 || 12,13,14@3,4,5",
    ]
    assert renders("window-6:absolute", 3, 4, lambda i, c: True)[2:] == [
        "- | - | 3,4,5@3,4,5 || 6,7,8@6,7,8",
        "- | - | 6,7,8@6,7,8 || 9,10,11@9,10,11",
    ]


def test_golden_window_of_one_chunk_attends_to_nothing_else():
    assert renders("window-3", 3, 3, lambda i, c: True) == ["- | - | - || 0,1,2@0,1,2"] + [
        f"- | - | - || {3 * i},{3 * i + 1},{3 * i + 2}@0,1,2" for i in (1, 2)]


def test_golden_sink3_window6():
    assert renders("sink3-window6", 3, 5, lambda i, c: True) == [
        "- | - | - || 0,1,2@0,1,2",
        f"{SINK} | - | - || 3,4,5@3,4,5",
        f"{SINK} | - | 3,4,5@3,4,5 || 6,7,8@6,7,8",
        f"{SINK} | - | 6,7,8@3,4,5 || 9,10,11@6,7,8",
        f"{SINK} | - | 9,10,11@3,4,5 || 12,13,14@6,7,8",
    ]


def test_golden_full():
    assert renders("full", 3, 4, lambda i, c: True) == [
        "- | - | - || 0,1,2@0,1,2",
        "- | - | 0,1,2@0,1,2 || 3,4,5@3,4,5",
        "- | - | 0,1,2,3,4,5@0,1,2,3,4,5 || 6,7,8@6,7,8",
        "- | - | 0,1,2,3,4,5,6,7,8@0,1,2,3,4,5,6,7,8 || 9,10,11@9,10,11",
    ]


def test_golden_sink_of_two_chunks_and_slow_eviction():
    assert renders("sink4-slow2-fast4", 2, 7, lambda i, c: True) == [
        "- | - | - || 0,1@0,1",
        "0,1@0,1 | - | - || 2,3@2,3",
        "0,1,2,3@0,1,2,3 | - | - || 4,5@4,5",
        "0,1,2,3@0,1,2,3 | - | 4,5@4,5 || 6,7@6,7",
        "0,1,2,3@0,1,2,3 | 4@5 | 6,7@6,7 || 8,9@8,9",
        "0,1,2,3@0,1,2,3 | 4,6@4,5 | 8,9@6,7 || 10,11@8,9",
        "0,1,2,3@0,1,2,3 | 6,8@4,5 | 10,11@6,7 || 12,13@8,9",
    ]


# ---------------------------------------------------------------------------------------------------------
# the steps one by one


def test_commit_leaves_and_admit():
    layout = parse_layout(DEFAULT, 3)
    table = MemoryTable(sink=(0, 1, 2), fast=(3, 4, 5), next_frame=6)
    table, candidates = commit_chunk(layout, table)
    assert table == MemoryTable(sink=(0, 1, 2), fast=(6, 7, 8), next_frame=9)
    assert candidates == ((3, 4, 5),)
    assert admit(layout, table, (3, 4, 5), False) == table
    assert admit(layout, table, (3, 4, 5), True) == MemoryTable((0, 1, 2), (3,), (6, 7, 8), 9)
    full_slow = MemoryTable((0, 1, 2), tuple(range(3, 39, 3)), (39, 40, 41), 42)
    assert admit(layout, full_slow, (42, 43, 44), True).slow == tuple(range(6, 39, 3)) + (42,)


def test_commit_fills_sink_first_and_groups_several_leaving_chunks():
    layout = MemoryLayout(3, 2, 3, 3, AdmissionPolicy("similarity"))
    table, candidates = commit_chunk(layout, MemoryTable())
    assert table == MemoryTable(sink=(0, 1, 2), next_frame=3) and candidates == ()
    # a table holding more than the layout keeps (e.g. built by hand) sheds whole chunks, oldest first
    table, candidates = commit_chunk(layout, MemoryTable((0, 1, 2), (), (3, 4, 5, 6, 7, 8), 9))
    assert table.fast == () and candidates == ((3, 4, 5), (6, 7, 8), (9, 10, 11))


def test_admit_ignores_layouts_without_slow_memory():
    table = MemoryTable((0, 1, 2), (), (6, 7, 8), 9)
    for spec in ("sink3-window6", "sink3-slow12-fast6:none"):
        assert admit(parse_layout(spec, 3), table, (3, 4, 5), True) == table


def test_simulate_calls_decide_with_candidate_chunks_in_order():
    calls = []
    simulate(parse_layout(DEFAULT, 3), 6, lambda i, c: calls.append((i, c)) or True)
    assert calls == [(0, (3, 4, 5)), (1, (6, 7, 8)), (2, (9, 10, 11)), (3, (12, 13, 14))]
    calls.clear()
    simulate(parse_layout("sink3-window6", 3), 6, lambda i, c: calls.append((i, c)) or True)
    assert calls == []


def test_positions_for_matches_the_plan():
    layout = parse_layout(DEFAULT, 3)
    table = MemoryTable((0, 1, 2), (3, 6), (9, 10, 11), 12)
    assert positions_for(layout, table) == ((0, 1, 2, 7, 8, 9, 10, 11), (12, 13, 14))
    plan = plan_chunk(layout, table)
    assert (plan.positions, plan.chunk_positions) == positions_for(layout, table)


def test_chunk_plan_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        ChunkPlan((0, 1), ("sink",), (0, 1), (2,), (2,))
    with pytest.raises(ValueError, match="differ in length"):
        ChunkPlan((), (), (), (2, 3), (2,))


# ---------------------------------------------------------------------------------------------------------
# invariants over random layouts and admission patterns


@st.composite
def planning_layouts(draw):
    chunk = draw(st.integers(1, 4))
    positions = draw(st.sampled_from(["bounded", "absolute"]))
    if draw(st.integers(0, 9)) == 0:
        return MemoryLayout(0, 0, None, chunk, AdmissionPolicy("none"), positions)
    sink = chunk * draw(st.integers(0, 3))
    fast = chunk * draw(st.integers(1, 4))
    slow = draw(st.integers(0, 8))
    if slow == 0:
        return MemoryLayout(sink, 0, fast, chunk, AdmissionPolicy("none"), positions)
    policy = AdmissionPolicy(draw(st.sampled_from(["similarity", "similarity", "uniform", "none"])),
                             frames=draw(st.sampled_from(["first", "all"])))
    return MemoryLayout(sink, slow, fast, chunk, policy, positions)


def admission_pattern(seed: int, rate: float):
    rng = random.Random(seed)
    cache: dict[int, bool] = {}
    return lambda i, c: cache.setdefault(i, rng.random() < rate)


def expected_slow(layout, admitted, left_before):
    """Slow memory rebuilt independently: the newest N_c admitted frames among candidates already left."""
    entering = [f for c in admitted if c[-1] < left_before
                for f in (c if layout.policy.frames == "all" else c[:1])]
    return tuple(entering[max(0, len(entering) - layout.slow):])


def check_plan(layout, index, plan, admitted):
    c, n_s = layout.chunk, layout.sink
    start = index * c
    assert plan.chunk_frames == tuple(range(start, start + c))
    assert list(plan.parts) == sorted(plan.parts, key=PARTS.index)  # sink, slow, fast
    for part in PARTS:
        frames = plan.part(part)
        assert list(frames) == sorted(set(frames))  # each part strictly increasing in time
    assert len(set(plan.frames)) == len(plan.frames)
    assert all(f < start for f in plan.frames)  # hence disjoint from the chunk
    assert layout.budget is None or plan.slots <= layout.budget
    assert plan.part("sink") == tuple(range(min(n_s, start)))  # the first N_s frames, fixed
    keep = start if layout.fast is None else layout.fast - c
    assert plan.part("fast") == tuple(range(max(n_s, start - keep), start))  # newest committed non-sink
    slow = plan.part("slow")
    assert slow == expected_slow(layout, admitted, start - keep)
    assert set(slow) <= {f for cand in admitted for f in cand}  # only frames of admitted candidates
    every = plan.positions + plan.chunk_positions
    assert len(set(every)) == len(every)
    if layout.bounded:
        anchor = min(start + c - 1, layout.budget - 1)
        assert all(0 <= p <= layout.budget - 1 for p in every)
        assert plan.positions[:len(plan.part("sink"))] == tuple(range(len(plan.part("sink"))))
        counted = plan.positions[len(plan.part("sink")):] + plan.chunk_positions
        assert counted == tuple(range(anchor - len(counted) + 1, anchor + 1))  # contiguous down from anchor
        assert plan.chunk_positions == tuple(range(anchor - c + 1, anchor + 1))
    else:
        assert plan.positions == plan.frames and plan.chunk_positions == plan.chunk_frames
    if plan.frames == tuple(range(start)):
        # nothing has left fast yet: bounded positions are absolute indices
        assert plan.positions == plan.frames and plan.chunk_positions == plan.chunk_frames


@settings(max_examples=200, deadline=None)
@given(planning_layouts(), st.integers(1, 300), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]))
def test_plan_invariants(layout, num_chunks, seed, rate):
    if layout.fast is None:
        num_chunks = min(num_chunks, 40)  # `full` grows without bound; a few chunks suffice
    pattern = admission_pattern(seed, rate)
    candidates, admitted = [], []

    def decide(i, candidate):
        assert i == len(candidates)
        candidates.append(candidate)
        if pattern(i, candidate):
            admitted.append(candidate)
            return True
        return False

    plans = simulate(layout, num_chunks, decide)
    assert len(plans) == num_chunks
    c = layout.chunk
    # candidates are the non-sink chunks, in order, each offered once
    assert candidates == [tuple(range(layout.sink + k * c, layout.sink + (k + 1) * c))
                          for k in range(len(candidates))]
    assert layout.admits or not candidates
    for index, plan in enumerate(plans):
        check_plan(layout, index, plan, admitted)
    if rate == 1.0 and layout.admits:
        # every candidate admitted: once enough have left fast, each chunk attends to exactly the budget
        keep = layout.fast - c
        left = max(0, ((num_chunks - 1) * c - keep - layout.sink) // c)
        if left >= (layout.slow if layout.policy.frames == "first" else -(-layout.slow // c)):
            assert plans[-1].slots == layout.budget


@settings(max_examples=200, deadline=None)
@given(planning_layouts(), st.integers(1, 40), st.booleans())
def test_nothing_leaves_fast_means_all_earlier_frames_at_absolute_positions(layout, num_chunks, admit_all):
    if layout.fast is not None:
        # a video no longer than sink + fast: nothing ever leaves the fast part before the last plan
        num_chunks = min(num_chunks, (layout.sink + layout.fast) // layout.chunk)
    plans = simulate(layout, num_chunks, lambda i, c: admit_all)
    for index, plan in enumerate(plans):
        start = index * layout.chunk
        assert plan.frames == tuple(range(start))
        assert plan.parts == tuple("sink" if f < layout.sink else "fast" for f in range(start))
        assert plan.positions == plan.frames
        assert plan.chunk_positions == plan.chunk_frames
