"""Diffusion math, independent of any network: schedules, losses, samplers, guidance."""

from videodiff.diffusion.flow import RectifiedFlow
from videodiff.diffusion.gaussian import GaussianDiffusion
from videodiff.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    EulerSampler,
    Sampler,
    classifier_free_guidance,
)
from videodiff.diffusion.schedules import NoiseSchedule, spaced_timesteps

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "EulerSampler",
    "GaussianDiffusion",
    "NoiseSchedule",
    "RectifiedFlow",
    "Sampler",
    "classifier_free_guidance",
    "spaced_timesteps",
]
