"""Run directories: fields added to the configs since a run was saved take their defaults; real differences
(a changed memory layout among them) are reported, so a resume with other flags is refused."""

from __future__ import annotations

import json
from dataclasses import replace

from context_forcing.presets import tiny
from context_forcing.training.config import for_preset
from context_forcing.training.run_dir import config_mismatches, write_configs


def test_a_field_missing_from_a_saved_config_takes_its_default(tmp_path):
    run, train = tiny(), for_preset("teacher", "tiny")
    write_configs(tmp_path, run, train)
    saved = json.loads((tmp_path / "train_config.json").read_text())
    del saved["precision"]  # as written before the field existed
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    assert config_mismatches(tmp_path, run, train) == []
    saved["prompt_dropout"] = 0.3  # a real difference is still reported
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    assert config_mismatches(tmp_path, run, train) == [
        "train_config.json prompt_dropout (saved 0.3, now 0.1)"]


def test_a_changed_memory_layout_is_a_mismatch(tmp_path):
    run, train = tiny(), for_preset("stage2", "tiny")
    absolute = replace(run, memory=replace(run.memory, layout="window-21:absolute"))
    write_configs(tmp_path, absolute, train)
    assert config_mismatches(tmp_path, absolute, train) == []
    bounded = replace(run, memory=replace(run.memory, layout="window-21:bounded"))
    assert config_mismatches(tmp_path, bounded, train) == [
        "config.json memory.layout (saved 'window-21:absolute', now 'window-21:bounded')"]


def test_prune_keeps_the_newest_the_multiples_and_latest(tmp_path):
    from context_forcing.model.checkpoint import point_latest
    from context_forcing.training.run_dir import checkpoint_dir, prune_checkpoints

    for step in (25, 50, 75, 100, 125, 150):
        checkpoint_dir(tmp_path, step).mkdir(parents=True)
    point_latest(tmp_path, checkpoint_dir(tmp_path, 150))
    assert prune_checkpoints(tmp_path, 0, 0) == []  # 0: keep everything
    removed = prune_checkpoints(tmp_path, 2, 50)
    assert sorted(p.name for p in removed) == ["step-000025", "step-000075"]
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step-000050", "step-000100", "step-000125", "step-000150"]
