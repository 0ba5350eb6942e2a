"""Training throughput of the four stages at the panworld preset, against the machine's matmul peak.

Prints exactly one JSON document on stdout (progress on stderr). A few minutes (threads: the core count unless
given; `--threads 1` pairs runs on a busy machine):
    .venv/bin/python benchmarks/training.py [--threads 1] [--stages teacher stage1] [--steps 3] [--no-profile]
        [--guidance 1] [--model patch=1,16,4]
Each stage is built by the `train` command's registry (`build_stage`) with its default panworld config
(`for_preset(stage, "panworld")`: batch 4, no accumulation, 21-frame rollouts / targets, ODE grid of 16
teacher steps, 2 critic updates per generator update). Distillation stages load a random-weight teacher from a
temporary checkpoint; the student (and the critic) start as copies of it, as in `make train-panworld` without
`--init`. Random weights: speed does not depend on them, but the head gets random (not zero) weights so
rollouts are not degenerate. Timed: `stage.train_step(step)` alone (one warm-up step, then `--steps` steps;
data rendering included, checkpoints and logs excluded); steps draw different lengths, so the achieved rate is
total FLOPs over total time, next to the median step time. The matmul peak (benchmarks/streaming.py's, same
thread count) is read before and after the stages and the better read is used. Overhead: one more update under
torch.profiler (unless `--no-profile`), split as benchmarks/breakdown.py splits it (benchmarks/frozen.py's
`op_breakdown`): `overhead` = 1 - GEMM share - attention share of the profiled wall time (target <= 0.3), with
the profiler's own per-op cost included (an upper bound); `overhead_of_median` divides the profiled GEMM and
attention time by the median unprofiled update instead (updates draw different lengths: information only).

A busy machine: `cpu_s_per_wall_s` below the thread count says other processes took the cores during the timed
steps. The `*_cpu_time` figures then time both the steps and the peak's matmuls by process CPU time / threads
instead of wall time, the better estimate of an undisturbed run with one thread (a co-runner on the same
physical core still slows both; with several threads, spinning OpenMP workers inflate CPU time).

FLOP counting (analytic, `context_forcing/model/flops.py`, as benchmarks/streaming.py): a forward pre-hook on
every network counts each call's `forward_flops` from its actual shapes (batch, query frames, context frames
of an AttentionContext, prompt length; attention dense over all keys, as SDPA computes it), and a hook on the
text embedding counts `prompt_flops` per `encode_prompt`. A call made with gradients enabled on a network with
trainable parameters is backpropagated, and counts 3x (forward + backward for inputs and weights); every other
call (frozen networks, no-grad rollout steps, commit passes) counts 1x. Optimiser, EMA, norms, RoPE, the
memory's bookkeeping and data rendering count 0: they are the overhead the peak fraction exposes.

Forwards per update (B = 4; sequences are [context | target] teacher-style forwards with a frame mask):
- teacher: one trained forward over context (0..21 sampled sink/slow/fast frames) + target (3..21 frames).
- ode-init: the student streams a real history (random length) into its memory (one no-grad commit forward per
  chunk); the frozen teacher runs the memory context once per prompt (2 no-grad forwards of 0..21 frames),
  then integrates 16 Euler steps with CFG (2 no-grad forwards each) of the target (3..21 frames) against that
  context's K/V (`TeacherInputs.sampler_velocity`); then per target chunk, one trained student forward per
  student level (4) against the memory, and a no-grad commit forward of the clean chunk before the next.
- stage1 / stage2: per critic update (2), a no-grad student rollout (per chunk: up to 4 denoising forwards and
  one commit forward, against the memory; none after the last chunk) and one trained critic forward over
  [memory context | target]; per generator update, a student rollout whose exit-step forwards of the target
  chunks are trained, two frozen teacher forwards (CFG; one at `--guidance 1`) and one no-grad critic forward.
  Stage 1 rolls out 21 frames (all target, empty teacher context); stage 2 rolls out N ~ U{42..n_max(step)}
  frames, the last 21 the target.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

# benchmarks/ is sys.path[0] when this file runs as a script
from frozen import InstrumentedData, op_breakdown, random_teacher, torch_profiled
from streaming import matmul_peak_gflops
from torch import nn

from context_forcing.config import ConfigError, RunConfig
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.model.flops import forward_flops, prompt_flops
from context_forcing.presets import get_preset
from context_forcing.training.config import STAGES, apply_overrides, for_preset
from context_forcing.training.data import build_training_data
from context_forcing.training.registry import build_stage
from context_forcing.training.stage import Stage

PRESET = "panworld"
_FORWARD = inspect.signature(CausalVideoDiT.forward)


class FlopMeter:
    """Analytic FLOPs of every forward of the hooked networks,
    split by network and by trained / not trained."""

    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.counts: dict[str, dict[str, float]] = {}
        self.handles: list[Any] = []

    def attach(self, name: str, model: CausalVideoDiT) -> None:
        self.handles.append(model.register_forward_pre_hook(
            lambda module, args, kwargs: self._forward(name, module, args, kwargs), with_kwargs=True))
        self.handles.append(model.text_embedding.register_forward_pre_hook(
            lambda module, args: self._add(name, model, prompt_flops(self.run.model, *args[0].shape[:2]))))

    def _forward(self, name: str, model: CausalVideoDiT, args: tuple, kwargs: dict) -> None:
        call = _FORWARD.bind(model, *args, **kwargs).arguments
        x, context = call["x"], call.get("context")
        lf = self.run.tokens_per_frame
        context_frames = context.length // lf if context is not None else 0
        prompt_len = call["prompt"].keys[0].shape[2]
        self._add(name, model,
                  forward_flops(self.run.model, x.shape[0], x.shape[1], lf, context_frames, prompt_len),
                  call=True)

    def _add(self, name: str, model: nn.Module, flops: int, call: bool = False) -> None:
        trained = torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters())
        kind = "trained" if trained else "no_grad"
        entry = self.counts.setdefault(name, {"trained_calls": 0, "trained_gflop": 0.0, "no_grad_calls": 0,
                                              "no_grad_gflop": 0.0})
        entry[f"{kind}_calls"] += int(call)
        entry[f"{kind}_gflop"] += flops / 1e9  # forward FLOPs; `step_flops` weights trained ones 3x

    def step_flops(self) -> float:
        return 1e9 * sum(3 * c["trained_gflop"] + c["no_grad_gflop"] for c in self.counts.values())

    def reset(self) -> None:
        self.counts = {}

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()


def stage_networks(stage: Stage) -> dict[str, nn.Module]:
    """The stage's trained networks plus its frozen teacher, when it has one."""
    teacher = getattr(stage, "teacher", None)  # the teacher stage trains its network: it is in networks()
    return {**stage.networks(), **({"teacher": teacher} if teacher is not None else {})}


def bench_stage(name: str, run: RunConfig, teacher: Path, steps: int, profile: bool,
                guidance: float | None = None) -> dict:
    """Median step time, FLOPs per step and achieved rate of `steps` updates after one warm-up update; with
    `profile`, the overhead share of one more (profiled) update. guidance: the teacher's CFG weight in the
    distillation stages (None: the preset's)."""
    train = for_preset(name, PRESET)
    if guidance is not None:
        train = replace(train, dmd=replace(train.dmd, guidance=guidance))
    data = InstrumentedData(build_training_data(run, train))
    stage = build_stage(name, run, train, init=None,
                        teacher=None if name == "teacher" else str(teacher), data=data)
    meter = FlopMeter(run)
    for net_name, model in stage_networks(stage).items():
        meter.attach(net_name, model)
    stage.train_step(0)  # warm-up: first-call allocations, optimiser state, kernel selection
    times, flops, data_s, counts = [], [], [], []
    cpu = time.process_time()
    for step in range(1, steps + 1):
        meter.reset()
        data.seconds = 0.0
        tic = time.perf_counter()
        stage.train_step(step)
        times.append(time.perf_counter() - tic)
        flops.append(meter.step_flops())
        data_s.append(data.seconds)
        counts.append(meter.counts)
        print(f"{name} step {step}: {times[-1]:.2f} s, {flops[-1] / 1e9:.1f} GFLOP", file=sys.stderr)
    cpu = time.process_time() - cpu
    meter.detach()
    overhead = {}
    if profile:
        prof, wall = torch_profiled(lambda: stage.train_step(steps + 1))
        shares = op_breakdown(prof, wall, 1, statistics.median(times))
        overhead = {"overhead": shares["shares"]["overhead"],
                    "overhead_of_median": shares["overhead_of_plain"],
                    "profiled_shares": shares["shares"], "profiled_s": round(wall, 3),
                    "profiled_calls": {k: shares[k] for k in ("op_calls", "gemm_calls", "attention_calls")}}
        print(f"{name} profiled step: {wall:.2f} s, shares {shares['shares']}", file=sys.stderr)
    return {
        "batch": train.batch,
        "accumulation": train.accumulation,
        "step_s_median": round(statistics.median(times), 3),
        "step_s": [round(t, 3) for t in times],
        "gflop_per_step": [round(f / 1e9, 2) for f in flops],
        "data_s_median": round(statistics.median(data_s), 3),
        "achieved_gflops": round(sum(flops) / sum(times) / 1e9, 2),
        "cpu_s_per_wall_s": round(cpu / sum(times), 3),  # below the thread count: the process was descheduled
        "achieved_gflops_cpu_time": round(sum(flops) / (cpu / torch.get_num_threads()) / 1e9, 2),
        "forwards_last_step": {k: {f: round(v, 2) for f, v in c.items()} for k, c in counts[-1].items()},
        **overhead,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--steps", type=int, default=3,
                        help="timed updates per stage, after one warm-up update")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch CPU threads (the peak is measured with them); default: the core count")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the profiled update (no overhead share)")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="override the preset's model config as `train --model` does "
                             "(patch=1,16,4: the shipped recipe's 16 tokens per frame)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="the teacher's CFG weight in the distillation stages (default: the preset's, 4; "
                             "the shipped line trains at 1)")
    args = parser.parse_args()
    if args.steps < 1 or args.threads < 1:
        parser.error("--steps and --threads must be >= 1")
    if args.guidance is not None and args.guidance < 0:
        parser.error(f"--guidance must be >= 0, got {args.guidance}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = get_preset(PRESET)
    if args.model:
        try:
            run = replace(run, model=apply_overrides(run.model, args.model, flag="--model"))
        except ConfigError as error:
            parser.error(str(error))
    peaks = [matmul_peak_gflops()]
    print(f"matmul peak {peaks[0]:.1f} GFLOP/s with {torch.get_num_threads()} threads", file=sys.stderr)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = random_teacher(run, Path(tmp))
        for name in args.stages:
            results[name] = bench_stage(name, run, teacher, args.steps, args.profile, args.guidance)
    # the peak is the machine's: the better of two reads is the less disturbed
    peaks.append(matmul_peak_gflops())
    peak = max(peaks)
    peak_cpu = matmul_peak_gflops(clock=time.process_time) * torch.get_num_threads()  # CPU s / threads
    for result in results.values():
        result["peak_fraction"] = round(result["achieved_gflops"] / peak, 3)
        result["peak_fraction_cpu_time"] = round(result["achieved_gflops_cpu_time"] / peak_cpu, 3)
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "preset": PRESET,
        "model_overrides": args.model,
        "tokens_per_frame": run.tokens_per_frame,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflops": round(peak, 2),
        "matmul_peak_gflops_before_after": [round(p, 2) for p in peaks],
        "matmul_peak_gflops_cpu_time": round(peak_cpu, 2),
        "timed_steps": args.steps,
        "guidance": args.guidance if args.guidance is not None else for_preset("stage1", PRESET).dmd.guidance,
        "stages": results,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
