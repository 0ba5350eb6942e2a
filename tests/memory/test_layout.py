"""Layout names: the parser, its rejections and canonical names (DESIGN.md section 5, "Layouts by name")."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.config import ConfigError, MemoryConfig
from context_forcing.memory.layout import AdmissionPolicy, MemoryLayout, parse_layout

DEFAULT = "sink3-slow12-fast6:similarity0.95:bounded"


def test_default_layout_parses_to_the_paper_memory():
    layout = parse_layout(DEFAULT, chunk=3)
    assert layout == MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity", tau=0.95), "bounded")
    assert layout.budget == 21
    assert layout.name == DEFAULT
    assert MemoryConfig().layout == DEFAULT


@pytest.mark.parametrize("spec, expected", [
    ("full", MemoryLayout(0, 0, None, 3, AdmissionPolicy("none"), "bounded")),
    ("full:absolute", MemoryLayout(0, 0, None, 3, AdmissionPolicy("none"), "absolute")),
    ("window-6", MemoryLayout(0, 0, 6, 3, AdmissionPolicy("none"), "bounded")),
    ("sink3-window6:absolute", MemoryLayout(3, 0, 6, 3, AdmissionPolicy("none"), "absolute")),
    ("sink3-slow12-fast6", MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity"), "bounded")),
    ("sink3-slow12-fast6:similarity", MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity"), "bounded")),
    ("sink3-slow12-fast6:absolute:similarity0.9",
     MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity", tau=0.9), "absolute")),
    ("sink0-slow4-fast3:uniform4", MemoryLayout(0, 4, 3, 3, AdmissionPolicy("uniform", every=4), "bounded")),
    ("sink3-slow12-fast6:none", MemoryLayout(3, 12, 6, 3, AdmissionPolicy("none"), "bounded")),
    ("sink3-slow12-fast6:admit-all:ref-last-admitted:similarity1",
     MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity", 1.0, reference="last_admitted", frames="all"))),
    ("sink3-slow12-fast6:ref-previous:admit-first", MemoryLayout(3, 12, 6, 3, AdmissionPolicy("similarity"))),
])
def test_parse_known_specs(spec, expected):
    assert parse_layout(spec, chunk=3) == expected


@pytest.mark.parametrize("spec, chunk, name", [
    ("full", 3, "full:bounded"),
    ("window-6", 3, "window-6:bounded"),
    ("sink0-window6", 3, "window-6:bounded"),
    ("sink3-window6:absolute", 3, "sink3-window6:absolute"),
    ("sink3-slow12-fast6", 3, DEFAULT),
    ("sink3-slow12-fast6:similarity", 3, DEFAULT),
    ("sink3-slow12-fast6:bounded:ref-previous:admit-first:similarity0.95", 3, DEFAULT),
    ("sink3-slow12-fast6:uniform04", 3, "sink3-slow12-fast6:uniform4:bounded"),
    ("sink2-slow5-fast4:admit-all:ref-last-admitted:similarity.5", 2,
     "sink2-slow5-fast4:similarity0.5:ref-last-admitted:admit-all:bounded"),
    ("sink1-slow1-fast1:none:absolute", 1, "sink1-slow1-fast1:none:absolute"),
])
def test_canonical_names(spec, chunk, name):
    layout = parse_layout(spec, chunk)
    assert layout.name == name
    assert parse_layout(name, chunk) == layout


@st.composite
def layouts(draw):
    """Any valid layout, built from fields rather than from a name."""
    chunk = draw(st.integers(1, 4))
    form = draw(st.sampled_from(["full", "window", "slow"]))
    positions = draw(st.sampled_from(["bounded", "absolute"]))
    if form == "full":
        return MemoryLayout(0, 0, None, chunk, AdmissionPolicy("none"), positions)
    sink = chunk * draw(st.integers(0, 4))
    fast = chunk * draw(st.integers(1, 5))
    if form == "window":
        return MemoryLayout(sink, 0, fast, chunk, AdmissionPolicy("none"), positions)
    policy = AdmissionPolicy(
        kind=draw(st.sampled_from(["similarity", "uniform", "none"])),
        tau=draw(st.floats(0.0, 1.0, exclude_min=True)),
        every=draw(st.integers(1, 50)),
        reference=draw(st.sampled_from(["previous", "last_admitted"])),
        frames=draw(st.sampled_from(["first", "all"])),
    )
    if policy.kind != "similarity":  # tau is not part of the name of other kinds
        policy = AdmissionPolicy(policy.kind, every=policy.every, reference=policy.reference,
                                 frames=policy.frames)
    if policy.kind != "uniform":
        policy = AdmissionPolicy(policy.kind, policy.tau, reference=policy.reference, frames=policy.frames)
    return MemoryLayout(sink, draw(st.integers(1, 40)), fast, chunk, policy, positions)


@settings(max_examples=200, deadline=None)
@given(layouts(), st.randoms(use_true_random=False))
def test_name_round_trips(layout, rng):
    assert parse_layout(layout.name, layout.chunk) == layout
    # options may come in any order
    base, *tokens = layout.name.split(":")
    rng.shuffle(tokens)
    assert parse_layout(":".join([base, *tokens]), layout.chunk) == layout


@pytest.mark.parametrize("spec, chunk, reason", [
    ("", 3, "unknown form"),
    ("window6", 3, "unknown form"),
    ("sink3-fast6", 3, "unknown form"),
    ("Full", 3, "unknown form"),
    ("sink3-slow12-fast6 ", 3, "unknown form"),
    ("sink-3-window6", 3, "unknown form"),
    ("window--6", 3, "unknown form"),
    ("sink3-slow12-fast6:fast", 3, "unknown option 'fast'"),
    ("sink3-slow12-fast6:similarity-0.5", 3, "unknown option"),
    ("sink3-slow12-fast6:similarityabc", 3, "unknown option"),
    ("sink3-slow12-fast6:similaritynan", 3, "unknown option"),
    ("sink3-slow12-fast6:uniform1.5", 3, "unknown option"),
    ("sink3-slow12-fast6:", 3, "unknown option ''"),
    ("window-7", 3, "multiple of the chunk 3"),
    ("window-0", 3, "at least one chunk ("),
    ("window-2", 3, "at least one chunk ("),
    ("sink2-window6", 3, "sink must be a multiple of the chunk 3"),
    ("sink3-window4", 3, "multiple of the chunk 3"),
    ("sink3-slow12-fast5", 3, "multiple of the chunk 3"),
    ("sink3-slow12-fast0", 3, "at least one chunk ("),
    ("sink4-slow12-fast6", 3, "sink must be a multiple of the chunk 3"),
    ("sink3-slow0-fast6", 3, "slow part must hold at least 1 frame"),
    ("sink3-slow0-fast6:none", 3, "slow part must hold at least 1 frame"),
    ("window-6:similarity0.9", 3, "needs a layout with a slow part"),
    ("sink3-window6:uniform4", 3, "needs a layout with a slow part"),
    ("full:none", 3, "needs a layout with a slow part"),
    ("window-6:ref-last-admitted", 3, "needs a layout with a slow part"),
    ("sink3-window6:admit-all", 3, "needs a layout with a slow part"),
    ("sink3-slow12-fast6:similarity0", 3, "tau must be in (0, 1]"),
    ("sink3-slow12-fast6:similarity1.01", 3, "tau must be in (0, 1]"),
    ("sink3-slow12-fast6:similarity2e0", 3, "tau must be in (0, 1]"),
    ("sink3-slow12-fast6:uniform0", 3, "every must be >= 1"),
    ("sink3-slow12-fast6:similarity0.9:uniform2", 3, "repeats the policy option"),
    ("sink3-slow12-fast6:none:none", 3, "repeats the policy option"),
    ("sink3-slow12-fast6:bounded:absolute", 3, "repeats the positions option"),
    ("full:bounded:bounded", 3, "repeats the positions option"),
    ("sink3-slow12-fast6:ref-previous:ref-last-admitted", 3, "repeats the ref option"),
    ("sink3-slow12-fast6:admit-all:admit-all", 3, "repeats the admit option"),
    ("window-4", 0, "chunk must be >= 1"),
])
def test_rejections_name_the_spec_and_the_rule(spec, chunk, reason):
    with pytest.raises(ConfigError) as error:
        parse_layout(spec, chunk)
    message = str(error.value)
    assert "\n" not in message
    assert repr(spec) in message
    assert reason in message
    assert "allowed: full | window-N | sinkS-windowW | sinkS-slowC-fastL" in message


def test_rejects_non_string_spec():
    with pytest.raises(ConfigError, match="must be a string"):
        parse_layout(None, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, reason", [
    (dict(kind="random"), "policy.kind"),
    (dict(kind="similarity", tau=0.0), "policy.tau"),
    (dict(kind="similarity", tau=float("nan")), "policy.tau"),
    (dict(kind="uniform", every=0), "policy.every"),
    (dict(kind="similarity", reference="next"), "policy.reference"),
    (dict(kind="similarity", frames="last"), "policy.frames"),
])
def test_policy_validation(kwargs, reason):
    with pytest.raises(ConfigError, match=reason):
        AdmissionPolicy(**kwargs)


@pytest.mark.parametrize("args, reason", [
    ((3, 0, None, 3), "unbounded fast part"),
    ((0, 4, None, 3), "unbounded fast part"),
    ((0, 0, 6, 3, AdmissionPolicy("similarity")), "needs a slow part"),
    ((0, 0, 6, 3, AdmissionPolicy("none", frames="all")), "needs a slow part"),
    ((0, -1, 6, 3), "slow must be >= 0"),
    ((0, 0, 6, 3, AdmissionPolicy("none"), "relative"), "positions must be one of"),
])
def test_layout_validation(args, reason):
    with pytest.raises(ConfigError, match=reason):
        MemoryLayout(*args)


def test_budget_and_flags():
    assert parse_layout("full", 3).budget is None
    assert not parse_layout("full:bounded", 3).bounded  # no budget: absolute anyway
    assert parse_layout("window-6", 3).budget == 6
    assert parse_layout("sink3-window6", 3).budget == 9
    assert not parse_layout("sink3-slow12-fast6:absolute", 3).bounded
    assert parse_layout("sink3-slow12-fast6:uniform2", 3).admits
    assert not parse_layout("sink3-slow12-fast6:none", 3).admits
    assert not parse_layout("sink3-window6", 3).admits
