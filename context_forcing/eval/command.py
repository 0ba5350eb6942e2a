"""The `eval` and `table` commands, for the CLI to register: `add_*_arguments(parser)` declares the flags,
`run_*_command(args)` validates every flag before any work (ConfigError, a ValueError, with one line naming
the flag, the bad value and what is allowed) and then runs.

    context-forcing eval --model SPEC --episodes N --seconds S --report FILE.json [--plots DIR]
                         [--memory LAYOUT] [--protocol p1|p2|both] [--seed-start N] [--threads N]
    context-forcing table REPORT.json ... [--out FILE.md] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from context_forcing.config import ConfigError
from context_forcing.eval.evaluate import PROTOCOLS, resolve_seed_range
from context_forcing.eval.references import ORACLE_PREFIX, REFERENCES, oracle_layout

SPECS = f"a checkpoint or run directory, {', '.join(REFERENCES)} or {ORACLE_PREFIX}LAYOUT"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `context-forcing eval`."""
    parser.add_argument("--model", required=True, help=SPECS)
    parser.add_argument("--episodes", type=int, default=8, help="eval episodes (default 8)")
    parser.add_argument("--seconds", type=float, default=64.0,
                        help="episode length (default 64), 4 latent frames per second")
    parser.add_argument("--report", required=True, help="JSON report to write (atomically)")
    parser.add_argument("--plots", help="directory for PNG plots (revisits, drift, filmstrip)")
    parser.add_argument("--memory", help="memory layout for a checkpoint (default: the checkpoint's)")
    parser.add_argument("--protocol", default="both", help="p1 (continuation), p2 (free rollout) or both")
    parser.add_argument("--seed-start", type=int, default=None,
                        help="first eval episode seed (default 1000000, the eval split's first)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def add_table_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `context-forcing table`."""
    parser.add_argument("reports", nargs="+", help="eval JSON reports")
    parser.add_argument("--out", help="Markdown file to write (default: stdout)")
    parser.add_argument("--plot", help="also plot every report's revisit scores vs gap, one line each (PNG)")


def _fail(flag: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"{flag}: got {value!r}; {allowed}")


def _output(flag: str, path: str | None, suffix: str) -> None:
    from context_forcing.io.files import check_writable

    if path is None:
        return
    if not path.endswith(suffix):
        raise _fail(flag, path, f"must be a file name ending in {suffix}")
    try:
        check_writable(path)
    except ValueError as error:
        raise _fail(flag, path, str(error)) from None


def _check_model(spec: str, memory: str | None) -> None:
    """The spec names a reference, a parseable oracle layout, or a usable PanWorld checkpoint."""
    from context_forcing.data.panworld import PanWorldConfig

    if spec in REFERENCES or spec.startswith(ORACLE_PREFIX):
        if spec.startswith(ORACLE_PREFIX):
            try:
                oracle_layout(spec)
            except ConfigError as error:
                raise _fail("--model", spec, str(error)) from None
        if memory is not None:
            raise _fail("--memory", memory, f"only a checkpoint takes a memory layout, not {spec!r} "
                                            f"(an oracle names its own)")
        return
    from context_forcing.eval.protocols import check_eval_run
    from context_forcing.memory.layout import parse_layout
    from context_forcing.model.checkpoint import read_config

    try:
        run = read_config(spec)
        check_eval_run(run, PanWorldConfig())
    except (ValueError, OSError) as error:  # CheckpointError and ConfigError are ValueErrors
        raise _fail("--model", spec, f"must be {SPECS} ({error})") from None
    if memory is not None:
        try:
            parse_layout(memory, run.chunk)
        except ConfigError as error:
            raise _fail("--memory", memory, str(error)) from None


def check_eval_args(args: argparse.Namespace) -> None:
    """Validate every `eval` flag (ConfigError naming the first bad one); creates nothing."""
    if not isinstance(args.episodes, int) or args.episodes < 1:
        raise _fail("--episodes", args.episodes, "must be an integer >= 1")
    if not math.isfinite(args.seconds) or args.seconds * 4 < 4:
        raise _fail("--seconds", args.seconds, "must be a finite number >= 1 (4 latent frames per second)")
    if args.protocol not in PROTOCOLS:
        raise _fail("--protocol", args.protocol, f"allowed: {', '.join(PROTOCOLS)}")
    try:
        resolve_seed_range(args.episodes, args.seed_start)
    except ValueError as error:
        raise _fail("--seed-start", args.seed_start, str(error)) from None
    if args.threads is not None and args.threads < 1:
        raise _fail("--threads", args.threads, "must be an integer >= 1")
    _check_model(args.model, args.memory)
    _output("--report", args.report, ".json")
    if args.plots is not None:
        if Path(args.plots).exists() and not Path(args.plots).is_dir():
            raise _fail("--plots", args.plots, "must be a directory (it is a file)")
        _output("--plots", str(Path(args.plots) / "revisits.png"), ".png")


def run_eval_command(args: argparse.Namespace) -> int:
    """Validate, evaluate, write the report atomically; print a one-line summary on stderr. Returns 0."""
    from context_forcing.eval.evaluate import evaluate
    from context_forcing.io.files import atomic_write_json

    check_eval_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    report = evaluate(args.model, args.episodes, args.seconds, args.memory, args.protocol, args.seed_start,
                      args.plots)
    atomic_write_json(args.report, report)

    def ecl(seconds: float | None, lower: bool | None) -> str:
        return "-" if seconds is None else f"{seconds:.1f}{'+' if lower else ''} s"

    print(f"{args.model}: ECL {ecl(report['ecl_seconds'], report['ecl_lower_bound'])} (M1), "
          f"{ecl(report['ecl_seconds_m2'], report['ecl_m2_lower_bound'])} (M2); motion "
          f"{'passes' if report['motion']['passes'] else 'FAILS'}; P2 drift within interval "
          f"{report['drift_within_interval']}; report {args.report}", file=sys.stderr)
    return 0


def run_table_command(args: argparse.Namespace) -> int:
    """Read every report, check the outputs, then write the Markdown table (and the plot). Returns 0."""
    from context_forcing.eval.table import markdown_table
    from context_forcing.io.files import atomic_write_text

    reports = []
    for path in args.reports:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise _fail("REPORT", path, f"must be a readable eval JSON report ({error})") from None
        if not isinstance(report, dict) or "revisit_by_gap" not in report:
            raise _fail("REPORT", path, "is not an eval report (no 'revisit_by_gap')")
        reports.append(report)
    _output("--out", args.out, ".md")
    _output("--plot", args.plot, ".png")
    table = markdown_table(reports)
    if args.plot is not None:
        from context_forcing.eval.plots import plot_revisits

        plot_revisits(reports, args.plot)
    if args.out is not None:
        atomic_write_text(args.out, table)
    else:
        sys.stdout.write(table)
    return 0
