"""The output parametrisation (`ModelConfig.prediction`) and the width check on tokens."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import make_cond, randomize
from context_forcing.config import ConfigError, ModelConfig, RunConfig
from context_forcing.model.dit import CausalVideoDiT, output_to_velocity
from context_forcing.presets import PRESETS


def test_a_token_wider_than_the_model_is_rejected():
    with pytest.raises(ConfigError,
                       match=r"model.dim \(256\) must be >= the numbers per token.*3 x 1x32x4 = 384"):
        ModelConfig(patch=(1, 32, 4), dim=256, heads=4)
    ModelConfig(patch=(1, 32, 4), dim=384, heads=6)  # as wide as the token: fine


@pytest.mark.parametrize("name", ["tiny", "panworld", "wan2.1-1.3b"])
def test_every_preset_sees_its_whole_token(name):
    cfg = PRESETS[name]().model
    assert cfg.patch_features <= cfg.dim


def test_x0_head_is_edm_preconditioning():
    cfg = ModelConfig(prediction="x0", sigma_data=0.5)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 3, 3, 4, 4, generator=g)
    s = torch.tensor([[0.0, 0.3, 1.0], [0.05, 0.6, 0.999]])
    v = output_to_velocity(out, x, s * 1000, cfg)
    assert torch.isfinite(v).all()
    sb, sd = s[..., None, None, None], 0.5
    d = (1 - sb) ** 2 * sd**2 + sb**2
    x0 = (1 - sb) * sd**2 / d * x + sb * sd / d.sqrt() * out  # c_skip x + c_out F
    torch.testing.assert_close(x - sb * v, x0, rtol=1e-5, atol=1e-5)  # the velocity implies that x0
    torch.testing.assert_close((x - v)[0, 2], sd * out[0, 2], rtol=1e-5, atol=1e-5)  # s = 1: a pure x0 guess
    torch.testing.assert_close(v[0, 0], -x[0, 0] - out[0, 0], rtol=1e-5, atol=1e-5)  # s = 0: finite


def test_velocity_head_is_unchanged():
    out, x = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    assert output_to_velocity(out, x, torch.full((1, 2), 500.0), ModelConfig()) is out


def test_x0_model_forward_and_an_old_config_without_the_field(run):
    x0_run = dataclasses.replace(run, model=dataclasses.replace(run.model, prediction="x0"))
    torch.manual_seed(0)
    model = randomize(CausalVideoDiT(x0_run.model, x0_run.text)).eval()
    x = torch.randn(1, 3, 3, 8, 8)
    cond = make_cond(run, 1, 3)
    t = torch.tensor([[1000.0, 500.0, 0.0]])
    v = model(x, t, model.encode_prompt(cond), torch.arange(3.0)[None], cond).velocity
    assert v.shape == x.shape and torch.isfinite(v).all()
    saved = x0_run.to_dict()
    del saved["model"]["prediction"], saved["model"]["sigma_data"]
    assert RunConfig.from_dict(saved).model.prediction == "velocity"  # checkpoints from before the field


def test_bad_prediction_values():
    with pytest.raises(ConfigError, match="model.prediction"):
        ModelConfig(prediction="eps")
    with pytest.raises(ConfigError, match="model.sigma_data"):
        ModelConfig(sigma_data=0)
