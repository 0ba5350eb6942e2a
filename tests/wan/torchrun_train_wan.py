"""Launched by test_commands.py under torchrun: `train_on_prepared` with a tiny Wan-shaped model.

argv: DATA_DIR RUN_DIR BATCH_PER_PROCESS PRECISION
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `tests.wan` imports

from context_forcing.presets import get_preset  # noqa: E402
from context_forcing.training.config import for_preset  # noqa: E402
from context_forcing.training.loop import TrainRequest  # noqa: E402
from context_forcing.wan.train_command import train_on_prepared  # noqa: E402
from tests.wan.conftest import TINY  # noqa: E402

torch.set_num_threads(1)
data, run_dir, batch, precision = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wan = get_preset("wan2.1-1.3b")
run = replace(wan, model=TINY, video=replace(wan.video, latent_height=4, latent_width=4))
train = replace(for_preset("teacher", "tiny"), steps=2, checkpoint_every=1, batch=batch, precision=precision)
train_on_prepared(TrainRequest(run=run, train=train, run_dir=run_dir), data)
