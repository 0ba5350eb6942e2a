"""The page -> server protocol: every message is a small JSON object,
validated here before anything acts on it.

| type | fields | effect |
|---|---|---|
| start | seed (int, a PanWorld episode seed), prefill_seconds (number, optional) | start the session (once) |
| move | move (-1, 0 or 1) | the camera direction held from the next chunk on (0: stop) |
| prompt | prompt ({palette, shape, colour, density}), policy (keep / recache / flush, optional) | switch the prompt |
| pause / resume | - | stop / restart generating |

A bad message (not JSON, too long, unknown type or field, a value out of range) gets an `error` reply naming
the problem; the session goes on.
"""  # noqa: E501 (a Markdown table row cannot be wrapped; a docstring's noqa goes after its closing quotes)

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from context_forcing.data.panworld import PanWorldConfig
from context_forcing.rollout.live import PROMPT_ATTRIBUTES, attribute_sizes
from context_forcing.rollout.prompt_switch import POLICIES

MAX_MESSAGE_CHARS = 1024  # the largest valid message is ~150 characters
MAX_SEED = 2**31 - 1
MAX_PREFILL_SECONDS = 16.0


class MessageError(ValueError):
    """A message the server refuses; its text goes back to the page."""


@dataclass(frozen=True)
class Start:
    seed: int
    prefill_seconds: float


@dataclass(frozen=True)
class Move:
    move: int


@dataclass(frozen=True)
class PromptSwitchRequest:
    values: dict[str, int]
    policy: str


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


Command = Start | Move | PromptSwitchRequest | Pause | Resume
FIELDS = {
    "start": ({"seed"}, {"prefill_seconds"}),
    "move": ({"move"}, set()),
    "prompt": ({"prompt"}, {"policy"}),
    "pause": (set(), set()),
    "resume": (set(), set()),
}


def parse_message(text: str, world: PanWorldConfig) -> Command:
    """One WebSocket text message -> a command; MessageError naming what is wrong."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise MessageError(f"message of {len(text)} characters; at most {MAX_MESSAGE_CHARS}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MessageError(f"message is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise MessageError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in FIELDS:
        raise MessageError(f"type must be one of {', '.join(FIELDS)}, got {kind!r}")
    required, optional = FIELDS[kind]
    fields = set(data) - {"type"}
    unknown = sorted(fields - required - optional)
    if unknown:
        raise MessageError(
            f"{kind}: unknown field(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(required | optional)) or 'none'}"
        )
    missing = sorted(required - fields)
    if missing:
        raise MessageError(f"{kind}: missing field(s) {', '.join(missing)}")
    if kind == "start":
        return Start(_seed(data["seed"]), _prefill(data.get("prefill_seconds", 0.0)))
    if kind == "move":
        move = data["move"]
        if isinstance(move, bool) or move not in world.moves or not isinstance(move, int):
            raise MessageError(f"move: must be one of {', '.join(map(str, world.moves))}, got {move!r}")
        return Move(move)
    if kind == "prompt":
        return PromptSwitchRequest(_prompt(data["prompt"], world), _policy(data.get("policy", "keep")))
    return Pause() if kind == "pause" else Resume()


def _seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise MessageError(f"start: seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


def _prefill(seconds: object) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_PREFILL_SECONDS
    ):
        raise MessageError(
            f"start: prefill_seconds must be a number in [0, {MAX_PREFILL_SECONDS:g}], got {seconds!r}"
        )
    return float(seconds)


def _prompt(prompt: object, world: PanWorldConfig) -> dict[str, int]:
    sizes = attribute_sizes(world)
    if not isinstance(prompt, dict):
        raise MessageError(
            f"prompt: must be an object with {', '.join(PROMPT_ATTRIBUTES)}, got {type(prompt).__name__}"
        )
    unknown = sorted(set(prompt) - set(sizes))
    if unknown:
        shown = ", ".join(repr(u[:32]) for u in unknown[:4])
        raise MessageError(f"prompt: unknown attribute(s) {shown}; allowed: {', '.join(PROMPT_ATTRIBUTES)}")
    for name, size in sizes.items():
        value = prompt.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
            raise MessageError(f"prompt: {name} must be an integer in [0, {size - 1}], got {value!r}"[:200])
    return {name: prompt[name] for name in sizes}


def _policy(policy: object) -> str:
    if policy not in POLICIES:
        raise MessageError(f"prompt: policy must be one of {', '.join(POLICIES)}, got {policy!r}"[:200])
    return policy
