"""Resuming across code versions: fields added to the configs since a run was saved take their defaults."""

from __future__ import annotations

import json

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
    assert config_mismatches(tmp_path, run, train) == ["train_config.json prompt_dropout (saved 0.3, now 0.1)"]
