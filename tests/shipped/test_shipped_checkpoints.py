"""The shipped checkpoints load and reproduce the pinned figure of their model cards; generate finds them."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from context_forcing.eval.pinned import card_figure, pinned_figure
from context_forcing.model.shipped import CARD_FILE, ROLES, SHIPPED_DIR, shipped_checkpoint

SHIPPED = [(preset.name, role) for preset in sorted(SHIPPED_DIR.iterdir()) if preset.is_dir()
           for role in ROLES if (preset / role).is_dir()]


def test_the_panworld_student_and_teacher_ship():
    assert ("panworld", "student") in SHIPPED and ("panworld", "teacher") in SHIPPED
    assert shipped_checkpoint("panworld") == SHIPPED_DIR / "panworld" / "student"
    assert shipped_checkpoint("tiny") is None


@pytest.mark.parametrize("preset,role", SHIPPED)
def test_shipped_checkpoint_reproduces_its_cards_pinned_figure(preset, role):
    directory = SHIPPED_DIR / preset / role
    recorded = card_figure(directory / CARD_FILE)
    measured = pinned_figure(directory, role)
    assert measured.keys() == recorded.keys()
    for key, value in recorded.items():
        assert measured[key] == pytest.approx(value, rel=2e-3, abs=2e-3), key  # CPU float32 across machines


def test_shipped_weights_are_half_precision_on_disk_and_float32_in_memory():
    from context_forcing.model.checkpoint import load_model

    for preset, role in SHIPPED:
        directory = SHIPPED_DIR / preset / role
        stored = load_file(str(directory / "model.safetensors"))
        assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
        _, model = load_model(directory)
        assert all(p.dtype == torch.float32 for p in model.parameters())


def test_generate_defaults_to_the_shipped_student(tmp_path, capsys):
    import json

    from context_forcing.cli import main

    report = tmp_path / "r.json"
    assert main(["generate", "--preset", "panworld", "--seconds", "1.5", "--out", str(tmp_path / "v.mp4"),
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["checkpoint"] == str(SHIPPED_DIR / "panworld" / "student")
    assert "random weights" not in capsys.readouterr().err
