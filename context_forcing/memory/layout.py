"""Memory layouts and their names (DESIGN.md section 5, "Layouts by name").

A `MemoryLayout` fixes the sizes of the three memory parts (sink / slow / fast, in latent frames), the
admission policy of the slow part and the position scheme. `parse_layout` turns the names every CLI flag
takes (`full`, `window-N`, `sinkS-windowW`, `sinkS-slowC-fastL[:options]`) into one, and
`MemoryLayout.name` turns it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from context_forcing.config import ConfigError, RunConfig

POLICY_KINDS = ("similarity", "uniform", "none")
REFERENCES = ("previous", "last_admitted")
ADMIT_FRAMES = ("first", "all")
POSITIONS = ("bounded", "absolute")
ADMIT_KV = ("clean", "first_pass")

GRAMMAR = ("allowed: full | window-N | sinkS-windowW | sinkS-slowC-fastL, sizes multiples of the chunk; "
           "slow layouts may add :similarity<tau> | :uniform<k> | :none, :ref-previous | :ref-last-admitted, "
           ":admit-first | :admit-all; any layout may add :bounded | :absolute; each option at most once")

_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"  # a plain decimal, so `repr(tau)` parses back
_BASE_FORMS = (
    ("full", re.compile(r"full")),
    ("window", re.compile(r"window-([0-9]+)")),
    ("sink_window", re.compile(r"sink([0-9]+)-window([0-9]+)")),
    ("slow", re.compile(r"sink([0-9]+)-slow([0-9]+)-fast([0-9]+)")),
)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class AdmissionPolicy:
    """Which leaving fast-memory chunks enter slow memory (DESIGN.md section 5, step 5)."""

    kind: str  # "similarity" | "uniform" | "none"
    tau: float = 0.95  # similarity: admit when cosine(candidate, reference) < tau (the paper's 0.95)
    every: int = 4  # uniform: admit the 1st, (k+1)-th, (2k+1)-th ... candidate
    reference: str = "previous"  # "previous" candidate (the paper's cos(k_t, k_{t-1})) | "last_admitted"
    frames: str = "first"  # frames copied per admission: "first" of the chunk (the paper's) | "all"

    def __post_init__(self) -> None:
        _check(self.kind in POLICY_KINDS, f"policy.kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        _check(isinstance(self.tau, (int, float)) and 0.0 < self.tau <= 1.0,
               f"policy.tau must be in (0, 1], got {self.tau!r}")
        _check(isinstance(self.every, int) and self.every >= 1,
               f"policy.every must be >= 1, got {self.every!r}")
        _check(self.reference in REFERENCES,
               f"policy.reference must be one of {REFERENCES}, got {self.reference!r}")
        _check(self.frames in ADMIT_FRAMES,
               f"policy.frames must be one of {ADMIT_FRAMES}, got {self.frames!r}")

    @property
    def tokens(self) -> tuple[str, ...]:
        """The `:`-option tokens naming this policy; defaults of reference and frames are left out."""
        kind = {"similarity": f"similarity{self.tau!r}", "uniform": f"uniform{self.every}", "none": "none"}
        tokens = [kind[self.kind]]
        if self.reference != "previous":
            tokens.append("ref-last-admitted")
        if self.frames != "first":
            tokens.append("admit-all")
        return tuple(tokens)


NO_ADMISSION = AdmissionPolicy("none")


@dataclass(frozen=True)
class MemoryLayout:
    """Sizes of sink / slow / fast in latent frames, admission policy and position scheme of one memory."""

    sink: int  # N_s: the first N_s frames, never evicted (a multiple of the chunk; 0 allowed)
    slow: int  # N_c: long-term frames admitted by `policy` (0: no slow part)
    fast: int | None  # N_l: newest frames INCLUDING the chunk being generated; None = unbounded (`full`)
    chunk: int  # c: latent frames generated together
    policy: AdmissionPolicy = NO_ADMISSION
    positions: str = "bounded"  # "bounded" (anchored at budget - 1) | "absolute" (the ablation)
    # K/V a frame entering slow memory keeps: the "clean" commit pass's or the "first_pass" of its chunk's
    # denoising (the official code's); config key memory.admit_kv, not part of the name
    admit_kv: str = "clean"

    def __post_init__(self) -> None:
        c = self.chunk
        _check(isinstance(c, int) and c >= 1, f"chunk must be >= 1, got {c!r}")
        _check(isinstance(self.sink, int) and self.sink >= 0 and self.sink % c == 0,
               f"sink must be a multiple of the chunk {c} (0 allowed), got {self.sink!r}")
        _check(isinstance(self.slow, int) and self.slow >= 0, f"slow must be >= 0, got {self.slow!r}")
        if self.fast is None:
            # `full` keeps everything in fast; a sink or slow part would have nothing to hold
            _check(self.sink == 0 and self.slow == 0,
                   "an unbounded fast part (full) takes no sink or slow part")
        else:
            _check(isinstance(self.fast, int) and self.fast >= c,
                   f"fast/window must hold at least one chunk ({c} frames, the current chunk), "
                   f"got {self.fast!r}")
            _check(self.fast % c == 0, f"fast/window must be a multiple of the chunk {c}, got {self.fast!r}")
        if self.slow == 0:
            _check(self.policy == NO_ADMISSION,
                   f"an admission policy or ref/admit option needs a slow part, got {self.policy.tokens}")
        _check(self.positions in POSITIONS, f"positions must be one of {POSITIONS}, got {self.positions!r}")
        _check(self.admit_kv in ADMIT_KV, f"memory.admit_kv must be one of {ADMIT_KV}, got {self.admit_kv!r}")

    @property
    def budget(self) -> int | None:
        """Most frames any chunk attends to, the chunk included: N_s + N_c + N_l (None for `full`)."""
        return None if self.fast is None else self.sink + self.slow + self.fast

    @property
    def bounded(self) -> bool:
        """Whether positions are anchored inside [0, budget - 1] (False for `absolute` and `full`)."""
        return self.positions == "bounded" and self.fast is not None

    @property
    def admits(self) -> bool:
        """Whether leaving fast frames can ever enter slow memory."""
        return self.slow > 0 and self.policy.kind != "none"

    @property
    def name(self) -> str:
        """Canonical name; `parse_layout(layout.name, layout.chunk, layout.admit_kv) == layout`."""
        if self.fast is None:
            base = "full"
        elif self.slow == 0:
            base = f"window-{self.fast}" if self.sink == 0 else f"sink{self.sink}-window{self.fast}"
        else:
            base = f"sink{self.sink}-slow{self.slow}-fast{self.fast}"
        options = self.policy.tokens if self.slow > 0 else ()
        return ":".join((base, *options, self.positions))


def run_layout(run: RunConfig, spec: str | None = None) -> MemoryLayout:
    """The memory a run streams with: its `memory.layout` (or `spec`, a --memory flag) and `memory.admit_kv`.

    The one place a run's configuration becomes a `MemoryLayout`; everything downstream takes the value.
    """
    return parse_layout(run.memory.layout if spec is None else spec, run.chunk, run.memory.admit_kv)


def parse_layout(spec: str, chunk: int, admit_kv: str = "clean") -> MemoryLayout:
    """Parse a layout name (DESIGN.md section 5 grammar) for chunks of `chunk` frames."""
    if not isinstance(spec, str):
        raise ConfigError(f"memory layout must be a string, got {spec!r}; {GRAMMAR}")
    base, *tokens = spec.split(":")
    try:
        form, sizes = _parse_base(base)
        options = _parse_options(tokens)
        if form == "slow" and sizes[1] < 1:
            raise ConfigError(f"the slow part must hold at least 1 frame, got {sizes[1]}")
        if form != "slow" and options.keys() & {"policy", "ref", "admit"}:
            raise ConfigError("a policy or ref/admit option needs a layout with a slow part")
        sink, slow, fast = sizes
        policy = NO_ADMISSION
        if form == "slow":
            policy = AdmissionPolicy(**{**options.get("policy", {"kind": "similarity"}),
                                        **options.get("ref", {}), **options.get("admit", {})})
        return MemoryLayout(sink, slow, fast, chunk, policy, options.get("positions", "bounded"), admit_kv)
    except ConfigError as error:
        raise ConfigError(f"bad memory layout {spec!r} (chunk {chunk}): {error}; {GRAMMAR}") from None


def _parse_base(base: str) -> tuple[str, tuple[int, int, int | None]]:
    """Match the part before the first `:`; returns the form and (sink, slow, fast) sizes."""
    for form, pattern in _BASE_FORMS:
        match = pattern.fullmatch(base)
        if match is None:
            continue
        numbers = [int(group) for group in match.groups()]
        if form == "full":
            return form, (0, 0, None)
        if form == "window":
            return form, (0, 0, numbers[0])
        if form == "sink_window":
            return form, (numbers[0], 0, numbers[1])
        return form, (numbers[0], numbers[1], numbers[2])
    raise ConfigError(f"unknown form {base!r}")


def _parse_option(token: str) -> tuple[str, object]:
    """Classify one `:` token as (kind, value); kinds are policy / ref / admit / positions."""
    if token in POSITIONS:
        return "positions", token
    if token in ("ref-previous", "ref-last-admitted"):
        return "ref", {"reference": token.removeprefix("ref-").replace("-", "_")}
    if token in ("admit-first", "admit-all"):
        return "admit", {"frames": token.removeprefix("admit-")}
    if token == "none":
        return "policy", {"kind": "none"}
    if token == "similarity" or re.fullmatch(f"similarity{_NUMBER}", token):
        # plain `similarity` means the paper's tau = 0.95
        return "policy", {"kind": "similarity", "tau": float(token.removeprefix("similarity") or 0.95)}
    if token == "uniform" or re.fullmatch(r"uniform[0-9]+", token):
        return "policy", {"kind": "uniform", "every": int(token.removeprefix("uniform") or 4)}
    raise ConfigError(f"unknown option {token!r}")


def _parse_options(tokens: list[str]) -> dict[str, object]:
    """Parse the `:` tokens in any order, each kind at most once."""
    options: dict[str, object] = {}
    for token in tokens:
        kind, value = _parse_option(token)
        if kind in options:
            raise ConfigError(f"option {token!r} repeats the {kind} option")
        options[kind] = value
    return options
