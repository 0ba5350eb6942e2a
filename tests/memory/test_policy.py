"""Admission policies on constructed summary vectors (DESIGN.md section 5, step 5)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.memory.layout import AdmissionPolicy
from context_forcing.memory.policy import AdmissionState, cosine, decide, make_decider


def at_angle(radians: float, dtype=torch.float32) -> torch.Tensor:
    """A 3-D summary at `radians` from (1, 0, 0) in the first plane, scaled so the norm plays no role."""
    return torch.tensor([2.0 * math.cos(radians), 2.0 * math.sin(radians), 0.0], dtype=dtype)


def run(policy: AdmissionPolicy, summaries) -> list[bool]:
    state, out = AdmissionState(), []
    for summary in summaries:
        admitted, state = decide(policy, state, summary)
        out.append(admitted)
    return out


def test_similarity_admits_the_first_candidate():
    admitted, state = decide(AdmissionPolicy("similarity"), AdmissionState(), torch.ones(5))
    assert admitted is True
    assert state.candidates_seen == 1
    torch.testing.assert_close(state.reference, torch.ones(5), rtol=0, atol=0)


@pytest.mark.parametrize("tau", [0.95, 0.5, 0.999])
def test_similarity_threshold(tau):
    """Admit iff cosine < tau: just below tau admits, just above does not (1e-6 apart, float32 inputs)."""
    policy = AdmissionPolicy("similarity", tau=tau)
    reference = at_angle(0.0)
    state = AdmissionState(reference=reference, candidates_seen=1)
    below = at_angle(math.acos(tau - 1e-6), torch.float64)
    above = at_angle(math.acos(tau + 1e-6), torch.float64)
    assert cosine(below, reference.double()) < tau < cosine(above, reference.double())
    assert decide(policy, state, below)[0] is True
    assert decide(policy, state, above)[0] is False
    assert decide(policy, state, reference)[0] is False  # identical content: cosine 1
    assert decide(AdmissionPolicy("similarity", tau=1.0), state, reference)[0] is False  # cos 1 is not < 1


def test_similarity_ignores_scale_and_computes_in_float64():
    reference = torch.tensor([1.0, 1e-4], dtype=torch.float32)
    state = AdmissionState(reference=reference, candidates_seen=1)
    # cosine of (1, 0) with (1, 1e-4) is 1 - 5e-9: below tau = 1 only when computed in float64
    assert decide(AdmissionPolicy("similarity", tau=1.0), state, torch.tensor([1e3, 0.0]))[0] is True
    assert decide(AdmissionPolicy("similarity", tau=0.95), state, torch.tensor([1e3, 0.0]))[0] is False


def test_reference_previous_versus_last_admitted():
    """Slow drift: each step is close to the previous one (cos 0.97), the third far from the first (0.88)."""
    step = math.acos(0.97)
    summaries = [at_angle(k * step) for k in range(5)]
    # previous: every candidate resembles its predecessor, so only the first enters
    assert run(AdmissionPolicy("similarity", reference="previous"), summaries) == [
        True, False, False, False, False]
    # last admitted: drift accumulates until it crosses tau (2 steps: cos 0.88 < 0.95)
    assert run(AdmissionPolicy("similarity", reference="last_admitted"), summaries) == [
        True, False, True, False, True]


def test_reference_updates():
    policy_prev = AdmissionPolicy("similarity", reference="previous")
    policy_last = AdmissionPolicy("similarity", reference="last_admitted")
    first, second = at_angle(0.0), at_angle(0.01)
    _, state = decide(policy_prev, AdmissionState(), first)
    admitted, state = decide(policy_prev, state, second)
    assert not admitted and torch.equal(state.reference, second)
    _, state = decide(policy_last, AdmissionState(), first)
    admitted, state = decide(policy_last, state, second)
    assert not admitted and torch.equal(state.reference, first)


def test_zero_summary_counts_as_new_content():
    state = AdmissionState(reference=torch.ones(3), candidates_seen=1)
    assert decide(AdmissionPolicy("similarity"), state, torch.zeros(3))[0] is True


def test_uniform_pattern():
    assert run(AdmissionPolicy("uniform", every=4), [torch.ones(2)] * 9) == [
        True, False, False, False, True, False, False, False, True]
    assert run(AdmissionPolicy("uniform", every=1), [torch.ones(2)] * 3) == [True, True, True]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_uniform_ignores_summaries(every, count, seed):
    generator = torch.Generator().manual_seed(seed)
    summaries = [torch.randn(4, generator=generator) for _ in range(count)]
    assert run(AdmissionPolicy("uniform", every=every), summaries) == [i % every == 0 for i in range(count)]


def test_none_never_admits_and_counts():
    state = AdmissionState()
    for k in range(5):
        admitted, state = decide(AdmissionPolicy("none"), state, at_angle(k))
        assert admitted is False
    assert state.candidates_seen == 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=30),
       st.sampled_from(["previous", "last_admitted"]), st.floats(0.05, 1.0))
def test_similarity_matches_a_direct_restatement(angles, reference, tau):
    """Each decision equals cos(summary, reference) < tau, with the reference chosen as the policy says."""
    summaries = [at_angle(a, torch.float64) for a in angles]
    decisions = run(AdmissionPolicy("similarity", tau=tau, reference=reference), summaries)
    ref_angle = None
    for angle, admitted in zip(angles, decisions):
        if ref_angle is None:
            assert admitted
        elif abs(math.cos(angle - ref_angle) - tau) > 1e-9:  # leave float ties at tau alone
            assert admitted == (math.cos(angle - ref_angle) < tau)
        if reference == "previous" or admitted:
            ref_angle = angle


def test_decide_rejects_bad_summaries():
    with pytest.raises(ValueError, match="1-D"):
        decide(AdmissionPolicy("similarity"), AdmissionState(), torch.ones(2, 3))
    state = AdmissionState(reference=torch.ones(3), candidates_seen=1)
    with pytest.raises(ValueError, match="equal shape"):
        decide(AdmissionPolicy("similarity"), state, torch.ones(4))


def test_make_decider_threads_state_and_records_decisions():
    step = math.acos(0.97)
    decider, decisions = make_decider(AdmissionPolicy("similarity", reference="last_admitted"),
                                      lambda frames: at_angle(frames[0] * step))
    assert [decider(i, (k, k + 1)) for i, k in enumerate(range(5))] == [True, False, True, False, True]
    assert decisions == [True, False, True, False, True]
