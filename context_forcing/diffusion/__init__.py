from context_forcing.diffusion.noise import ChunkNoise, generator_for
from context_forcing.diffusion.samplers import euler_sample, guided, student_sample
from context_forcing.diffusion.schedule import (
                                                 add_noise,
                                                 noise_from_velocity,
                                                 shift_sigma,
                                                 student_sigmas,
                                                 teacher_sigmas,
                                                 timesteps_of,
                                                 velocity_from_x0,
                                                 velocity_target,
                                                 x0_from_velocity,
)

__all__ = ["ChunkNoise", "generator_for", "euler_sample", "guided", "student_sample", "add_noise",
           "noise_from_velocity", "shift_sigma", "student_sigmas", "teacher_sigmas", "timesteps_of",
           "velocity_from_x0", "velocity_target", "x0_from_velocity"]
