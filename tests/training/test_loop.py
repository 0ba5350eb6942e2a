"""The training loop: run directory layout, resume on the same trajectory, metrics truncation, EMA and the
optimiser helper.

`DummyStage` (also used by test_resume.py) draws its data from every global RNG the loop restores (torch,
python `random`, numpy) and keeps an iterator position and an EMA in its extra state, so a resume that forgets
any of them changes the trajectory.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from torch import nn

from context_forcing.config import ConfigError
from context_forcing.model.checkpoint import resolve_checkpoint
from context_forcing.presets import tiny
from context_forcing.training.config import TrainConfig, for_preset
from context_forcing.training.ema import EMA
from context_forcing.training.loop import run_training
from context_forcing.training.optim import accumulate_step, clip_and_step, scaled_backward
from context_forcing.training.run_dir import truncate_metrics


class DummyStage:
    """Linear regression on noisy random data: y = x W* + noise, AdamW, accumulation 2, clipping, EMA."""

    name = "dummy"

    def __init__(self, train: TrainConfig, delay: float = 0.0) -> None:
        g = torch.Generator().manual_seed(0)  # same initial weights in every process, whatever the global RNG
        self.net = nn.Linear(4, 2)
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=0.05, betas=(0.9, 0.99))
        self.ema = EMA(self.net, decay=0.9, start=2)
        self.truth = torch.randn(4, 2, generator=g)
        self.train, self.delay, self.position = train, delay, 0

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt}

    def _micro_loss(self, _: int) -> torch.Tensor:
        x = torch.randn(8, 4) + 0.01 * self.position  # global torch RNG + the "iterator position"
        noise = random.random() + float(np.random.rand())  # python and numpy RNG
        self.position += 1
        y = x @ self.truth + noise * torch.randn(8, 2)
        return ((self.net(x) - y) ** 2).mean()

    def train_step(self, step: int) -> dict[str, float]:
        time.sleep(self.delay)
        loss, norm = accumulate_step(self.opt, self._micro_loss, accumulation=2, clip=1.0)
        self.ema.update(self.net, step + 1)
        return {"loss": loss, "grad_norm": norm, "position": float(self.position)}

    def export_weights(self) -> dict[str, torch.Tensor]:
        return self.ema.export(self.net)

    def extra_state(self) -> dict:
        return {"position": self.position, "ema": self.ema.state_dict(), "note": ("tuple", None, 1.5)}

    def load_extra_state(self, state: dict) -> None:
        assert state["note"] == ["tuple", None, 1.5]
        self.position = state["position"]
        self.ema.load_state_dict(state["ema"])


def dummy_train(steps: int = 6, checkpoint_every: int = 4) -> TrainConfig:
    return replace(for_preset("stage1", "tiny"), steps=steps, checkpoint_every=checkpoint_every, seed=7)


def rows_without_time(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


def final_state(run_dir) -> dict[str, torch.Tensor]:
    """Exported weights, raw weights and optimiser moments of the run's latest checkpoint."""
    ckpt = resolve_checkpoint(run_dir)
    state = {f"model.{k}": v for k, v in load_file(str(ckpt / "model.safetensors")).items()}
    raw = load_file(str(ckpt / "training_state" / "network.generator.safetensors"))
    state.update({f"raw.{k}": v for k, v in raw.items()})
    opt = torch.load(ckpt / "training_state" / "optimizer.generator.pt", weights_only=True)
    for index, moments in opt["state"].items():
        state.update({f"opt.{index}.{k}": v for k, v in moments.items()})
    return state


def assert_same_run(a, b) -> None:
    state_a, state_b = final_state(a), final_state(b)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0, msg=key)
    assert rows_without_time(a) == rows_without_time(b)


def test_run_directory_layout_and_metrics(tmp_path):
    before = time.time()
    run_dir = tmp_path / "run"
    assert run_training(run_dir, tiny(), dummy_train(), DummyStage(dummy_train()), progress=False) == 6
    assert json.loads((run_dir / "config.json").read_text()) == json.loads(json.dumps(tiny().to_dict()))
    assert TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text())) == dummy_train()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000004", "step-000006"]
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-000006"
    state = run_dir / "checkpoints" / "step-000006" / "training_state"
    assert sorted(p.name for p in state.iterdir()) == [
        "extra.json", "extra.safetensors", "loop.json", "network.generator.safetensors",
        "optimizer.generator.pt", "rng.safetensors"]
    assert json.loads((state / "loop.json").read_text())["step"] == 6
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert before <= rows[0]["time"] <= rows[-1]["time"] <= time.time()
    assert {"loss", "grad_norm", "position"} <= rows[0].keys()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_model_safetensors_holds_the_export(tmp_path):
    stage = DummyStage(dummy_train())
    run_training(tmp_path, tiny(), dummy_train(), stage, progress=False)
    exported = load_file(str(tmp_path / "checkpoints" / "step-000006" / "model.safetensors"))
    torch.testing.assert_close(exported, stage.export_weights(), rtol=0, atol=0)
    # past ema_start the EMA lags the raw weights: the export must not be the raw weights
    assert not torch.equal(exported["weight"], stage.net.weight.detach())


def test_resume_continues_on_the_same_trajectory(tmp_path, capsys):
    run_training(tmp_path / "a", tiny(), dummy_train(6), DummyStage(dummy_train(6)), progress=False)
    run_training(tmp_path / "b", tiny(), dummy_train(3), DummyStage(dummy_train(3)), progress=False)
    capsys.readouterr()
    run_training(tmp_path / "b", tiny(), dummy_train(6), DummyStage(dummy_train(6)), progress=False)
    assert "resumed from step 3" in capsys.readouterr().err
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["steps"] == 6


def test_run_killed_before_its_first_checkpoint_restarts_cleanly(tmp_path):
    run_training(tmp_path / "a", tiny(), dummy_train(6), DummyStage(dummy_train(6)), progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "metrics.jsonl").write_text('{"step": 1, "time": 0, "loss": 123.0}\n{"step": 2, "ti')
    run_training(tmp_path / "b", tiny(), dummy_train(6), DummyStage(dummy_train(6)), progress=False)
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_finished_run_does_nothing(tmp_path, capsys):
    run_training(tmp_path, tiny(), dummy_train(), DummyStage(dummy_train()), progress=False)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    stage = DummyStage(dummy_train())
    assert run_training(tmp_path, tiny(), dummy_train(), stage, progress=False) == 6
    assert "run complete: step 6 of 6" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    assert stage.position == 0  # not even loaded
    with pytest.raises(ConfigError, match="beyond steps=4"):
        run_training(tmp_path, tiny(), dummy_train(4), DummyStage(dummy_train(4)), progress=False)


# ---- metrics.jsonl truncation ----------------------------------------------------------------------

def test_truncation_keeps_earlier_rows_byte_identical(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # odd spacing and key order: a rewrite through json.loads/dumps would not reproduce these bytes
    kept = b'{"step": 1,   "time": 1.5, "loss": 0.1}\n{"loss":2e-3,"step":2,"time":1.75}\n'
    path.write_bytes(kept + b'{"step": 3, "time": 2.0, "loss": 0.3}\n{"step": 4, "ti')
    assert truncate_metrics(path, 2)
    assert path.read_bytes() == kept
    assert not truncate_metrics(path, 2)  # nothing to drop: file untouched
    assert not truncate_metrics(tmp_path / "absent.jsonl", 5)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.integers(1, 9), min_size=0, max_size=8), cut=st.integers(0, 10), torn=st.booleans())
def test_truncation_keeps_exactly_the_prefix_up_to_the_step(tmp_path_factory, steps, cut, torn):
    path = tmp_path_factory.mktemp("m") / "metrics.jsonl"
    steps = sorted(steps)
    lines = [json.dumps({"step": s, "time": 0.5 * i, "x": i}).encode() + b"\n" for i, s in enumerate(steps)]
    path.write_bytes(b"".join(lines) + (b'{"step": 1' if torn else b""))
    truncate_metrics(path, cut)
    assert path.read_bytes() == b"".join(line for line, s in zip(lines, steps) if s <= cut)


# ---- EMA ------------------------------------------------------------------------------------------

def _scalar_module(value: float) -> nn.Module:
    module = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_ema_copies_the_weights_up_to_start_then_follows_the_decay():
    module = _scalar_module(0.0)
    ema = EMA(module, decay=0.9, start=2)
    for updates, weight in ((1, 1.0), (2, 3.0)):  # up to start: a copy
        module.weight.data.fill_(weight)
        ema.update(module, updates)
        assert ema.export(module)["weight"].item() == weight
    module.weight.data.fill_(5.0)
    ema.update(module, 3)  # 0.9 * 3 + 0.1 * 5 = 3.2
    torch.testing.assert_close(ema.export(module)["weight"], torch.tensor([[3.2]]), rtol=0, atol=1e-6)
    module.weight.data.fill_(-1.0)
    ema.update(module, 4)  # 0.9 * 3.2 + 0.1 * (-1) = 2.78
    torch.testing.assert_close(ema.export(module)["weight"], torch.tensor([[2.78]]), rtol=0, atol=1e-6)
    assert module.weight.item() == -1.0  # the module itself is untouched


def test_ema_state_round_trip_and_tied_weights():
    module = nn.Sequential(nn.Embedding(3, 2), nn.Linear(2, 3, bias=False))
    module[1].weight = module[0].weight  # tied: both names must export the EMA
    ema = EMA(module, decay=0.5, start=0)
    with torch.no_grad():
        module[0].weight.add_(2.0)
    ema.update(module, 1)
    exported = ema.export(module)
    torch.testing.assert_close(exported["0.weight"], module[0].weight.detach() - 1.0)
    torch.testing.assert_close(exported["1.weight"], exported["0.weight"])
    other = EMA(module, decay=0.5, start=0)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.export(module), exported)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict({"nope": torch.zeros(1)})


def test_ema_export_keeps_parameter_dtypes():
    module = nn.Linear(2, 2).to(torch.bfloat16)
    ema = EMA(module, decay=0.99, start=0)
    assert ema.shadow["weight"].dtype == torch.float32
    assert ema.export(module)["weight"].dtype == torch.bfloat16


# ---- optimiser helper ------------------------------------------------------------------------------

def _regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Linear(3, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x, y = torch.randn(12, 3, generator=g), torch.randn(12, 2, generator=g)
    return net, x, y


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_accumulated_micro_batches_equal_one_big_batch(k):
    big, x, y = _regression()
    ((big(x) - y) ** 2).mean().backward()
    small, _, _ = _regression()
    for xs, ys in zip(x.chunk(k), y.chunk(k)):
        scaled_backward(((small(xs) - ys) ** 2).mean(), k)
    for p_big, p_small in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(p_small.grad, p_big.grad, rtol=1e-5, atol=1e-6)

    # the full helper: an SGD step of lr 1 moves the weights by exactly minus the (big-batch) gradient
    stepped, _, _ = _regression()
    opt = torch.optim.SGD(stepped.parameters(), lr=1.0)

    def micro_loss(i: int) -> torch.Tensor:
        return ((stepped(x.chunk(k)[i]) - y.chunk(k)[i]) ** 2).mean()

    loss, norm = accumulate_step(opt, micro_loss, k, clip=0)
    expected_norm = torch.cat([p.grad.flatten() for p in big.parameters()]).norm()
    torch.testing.assert_close(torch.tensor(norm), expected_norm, rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(loss), ((big(x) - y) ** 2).mean().detach(), rtol=1e-5, atol=0)
    for p_step, p_big in zip(stepped.parameters(), big.parameters()):
        torch.testing.assert_close(p_step.detach(), p_big.detach() - p_big.grad, rtol=1e-5, atol=1e-6)
        assert p_step.grad is None  # zeroed after the step


@pytest.mark.parametrize("clip", [0.5, 1.0])
def test_clipping_caps_the_gradient_norm(clip):
    net, x, y = _regression(1)
    before = [p.detach().clone() for p in net.parameters()]
    (100 * ((net(x) - y) ** 2).mean()).backward()
    unclipped = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    norm = clip_and_step(opt, clip)
    assert norm == pytest.approx(float(unclipped), rel=1e-6) and norm > clip  # the pre-clip norm is reported
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before)]).norm()
    torch.testing.assert_close(moved, torch.tensor(clip), rtol=1e-5, atol=0)


@pytest.mark.parametrize("scale", [1e-3, 100.0])  # a norm below the clip (no scaling) and far above it
def test_clipping_updates_as_torch_s_clip_grad_norm(scale):
    updated = []
    for ours in (True, False):
        net, x, y = _regression(1)
        (scale * ((net(x) - y) ** 2).mean()).backward()
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        if ours:
            clip_and_step(opt, 1.0)
        else:
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        updated.append([p.detach() for p in net.parameters()])
    for p, expected in zip(*updated):
        torch.testing.assert_close(p, expected, rtol=0, atol=0)
