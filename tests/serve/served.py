"""A served tiny model (random weights: milliseconds per chunk) for the server tests."""

from __future__ import annotations

import torch

from context_forcing.codecs import build_codec
from context_forcing.memory.layout import run_layout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import tiny
from context_forcing.serve.app import ServeConfig


def tiny_config(max_sessions: int = 1, layout: str = "sink3-slow6-fast6:uniform1") -> ServeConfig:
    run = tiny()
    torch.manual_seed(0)
    model = CausalVideoDiT(run.model, run.text)
    with torch.no_grad():
        model.head.head.weight.normal_(std=0.02)  # visible output from random weights
    return ServeConfig(
        model=model.eval(),
        run=run,
        codec=build_codec(run.codec, run.video),
        layout=run_layout(run, layout),
        checkpoint="random",
        max_sessions=max_sessions,
        pace=False,
    )
