"""Distillation losses (DMD, flow matching) and the DMD schedules: pure functions of tensors, no networks."""

from context_forcing.distill.dmd import (dmd_gradient, dmd_loss, dmd_timesteps, flow_matching_loss, n_max,
                                         sample_rollout_length)

__all__ = ["dmd_gradient", "dmd_loss", "dmd_timesteps", "flow_matching_loss", "n_max",
           "sample_rollout_length"]
