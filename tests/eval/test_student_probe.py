"""The training probe of a student (eval/student_probe.py): P1 recall figures, and the P2 drift figures that
only a free rollout shows."""

from __future__ import annotations

import math

import torch

from context_forcing.eval.student_probe import probe_student
from context_forcing.memory.layout import parse_layout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import get_preset


def test_free_rollout_adds_the_p2_drift_figures_and_leaves_p1_unchanged():
    run = get_preset("panworld")
    torch.manual_seed(0)
    model = CausalVideoDiT(run.model, run.text).train()
    layout = parse_layout(run.memory.layout, run.chunk)
    p1 = probe_student(model, run, layout, episodes=2, seconds=16.0)
    both = probe_student(model, run, layout, episodes=2, seconds=16.0, free_rollout=True)
    assert model.training  # restored
    assert {"ecl_m1", "sharpness_ratio", "continuation_mae"} <= set(p1)
    assert not {"ecl_m2", "p2_sharpness_first", "p2_sharpness_last"} & set(p1)
    assert {k: both[k] for k in p1} == p1  # the P1 figures do not depend on the P2 rollout
    for key in ("ecl_m2", "p2_sharpness_first", "p2_sharpness_last"):
        assert math.isfinite(both[key]) and both[key] >= 0, key
    # a free rollout of random weights is not the truth: its frames' sharpness differs from the truth's
    assert both["p2_sharpness_first"] != 1.0 and both["p2_sharpness_last"] != both["p2_sharpness_first"]
