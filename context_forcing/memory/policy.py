"""Slow-memory admission policies as pure functions of summary vectors (DESIGN.md section 5, step 5).

A summary is a 1-D float tensor per candidate chunk: the memory passes the mean pre-RoPE key over tokens
(and the chosen layers); an oracle may pass flattened pixels. `decide` never looks at anything else, so
the same decisions can be recorded once and replayed by every memory implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from context_forcing.memory.layout import AdmissionPolicy


@dataclass(frozen=True)
class AdmissionState:
    """What a policy remembers between candidates of one sample."""

    reference: torch.Tensor | None = None  # summary the next candidate is compared with
    candidates_seen: int = 0


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two 1-D summaries, in float64 so decisions near tau do not depend on dtype."""
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"summaries must be 1-D of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    # dtype by keyword: a positional one leaves a string in CPython 3.11's type cache (BENCHMARKS.md, soak)
    a64, b64 = a.detach().to(dtype=torch.float64), b.detach().to(dtype=torch.float64)
    # a zero summary has no direction: treat it as orthogonal (cosine 0) rather than dividing by zero
    norms = torch.linalg.vector_norm(a64) * torch.linalg.vector_norm(b64)
    if norms == 0:
        return 0.0
    return float(torch.dot(a64, b64) / norms)


def decide(policy: AdmissionPolicy, state: AdmissionState,
           summary: torch.Tensor) -> tuple[bool, AdmissionState]:
    """Admit one candidate or not: `similarity` (the paper's cos < tau test), `uniform` or `none`."""
    if summary.dim() != 1:
        raise ValueError(f"summary must be a 1-D tensor, got shape {tuple(summary.shape)}")
    seen = state.candidates_seen + 1
    if policy.kind == "none":
        return False, AdmissionState(state.reference, seen)
    if policy.kind == "uniform":
        # the 1st, (k+1)-th, (2k+1)-th ... candidate
        return state.candidates_seen % policy.every == 0, AdmissionState(state.reference, seen)
    # similarity: a candidate unlike its reference is new content worth keeping; the first has no reference
    admitted = state.reference is None or cosine(summary, state.reference) < policy.tau
    # `previous` compares consecutive candidates (the paper's cos(k_t, k_{t-1})); `last_admitted` compares
    # with what slow memory last took, so slow drift accumulates until it triggers an admission
    if policy.reference == "previous" or admitted:
        reference = summary.detach()
    else:
        reference = state.reference
    return admitted, AdmissionState(reference, seen)


def make_decider(
    policy: AdmissionPolicy, summarize: Callable[[tuple[int, ...]], torch.Tensor],
) -> tuple[Callable[[int, tuple[int, ...]], bool], list[bool]]:
    """Wrap `decide` into the `plan.simulate` callback, with `summarize(candidate_frames)` giving summaries.

    Returns the callback and the list it appends each decision to (for admission rates).
    """
    state = AdmissionState()
    decisions: list[bool] = []

    def callback(candidate_index: int, candidate: tuple[int, ...]) -> bool:
        nonlocal state
        admitted, state = decide(policy, state, summarize(candidate))
        decisions.append(admitted)
        return admitted

    return callback, decisions
