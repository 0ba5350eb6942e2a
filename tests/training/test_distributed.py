"""Several processes (torchrun, FSDP2 on gloo): 2 processes x batch 1 equal 1 process x batch 2.

Only float rounding differs (batch-1 vs batch-2 kernels, gradient reduce-scatter, loss all-reduce); a real
fault (a wrong slice of the batch, randomness tied to the split, gradients summed instead of averaged) shows
as O(1) differences. Measured on these tests (2-3 updates):
- Adam's moments, the sharp check on the gradients: max difference per tensor <= 1e-5 of the tensor's largest
  entry (DMD stages: rounding in few-step rollouts and critic updates grows a little), ~1e-6 for the teacher;
- weights, EMA, ERFT banks: <= 1.2e-6 absolute. Adam normalises each element's step, so an element whose
  gradient nearly cancels carries rounding into its step at up to lr scale (here lr <= 3e-4);
- logged metrics (losses, gradient norms): <= 3e-7 relative.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor

from conftest import make_cond, make_latents, randomize
from context_forcing.model.checkpoint import save_checkpoint
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.presets import tiny
from context_forcing.training.distributed import (
    barrier_and_destroy,
    full_on_main,
    init_distributed,
    load_full_state,
    shard,
    shard_optimizer_state,
)

WEIGHT_TOL = 1e-5  # weights, EMA, ERFT banks: absolute
MOMENT_TOL = 1e-4  # Adam's exp_avg, exp_avg_sq: relative to the tensor's largest entry
METRIC_RTOL = 1e-5


def _train(run_dir: Path, processes: int, stage: str, steps: int, extra: list[str]) -> None:
    """`train` with `processes` processes sharing a global batch of 2. gloo occasionally aborts at teardown
    (SIGABRT) after the run is complete: a run is judged by its outputs, and retried once if they are missing
    (the retry resumes from the last checkpoint)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    command = [*launcher, "-m", "context_forcing", "train", stage, "--preset", "tiny", "--run-dir",
               str(run_dir), "--steps", str(steps), "--set", f"batch={2 // processes}", "--threads", "1",
               *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)
        if _complete(run_dir, steps):
            return
    raise AssertionError(f"{processes}-process run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _complete(run_dir: Path, steps: int) -> bool:
    latest = run_dir / "latest"
    return latest.is_file() and latest.read_text().strip().endswith(f"step-{steps:06d}") and \
        (run_dir / "checkpoints" / f"step-{steps:06d}" / "model.safetensors").is_file()


def _tensors(checkpoint: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every tensor a checkpoint holds, by file and key: (exported and raw weights, EMA, ERFT banks; Adam's
    moments). The global RNG state is left out: no stage draws from it."""
    weights, moments = {}, {}
    for path in sorted(checkpoint.rglob("*.safetensors")):
        if path.name != "rng.safetensors":
            weights.update({f"{path.name}:{k}": v for k, v in load_file(str(path)).items()})
    for path in sorted(checkpoint.rglob("optimizer.*.pt")):
        state = torch.load(path, weights_only=True)["state"]
        moments.update({f"{path.name}:{i}.{k}": v for i, s in state.items() for k, v in s.items()
                        if k != "step"})
    return weights, moments


def _compare(one: Path, two: Path, steps: int) -> None:
    """Same checkpoint contents and metric rows (but `time`) within the module's tolerances; the gradients
    were not trivially zero (Adam's first moment)."""
    (w1, m1), (w2, m2) = (_tensors(d / "checkpoints" / f"step-{steps:06d}") for d in (one, two))
    assert w1.keys() == w2.keys() and m1.keys() == m2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=WEIGHT_TOL, msg=key)
    for key in m1:
        scale = float(m1[key].abs().max())
        torch.testing.assert_close(m2[key], m1[key], rtol=0, atol=MOMENT_TOL * scale + 1e-30, msg=key)
    assert max(float(v.abs().max()) for k, v in m1.items() if k.endswith("exp_avg")) > 1e-4
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()][:steps]
            for d in (one, two)]
    assert [r["step"] for r in rows[1]] == [r["step"] for r in rows[0]] == list(range(1, steps + 1))
    for x, y in zip(*rows):
        assert x.keys() == y.keys()
        for key in x.keys() - {"time"}:
            assert y[key] == pytest.approx(x[key], rel=METRIC_RTOL, abs=1e-9), key


@pytest.fixture
def random_teacher(tmp_path):
    """A teacher with random weights everywhere (a fresh one has zero-initialised outputs: no DMD signal)."""
    run = tiny()
    torch.manual_seed(0)
    weights = randomize(CausalVideoDiT(run.model, run.text)).state_dict()
    return str(save_checkpoint(tmp_path / "teacher", run, weights))


def _one_and_two(tmp_path: Path, stage: str, options: list[str], steps: int = 2,
                 resume_at: int | None = None) -> None:
    """Train `stage` with 1 and with 2 processes and compare; the 2-process run stops at `resume_at` first and
    is resumed from there (full state cut back into FSDP2 shards)."""
    one, two = tmp_path / "one", tmp_path / "two"
    _train(one, 1, stage, steps, options)
    if resume_at:
        _train(two, 2, stage, resume_at, options)
        _compare(one, two, resume_at)
    _train(two, 2, stage, steps, options)
    _compare(one, two, steps)


def test_two_processes_equal_one_for_the_teacher(tmp_path):
    _one_and_two(tmp_path, "teacher", ["--set", "accumulation=2"])  # gradient accumulation under FSDP2 too


def test_two_processes_equal_one_for_contextual_dmd(tmp_path, random_teacher):
    _one_and_two(tmp_path, "stage2", ["--teacher", random_teacher])


@pytest.mark.slow
@pytest.mark.parametrize("stage, options",
                         [("ode-init", []), ("stage1", ["--set", "dmd.exit_step=per_chunk"])])
def test_two_processes_equal_one_for_ode_init_and_local_dmd(tmp_path, random_teacher, stage, options):
    _one_and_two(tmp_path, stage, ["--teacher", random_teacher, *options])


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["teacher", "stage2"])
def test_two_processes_resume_like_one(tmp_path, random_teacher, stage):
    """Weights, Adam states, EMA, ERFT banks and data position saved at step 2 (tiny checkpoints every 2
    updates) and loaded into shards continue to step 3 as one uninterrupted process does."""
    _one_and_two(tmp_path, stage, ["--teacher", random_teacher] if stage != "teacher" else [], 3, resume_at=2)


def test_one_process_group_shards_exactly_and_computes_bf16_on_request(run):
    """Without torchrun a process joins no group, except on request (`precision=bf16`): a one-process group,
    where FSDP2 applies as under torchrun. fp32 sharding changes nothing; bf16 keeps fp32 weights and computes
    in bf16; the full state gathered for checkpoints is the model's own, and loads back into the shards."""
    torch.manual_seed(0)
    plain = randomize(CausalVideoDiT(run.model, run.text)).eval()
    b, f = 2, 6
    cond, x = make_cond(run, b, f), make_latents(run, b, f)
    t, pos = torch.full((b, f), 500.0), torch.arange(f, dtype=torch.float32).expand(b, f)

    def velocity(model: CausalVideoDiT) -> torch.Tensor:
        return model(x, t, model.encode_prompt(cond), pos, cond).velocity

    init_distributed()
    assert not torch.distributed.is_initialized()
    init_distributed(always=True)
    try:
        fp32, bf16 = shard(copy.deepcopy(plain)), shard(copy.deepcopy(plain), precision="bf16")
        assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in bf16.parameters())
        expected = velocity(plain)
        torch.testing.assert_close(velocity(fp32), expected, rtol=0, atol=0)
        low = velocity(bf16)
        assert low.dtype == torch.bfloat16 and not torch.equal(low.float(), expected)
        scale = float(expected.detach().abs().max())  # bf16 keeps ~3 significant digits through 2 layers
        torch.testing.assert_close(low.float(), expected, rtol=0.05, atol=0.03 * scale)

        state = full_on_main(fp32.state_dict())
        assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())
        load_full_state(bf16, {k: v + 1 for k, v in state.items()})
        assert all(torch.equal(full_on_main(v), state[k] + 1) for k, v in bf16.state_dict().items())

        optimizer = torch.optim.AdamW(fp32.parameters())
        velocity(fp32).square().mean().backward()
        optimizer.step()
        saved = full_on_main(optimizer.state_dict())
        assert not any(isinstance(v, DTensor) for s in saved["state"].values() for v in s.values())
        restored = torch.optim.AdamW(fp32.parameters())
        restored.load_state_dict(shard_optimizer_state(restored, saved))
        for p in fp32.parameters():
            assert restored.state[p]["exp_avg"].placements == p.placements
            assert torch.equal(full_on_main(restored.state[p]["exp_avg"]),
                               full_on_main(optimizer.state[p]["exp_avg"]))
    finally:
        barrier_and_destroy()
    assert not torch.distributed.is_initialized()
