"""`context-forcing train-wan --data DIR -- STAGE --preset wan2.1-1.3b --run-dir ...`: train a stage on data
prepared by `prepare-wan-data`. Everything after `--` is exactly `context-forcing train`'s arguments
(validated by it); with torchrun each process joins the group, shards with FSDP2 and reads its slice of
every batch:

    torchrun --nproc_per_node 8 -m context_forcing train-wan --data DATA -- stage1 --preset wan2.1-1.3b ...

It differs from `train` only in the data source (`wan.prepare_data.PreparedLatents`); the stage, the loop,
checkpoints and resume are the training package's own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from context_forcing.cli_usage import UsageError


def add_train_wan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="a folder written by `context-forcing prepare-wan-data`"
    )
    parser.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="-- then the arguments of `context-forcing train` (STAGE --preset ... --run-dir ...)",
    )


def run_train_wan_command(args: argparse.Namespace) -> int:
    from context_forcing.cli import _train_request, build_parser  # noqa: PLC0415

    rest = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if not rest:
        raise UsageError("train-wan: give `-- STAGE --preset wan2.1-1.3b --run-dir DIR ...` after --data DIR")
    data = Path(args.data)
    if not (data / "index.jsonl").is_file():
        raise UsageError(f"--data: {str(data)!r} has no index.jsonl (run `context-forcing prepare-wan-data`)")
    request = _train_request(build_parser().parse_args(["train", *rest]))
    if request.run.text.kind != "umt5":
        raise UsageError(
            f"--preset: {request.run.preset!r} does not take umT5 prompts; prepared Wan data needs "
            f"the wan2.1-1.3b preset"
        )
    return train_on_prepared(request, data)


def train_on_prepared(request, data_dir: Path) -> int:
    """`training.loop.run_train` with the prepared folder as the data source."""
    import torch  # noqa: PLC0415

    from context_forcing.training import distributed  # noqa: PLC0415
    from context_forcing.training.loop import run_training, seed_everything  # noqa: PLC0415
    from context_forcing.training.registry import build_stage  # noqa: PLC0415
    from context_forcing.wan.prepare_data import PreparedLatents  # noqa: PLC0415

    if request.threads:
        torch.set_num_threads(request.threads)
    run, train = request.run, request.train
    distributed.init_distributed(always=train.precision == "bf16")
    seed_everything(train.seed)
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    completed = False
    try:
        latent_shape = (run.model.in_channels, run.video.latent_height, run.video.latent_width)
        data = PreparedLatents(
            data_dir, train.batch, train.seed, latent_shape, distributed.rank(), distributed.world_size()
        )
        stage = build_stage(train.stage, run, train, request.init, request.teacher, device, data=data)
        run_training(request.run_dir, run, train, stage)
        completed = True
    finally:
        distributed.barrier_and_destroy(completed)
    return 0
