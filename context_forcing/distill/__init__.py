"""Distillation losses (DMD, flow matching) and DMD timesteps: pure functions of tensors, no networks."""

from context_forcing.distill.dmd import dmd_gradient, dmd_loss, dmd_timesteps, flow_matching_loss

__all__ = ["dmd_gradient", "dmd_loss", "dmd_timesteps", "flow_matching_loss"]
