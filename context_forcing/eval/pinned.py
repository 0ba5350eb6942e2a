"""The pinned figure of a shipped checkpoint: a small, deterministic evaluation whose value its model card
records, so that a change to weights, names or numerics cannot land unnoticed (tests/shipped/).

Teacher: probe-teacher's `x0_error_context` on the first PINNED_EPISODES eval episodes (no sampling).
Students (and baselines): the short P1 eval's `continuation_mae` (px) on PINNED_EPISODES eval episodes of
PINNED_SECONDS, with the memory layout the checkpoint records.
The card holds them in a fenced JSON block after the heading "## Pinned figure".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from context_forcing.eval.student_probe import probe_student
from context_forcing.eval.teacher_probe import build_probe_set, probe_teacher
from context_forcing.memory.layout import run_layout
from context_forcing.model.checkpoint import load_model

PINNED_EPISODES = 2
PINNED_SECONDS = 16.0


def pinned_figure(checkpoint: str | Path, role: str) -> dict[str, float]:
    """Compute the role's pinned figure (float32 on the CPU) for a checkpoint directory."""
    run, model = load_model(checkpoint)  # float32, whatever the stored dtype
    with torch.no_grad():
        if role == "teacher":
            figures = probe_teacher(model, run, build_probe_set(run, PINNED_EPISODES), sample_steps=0)
            return {"x0_error_context": figures["x0_error_context"]}
        figures = probe_student(model, run, run_layout(run), PINNED_EPISODES, PINNED_SECONDS)
        return {"continuation_mae": figures["continuation_mae"]}


def card_figure(card: str | Path) -> dict[str, float]:
    """The pinned figure recorded in a model card (the JSON block after '## Pinned figure')."""
    text = Path(card).read_text()
    match = re.search(r"## Pinned figure.*?```json\s*(\{.*?\})\s*```", text, re.S)
    if match is None:
        raise ValueError(f"{card}: no '## Pinned figure' section with a ```json block")
    return json.loads(match.group(1))
