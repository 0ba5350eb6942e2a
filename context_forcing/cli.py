"""`context-forcing ...`: parse, validate, build the config, call. Nothing else lives here.

Bad arguments exit with status 2 and one line on stderr naming the flag, the bad value and what is allowed,
before any work starts and without creating output files.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

from context_forcing.cli_usage import UsageError, check_outputs, positive_float, positive_int
from context_forcing.config import ConfigError
from context_forcing.presets import PRESETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="context-forcing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="stream a long video from a (student) checkpoint")
    gen.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    gen.add_argument("--checkpoint",
                     help="checkpoint or run directory (default: the preset's shipped student)")
    gen.add_argument("--random-weights", action="store_true",
                     help="generate with untrained random weights "
                          "(a warning; for presets without a shipped model)")
    gen.add_argument("--prefill-seconds", type=float, default=0.0,
                     help="commit the PanWorld episode's ground-truth opening of this length (whole chunks) "
                          "before generating --seconds more (continuation; the video shows both)")
    gen.add_argument("--seconds", type=float, required=True, help="video length (4 latent frames per second)")
    gen.add_argument("--seed", type=int, default=0,
                     help="noise seed and PanWorld episode seed of sample 0 (seed + b for sample b; "
                          "eval episodes are seeds >= 1000000)")
    gen.add_argument("--out", required=True, help="output .mp4 (batch samples side by side)")
    gen.add_argument("--memory",
                     help="memory layout, e.g. sink3-slow12-fast6:similarity0.95:bounded, window-21, full")
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--fps", type=float, help="frames per second of the MP4 (default: the preset's)")
    gen.add_argument("--scale", type=int, default=1,
                     help="nearest-neighbour upscaling factor for small frames")
    gen.add_argument("--quality", default="lossless", choices=["lossless", "compatible"],
                     help="MP4 encoding: lossless RGB (exact; mpv/VLC/ffmpeg) "
                          "or compatible yuv420p (browsers)")
    gen.add_argument("--side-by-side", action="store_true",
                     help="write each sample next to its PanWorld ground truth (generated | truth)")
    gen.add_argument("--compare", metavar="CHECKPOINT",
                     help="also stream this checkpoint on the same episodes, noise and opening, "
                          "shown to the right of the first (generated | compared [| truth]); "
                          "the report's `compare` has its figures")
    gen.add_argument("--compare-memory", metavar="LAYOUT",
                     help="memory layout of the --compare model (default: the one its checkpoint records)")
    gen.add_argument("--report", help="write a JSON report here")
    gen.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    gen.add_argument("--compile", action="store_true",
                     help="compile the chunk step with frozen weights (inductor, a C++ compiler): "
                          "1.3-1.9x faster chunks on CPU after ~15 s of compilation; "
                          "needs a memory with a budget (not `full`)")
    from context_forcing.cli_scripted import add_scripted_arguments

    add_scripted_arguments(gen)
    from context_forcing.wan.generate_command import add_wan_arguments

    add_wan_arguments(gen)
    _add_train_parser(commands)
    from context_forcing.serve.command import add_serve_arguments

    add_serve_arguments(commands.add_parser("serve", help="live sessions in a browser: steer the camera, "
                                                          "switch prompts, watch the memory (docs/SERVE.md)"))
    _add_world_parser(commands)
    _add_eval_parsers(commands)
    from context_forcing.wan.commands import add_wan_commands

    add_wan_commands(commands)  # estimate, prepare-wan-data, import-wan, train-wan
    return parser


def _add_eval_parsers(commands: argparse._SubParsersAction) -> None:
    from context_forcing.eval.command import add_eval_arguments, add_table_arguments

    add_eval_arguments(commands.add_parser("eval", help="PanWorld memory metrics of a model or a reference"))
    add_table_arguments(commands.add_parser("table", help="eval reports -> one Markdown table (and a plot)"))
    from context_forcing.eval.probe_command import add_probe_arguments

    add_probe_arguments(commands.add_parser("probe-teacher",
                                            help="does a teacher checkpoint use its context?"))
    curves = commands.add_parser("curves", help="training curves of run directories as one PNG")
    curves.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (their metrics.jsonl)")
    curves.add_argument("--keys", default="loss,probe_gap_closed",
                        help="comma-separated metric names, one panel each (default: loss,probe_gap_closed)")
    curves.add_argument("--out", required=True, help="PNG to write (atomically)")
    curves.add_argument("--window", type=int, default=50, help="moving-mean window of per-update metrics")


def _add_world_parser(commands: argparse._SubParsersAction) -> None:
    world = commands.add_parser("world",
                                help="render a ground-truth PanWorld episode and its revisit schedule")
    world.add_argument("--seed", type=int, required=True, help="episode seed (>= 1000000: the eval split)")
    world.add_argument("--seconds", type=float, required=True, help="episode length (4 frames per second)")
    world.add_argument("--out", required=True, help="output .mp4")
    world.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling factor")
    world.add_argument("--quality", default="lossless", choices=["lossless", "compatible"])
    world.add_argument("--report", help="write the episode's ground truth summary (JSON) here")
    world.add_argument("--filmstrip", help="write 16 evenly spaced frames as one PNG here")


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    from context_forcing.training.config import STAGES

    train = commands.add_parser("train", help="train one stage; the same command again resumes the run",
                                description="Train one stage into a run directory. Running the same command "
                                            "again resumes from the run's latest checkpoint.")
    train.add_argument("stage", metavar="STAGE", help=f"one of: {', '.join(STAGES)}")
    train.add_argument("--preset", required=True, help=f"one of: {', '.join(PRESETS)}")
    train.add_argument("--run-dir", required=True, help="run directory (created; an existing run is resumed)")
    train.add_argument("--steps", type=int, help="generator updates in total (default: the preset's); may be "
                                                 "raised to continue a finished run")
    train.add_argument("--init", help="checkpoint or run directory to start the trained network from")
    train.add_argument("--teacher", help="checkpoint or run directory of the teacher (distillation stages)")
    train.add_argument("--checkpoint-every", type=int, help="checkpoint every N updates (and at the last)")
    train.add_argument("--memory", metavar="LAYOUT",
                       help="the student's memory layout in ode-init/stage1/stage2 (default: the preset's), "
                            "e.g. sink3-slow12-fast6:uniform4, window-21:absolute; recorded in config.json")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training setting, e.g. --set generator.lr=1e-4 (repeatable)")
    train.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                       help="override a model setting of the preset, e.g. --model patch=1,16,4 (repeatable; "
                            "recorded in config.json, so give the same flags to resume)")
    train.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "generate" and args.preset == "wan2.1-1.3b":
            if args.compile:
                raise UsageError("--compile: not available with --preset wan2.1-1.3b yet (the compiled chunk "
                                 "step is measured at the PanWorld presets)")
            from context_forcing.wan.generate_command import run_wan_generate

            return run_wan_generate(args)
        if args.command == "generate":
            from context_forcing.rollout.generate import (  # heavy imports: lazily
                GenerateRequest,
                run_generate,
            )

            request = _generate_request(args, GenerateRequest)
            return run_generate(request)
        if args.command == "train":
            request = _train_request(args)
            from context_forcing.training.loop import run_train  # torch: lazily, after validation

            return run_train(request)
        if args.command == "world":
            return _run_world(args)
        if args.command == "serve":
            from context_forcing.serve.command import run_serve

            return run_serve(args)
        if args.command in ("eval", "table"):
            from context_forcing.eval.command import run_eval_command, run_table_command

            return (run_eval_command if args.command == "eval" else run_table_command)(args)
        from context_forcing.wan.commands import WAN_COMMANDS, run_wan_command

        if args.command in WAN_COMMANDS:
            return run_wan_command(args)
        if args.command == "curves":
            return _run_curves(args)
        if args.command == "probe-teacher":
            from context_forcing.eval.probe_command import run_probe_command

            return run_probe_command(args)
    except (UsageError, ConfigError) as error:
        print(f"context-forcing {args.command}: error: {error}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2


def _run_curves(args: argparse.Namespace) -> int:
    from context_forcing.io.files import check_writable
    from context_forcing.training.curves import plot_curves

    check_outputs([("--out", args.out, ".png")], check_writable)
    window = positive_int("--window", args.window)
    keys = [k for k in args.keys.split(",") if k]
    if not keys:
        raise UsageError(f"--keys: got {args.keys!r}; name at least one metric")
    print(f"wrote {plot_curves(args.runs, keys, args.out, window)}", file=sys.stderr)
    return 0


def _generate_request(args: argparse.Namespace, request_type: type):
    """Validate every generate flag before any work; return the request."""
    from context_forcing.io.files import check_writable
    from context_forcing.memory.layout import run_layout
    from context_forcing.model.checkpoint import CheckpointError, read_config
    from context_forcing.presets import get_preset

    if args.preset not in PRESETS:
        raise UsageError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    run = get_preset(args.preset)
    if args.checkpoint is not None and args.random_weights:
        raise UsageError("--random-weights: cannot be combined with --checkpoint")
    if args.checkpoint is None and not args.random_weights:
        from context_forcing.model.shipped import shipped_checkpoint

        shipped = shipped_checkpoint(args.preset)
        if shipped is None:
            raise UsageError(f"--checkpoint: preset {args.preset!r} ships no trained model; "
                             f"pass --checkpoint DIR or --random-weights")
        args.checkpoint = str(shipped)
    if args.checkpoint is not None:
        try:
            run = read_config(args.checkpoint)
        except (CheckpointError, ConfigError, OSError, ValueError) as error:
            raise UsageError(f"--checkpoint: {error}") from None
        if run.preset != args.preset:
            raise UsageError(f"--checkpoint: {args.checkpoint!r} was made with preset {run.preset!r}, "
                             f"not --preset {args.preset!r}")
    if run.codec.kind != "pixel":
        raise UsageError(f"--preset: {args.preset!r} needs the {run.codec.kind} codec, "
                         f"which is not available yet; allowed now: presets with the pixel codec "
                         f"({', '.join(p for p in PRESETS if p != 'wan2.1-1.3b')})")
    seconds = positive_float("--seconds", args.seconds)
    prefill = _prefill_frames(args.prefill_seconds, run)
    try:
        layout = run_layout(run, args.memory or None)
    except ConfigError as error:
        raise UsageError(f"--memory: {error}") from None
    batch = positive_int("--batch", args.batch)
    scale = positive_int("--scale", args.scale)
    fps = positive_float("--fps", args.fps) if args.fps is not None else float(run.video.fps)
    if args.threads is not None:
        positive_int("--threads", args.threads)
    compare, compare_layout = _compare_model(args, run)
    for name, chosen in (("--memory", layout), ("--compare-memory", compare_layout)):
        if args.compile and chosen is not None and chosen.budget is None:
            raise UsageError(f"--compile: needs a memory layout with a budget (a fixed context size); "
                             f"{name} is {chosen.name!r}")
    from context_forcing.cli_scripted import scripted_inputs

    prefill, opening, prompts = scripted_inputs(args, run, prefill, seconds)
    check_outputs([("--out", args.out, ".mp4"), ("--report", args.report, ".json")], check_writable)
    return request_type(opening=opening, prompts=prompts, compare=compare, compare_layout=compare_layout,
                        run=run, checkpoint=args.checkpoint, layout=layout, seconds=seconds, seed=args.seed,
                        batch=batch, out=Path(args.out), fps=fps, scale=scale,
                        report=Path(args.report) if args.report else None, threads=args.threads,
                        quality=args.quality, side_by_side=args.side_by_side, prefill_frames=prefill,
                        compile=args.compile)


def _compare_model(args: argparse.Namespace, run):
    """(--compare checkpoint, its parsed memory layout), or (None, None); UsageError unless it makes the same
    frames as the main model (same preset, chunk and video)."""
    from context_forcing.memory.layout import run_layout
    from context_forcing.model.checkpoint import CheckpointError, read_config

    if args.compare is None:
        if args.compare_memory is not None:
            raise UsageError("--compare-memory: needs --compare CHECKPOINT")
        return None, None
    try:
        other = read_config(args.compare)
    except (CheckpointError, ConfigError, OSError, ValueError) as error:
        raise UsageError(f"--compare: {error}") from None
    if (other.preset, other.chunk, other.video) != (run.preset, run.chunk, run.video):
        raise UsageError(f"--compare: {args.compare!r} was made with preset {other.preset!r} "
                         f"(chunk {other.chunk}); it must generate the same frames as the main model "
                         f"(preset {run.preset!r}, chunk {run.chunk})")
    try:
        layout = run_layout(other, args.compare_memory or None)
    except ConfigError as error:
        raise UsageError(f"--compare-memory: {error}") from None
    return args.compare, layout


def _prefill_frames(seconds: float, run) -> int:
    """--prefill-seconds as latent frames (whole chunks, rounded down); 0 when not given."""
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise UsageError(f"--prefill-seconds: got {seconds!r}; must be a finite number >= 0")
    frames = int(seconds * run.video.latent_frames_per_second + 1e-9) // run.chunk * run.chunk
    if seconds > 0 and frames == 0:
        raise UsageError(f"--prefill-seconds: got {seconds!r}; must cover at least one chunk "
                         f"({run.chunk / run.video.latent_frames_per_second:g} s)")
    return frames


def _train_request(args: argparse.Namespace):
    """Validate every train flag (and an existing run's configs) before any work; return the request."""
    from dataclasses import replace

    from context_forcing.presets import get_preset
    from context_forcing.training.config import STAGES, apply_overrides, for_preset
    from context_forcing.training.loop import TrainRequest

    if args.stage not in STAGES:
        raise UsageError(f"STAGE: got {args.stage!r}; allowed: {', '.join(STAGES)}")
    if args.preset not in PRESETS:
        raise UsageError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    try:
        train = apply_overrides(for_preset(args.stage, args.preset), args.set)
    except ConfigError as error:  # messages name the key; a range check names the field only
        raise UsageError(str(error) if str(error).startswith("--set") else f"--set: {error}") from None
    if train.stage != args.stage:
        raise UsageError(f"--set stage: the stage is the STAGE argument ({args.stage!r}); do not override it")
    if args.steps is not None:
        train = replace(train, steps=positive_int("--steps", args.steps))
    if args.checkpoint_every is not None:
        train = replace(train, checkpoint_every=positive_int("--checkpoint-every", args.checkpoint_every))
    if args.threads is not None:
        positive_int("--threads", args.threads)
    for flag, path in (("--init", args.init), ("--teacher", args.teacher)):
        if path is not None:
            _check_checkpoint_preset(flag, path, args.preset)
    run = _train_memory(args.memory, _train_model(args.model, get_preset(args.preset)), args.stage)
    run_dir = Path(args.run_dir)
    _check_run_dir(run_dir, run, train)
    return TrainRequest(run=run, train=train, run_dir=run_dir, init=args.init, teacher=args.teacher,
                        threads=args.threads)


def _train_model(overrides: list[str], run):
    """The preset's run with `--model KEY=VALUE` overrides of its model config (checked like `--set`)."""
    from dataclasses import replace

    from context_forcing.training.config import apply_overrides

    if not overrides:
        return run
    try:  # ModelConfig's checks, then the run's (e.g. the patch against the latent size)
        return replace(run, model=apply_overrides(run.model, overrides, flag="--model"))
    except ConfigError as error:
        raise UsageError(str(error) if str(error).startswith("--model") else f"--model: {error}") from None


def _train_memory(spec: str | None, run, stage: str):
    """The run with `--memory` as its `memory.layout` (canonical name),
    so config.json and checkpoints record it.

    The student stages stream with a memory (ODE init streams the real history into it; the DMD stages roll
    out); the teacher takes its context from the context sampler (`--set context.*`), so a layout there would
    be recorded but not used: refused."""
    from dataclasses import replace

    from context_forcing.memory.layout import parse_layout

    if spec is None:
        return run
    if stage == "teacher":
        raise UsageError("--memory: the teacher does not stream with a memory (its context comes from the "
                         "context sampler: --set context.*); --memory applies to ode-init, stage1 and stage2")
    try:
        layout = parse_layout(spec, run.chunk)
    except ConfigError as error:
        raise UsageError(f"--memory: {error}") from None
    return replace(run, memory=replace(run.memory, layout=layout.name))


def _check_checkpoint_preset(flag: str, path: str, preset: str) -> None:
    """A checkpoint flag must name a checkpoint (or run directory) made with the same preset."""
    from context_forcing.model.checkpoint import CheckpointError, read_config

    try:
        run = read_config(path)
    except (CheckpointError, ConfigError, OSError, ValueError) as error:
        raise UsageError(f"{flag}: {error}") from None
    if run.preset != preset:
        raise UsageError(f"{flag}: {path!r} was made with preset {run.preset!r}, not --preset {preset!r}")


def _check_run_dir(run_dir: Path, run, train) -> None:
    """The run directory is writable and, if it holds a run, that run has these configs and no more steps."""
    from context_forcing.io.files import check_writable
    from context_forcing.model.checkpoint import CheckpointError
    from context_forcing.training.run_dir import config_mismatches, latest_step

    try:
        check_writable(run_dir / "train_config.json")
    except ValueError as error:
        raise UsageError(f"--run-dir: {error}") from None
    if not run_dir.is_dir():
        return
    try:
        mismatches = config_mismatches(run_dir, run, train)
        done = latest_step(run_dir)
    except (ConfigError, CheckpointError) as error:
        raise UsageError(f"--run-dir: {error}") from None
    if mismatches:
        raise UsageError(f"--run-dir: {run_dir} holds a run with a different config: "
                         f"{'; '.join(mismatches)}; use the same flags to resume, or a new --run-dir")
    if done > train.steps:
        raise UsageError(f"--steps: got {train.steps}; {run_dir} is already at step {done} (may only grow)")


def _run_world(args: argparse.Namespace) -> int:
    """Validate, then render the episode."""
    from context_forcing.io.files import check_writable

    if args.seed < 0:
        raise UsageError(f"--seed: got {args.seed}; must be >= 0")
    seconds = positive_float("--seconds", args.seconds)
    scale = positive_int("--scale", args.scale)
    check_outputs([("--out", args.out, ".mp4"), ("--report", args.report, ".json"),
                    ("--filmstrip", args.filmstrip, ".png")], check_writable)
    from context_forcing.data.world_video import render_world

    summary = render_world(args.seed, seconds, Path(args.out), scale,
                           Path(args.report) if args.report else None,
                           args.quality, Path(args.filmstrip) if args.filmstrip else None)
    print(f"wrote {summary['frames_written']} frames of episode {args.seed} ({summary['split']}) "
          f"to {args.out}; {summary['revisits']} revisits, longest gap {summary['longest_gap']} frames",
          file=sys.stderr)
    return 0
