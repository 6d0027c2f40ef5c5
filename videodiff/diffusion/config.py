"""A diffusion process to and from the plain dict a checkpoint keeps (``diffusion_config``), and the sampler
that runs it."""

from __future__ import annotations

from typing import Any, Literal

from videodiff.diffusion.flow import RectifiedFlow
from videodiff.diffusion.gaussian import GaussianDiffusion
from videodiff.diffusion.samplers import DDIMSampler, DDPMSampler, DiffusionProcess, EulerSampler, Sampler

SamplerName = Literal["auto", "ddim", "ddpm", "euler"]
SAMPLERS: tuple[str, ...] = ("auto", "ddim", "ddpm", "euler")


def process_config(process: DiffusionProcess) -> dict[str, Any]:
    """Every setting of ``process``: ``build_process`` of the result is the same process."""
    if isinstance(process, RectifiedFlow):
        return {
            "process": "flow",
            "timestep_sampling": process.timestep_sampling,
            "logit_mean": process.logit_mean,
            "logit_std": process.logit_std,
            "shift": process.shift,
            "timestep_scale": process.timestep_scale,
        }
    return {
        "process": "gaussian",
        "schedule": process.schedule_name,
        "num_timesteps": process.num_timesteps,
        "prediction": process.prediction,
        "variance": process.variance,
        "vb_weight": process.vb_weight,
        "clip_x0": process.clip_x0,
        "snr_gamma": process.snr_gamma,
        "loss_space": process.loss_space,
        "snr_shift": process.snr_shift,
        "sigma_data": process.sigma_data,
    }


def build_process(config: dict[str, Any]) -> DiffusionProcess:
    """The process a ``process_config`` dict describes (one without ``process``, as checkpoints written before
    rectified flow was supported, is Gaussian)."""
    settings = dict(config)
    kind = settings.pop("process", "gaussian")
    if kind == "flow":
        return RectifiedFlow(**settings)
    if kind == "gaussian":
        return GaussianDiffusion(**settings)
    raise ValueError(f"diffusion_config: unknown process {kind!r}; expected 'gaussian' or 'flow'")


def make_sampler(name: SamplerName, process: DiffusionProcess, steps: int, eta: float = 0.0) -> Sampler:
    """The named sampler for ``process``; ``auto`` is DDIM for a Gaussian diffusion and Euler for a flow."""
    flow = isinstance(process, RectifiedFlow)
    if name == "auto":
        name = "euler" if flow else "ddim"
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    if flow != (name == "euler"):
        runs = "a RectifiedFlow" if name == "euler" else "a GaussianDiffusion"
        raise ValueError(
            f"sampler {name!r} runs {runs} and this model's diffusion is {type(process).__name__}; "
            f"use sampler 'auto' (or '{'euler' if flow else 'ddim'}')"
        )
    if name == "euler":
        return EulerSampler(steps=steps)
    return DDIMSampler(steps=steps, eta=eta) if name == "ddim" else DDPMSampler(steps=steps)
