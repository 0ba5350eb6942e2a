"""Every message from the page is validated: bad ones raise MessageError naming the problem,
never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.data.panworld import PanWorldConfig
from context_forcing.serve.messages import (
    MessageError,
    Move,
    Pause,
    PromptSwitchRequest,
    Resume,
    Start,
    parse_message,
)

WORLD = PanWorldConfig()
PROMPT = {"palette": 1, "shape": 2, "colour": 3, "density": 0}


def _parse(obj):
    return parse_message(json.dumps(obj) if not isinstance(obj, str) else obj, WORLD)


def test_good_messages():
    assert _parse({"type": "start", "seed": 1000000}) == Start(1000000, 0.0)
    assert _parse({"type": "start", "seed": 3, "prefill_seconds": 3}) == Start(3, 3.0)
    assert _parse({"type": "move", "move": -1}) == Move(-1)
    assert _parse({"type": "prompt", "prompt": PROMPT}) == PromptSwitchRequest(PROMPT, "keep")
    assert _parse({"type": "prompt", "prompt": PROMPT, "policy": "flush"}).policy == "flush"
    assert _parse({"type": "pause"}) == Pause() and _parse({"type": "resume"}) == Resume()


BAD = [
    ("{not json", "message is not JSON"),
    ([1, 2], "message must be a JSON object, got list"),
    ({"type": "jump"}, "type must be one of start, move, prompt, pause, resume, got 'jump'"),
    ({"seed": 1}, "type must be one of"),
    ({"type": "move", "move": 2}, "move: must be one of -1, 0, 1, got 2"),
    ({"type": "move", "move": True}, "move: must be one of -1, 0, 1, got True"),
    ({"type": "move", "move": 1.0}, "move: must be one of -1, 0, 1, got 1.0"),
    ({"type": "move", "move": "left"}, "move: must be one of -1, 0, 1, got 'left'"),
    ({"type": "move"}, "move: missing field(s) move"),
    ({"type": "move", "move": 1, "speed": 9}, "move: unknown field(s) speed; allowed: move"),
    ({"type": "pause", "now": True}, "pause: unknown field(s) now; allowed: none"),
    ({"type": "start", "seed": -1}, "start: seed must be an integer in [0, 2147483647], got -1"),
    ({"type": "start", "seed": "7"}, "start: seed must be an integer"),
    (
        {"type": "start", "seed": 7, "prefill_seconds": 99},
        "start: prefill_seconds must be a number in [0, 16]",
    ),
    (
        '{"type": "start", "seed": 7, "prefill_seconds": NaN}',
        "start: prefill_seconds must be a number in [0, 16], got nan",
    ),
    (
        {"type": "prompt", "prompt": "a red cat"},
        "prompt: must be an object with palette, shape, colour, density",
    ),
    (
        {"type": "prompt", "prompt": {**PROMPT, "shape": 4}},
        "prompt: shape must be an integer in [0, 3], got 4",
    ),
    ({"type": "prompt", "prompt": {"palette": 1}}, "prompt: shape must be an integer in [0, 3], got None"),
    ({"type": "prompt", "prompt": {**PROMPT, "mood": 1}}, "prompt: unknown attribute(s) 'mood'"),
    (
        {"type": "prompt", "prompt": PROMPT, "policy": "reset"},
        "prompt: policy must be one of keep, recache, flush",
    ),
    ({"type": "prompt", "prompt": {**PROMPT, "x" * 5000: 1}}, "message of 50"),  # oversized
    ("x" * 100_000, "message of 100000 characters; at most 1024"),
]


@pytest.mark.parametrize("message,expected", BAD)
def test_bad_messages_name_the_problem(message, expected):
    with pytest.raises(MessageError) as error:
        _parse(message)
    assert expected in str(error.value)
    assert len(str(error.value)) < 300  # a long bad value is never echoed whole


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_any_json_gives_a_command_or_a_message_error(value):
    for candidate in (
        value,
        {"type": "prompt", "prompt": value},
        {"type": "start", "seed": value},
        {"type": "move", "move": value},
    ):
        try:
            parse_message(json.dumps(candidate), WORLD)
        except MessageError:
            pass
