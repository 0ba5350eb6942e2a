"""The Wan commands of `context-forcing` (registered by cli.py; each command's code is in its own module)."""

from __future__ import annotations

import argparse
import importlib

# command -> (module, add-arguments function, run function, help)
WAN_COMMANDS = {
    "estimate": (
        "estimate_command",
        "add_estimate_arguments",
        "run_estimate_command",
        "parameters, KV cache, FLOPs and memory of a preset (no model is built)",
    ),
    "prepare-wan-data": (
        "prepare_command",
        "add_prepare_arguments",
        "run_prepare_command",
        "videos + captions -> Wan latents and umT5 embeddings for training (resumable)",
    ),
    "import-wan": (
        "import_command",
        "add_import_arguments",
        "run_import_command",
        "Wan2.1 weights (model.pt, .safetensors, diffusers folder) -> our checkpoint directory",
    ),
    "train-wan": (
        "train_command",
        "add_train_wan_arguments",
        "run_train_wan_command",
        "train a stage on prepare-wan-data output (torchrun + FSDP2 like `train`)",
    ),
}


def _module(name: str):
    return importlib.import_module(f"context_forcing.wan.{name}")


def add_wan_commands(commands: argparse._SubParsersAction) -> None:
    for command, (module, add, _, help_text) in WAN_COMMANDS.items():
        getattr(_module(module), add)(commands.add_parser(command, help=help_text))


def run_wan_command(args: argparse.Namespace) -> int:
    module, _, run, _ = WAN_COMMANDS[args.command]
    return getattr(_module(module), run)(args)
