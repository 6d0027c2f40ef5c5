"""Rectified flow / flow matching behind the same interface as ``GaussianDiffusion``.

x_t = (1 - t) x_0 + t noise with continuous t in [0, 1]; the network predicts the velocity
v = noise - x_0, and sampling integrates dx/dt = v from t = 1 (noise) to t = 0 (data). This is the
objective of Stable Diffusion 3 and of current open video models (Open-Sora 1.2+, Wan, HunyuanVideo).
"""

from __future__ import annotations

from typing import Literal

import torch

from videodiff.diffusion.gaussian import ModelFn, extract_continuous, prediction_mse

TimestepSampling = Literal["uniform", "logit_normal"]


class RectifiedFlow:
    """Flow matching with a straight (rectified) path between data and noise.

    Args:
        timestep_sampling: ``uniform`` t, or ``logit_normal`` (SD3: more weight on the middle of the path).
        logit_mean, logit_std: the logit-normal's parameters.
        shift: resolution shift of the time axis, t' = shift t / (1 + (shift - 1) t) (SD3; >1 for
            larger videos, which need more noise to destroy the same structure). Applied when training
            and when sampling.
        timestep_scale: the network sees ``t * timestep_scale``, so a DDPM-style timestep embedding
            (which expects 0..1000) serves both processes.
        channel_dim: kept for interface parity with ``GaussianDiffusion`` (flow has no variance channels).
    """

    learned_variance = False
    output_factor = 1

    def __init__(
        self,
        timestep_sampling: TimestepSampling = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        shift: float = 1.0,
        timestep_scale: float = 1000.0,
        channel_dim: int = -1,
    ):
        if timestep_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"unknown timestep_sampling {timestep_sampling!r}")
        if shift <= 0:
            raise ValueError(f"shift must be positive, got {shift}")
        self.timestep_sampling, self.logit_mean, self.logit_std = timestep_sampling, logit_mean, logit_std
        self.shift, self.timestep_scale, self.channel_dim = shift, timestep_scale, channel_dim

    def shift_time(self, t: torch.Tensor) -> torch.Tensor:
        return self.shift * t / (1.0 + (self.shift - 1.0) * t)

    def sample_timesteps(
        self, shape: tuple[int, ...], device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if self.timestep_sampling == "uniform":
            t = torch.rand(shape, device=device, generator=generator)
        else:
            normal = torch.randn(shape, device=device, generator=generator)
            t = torch.sigmoid(self.logit_mean + self.logit_std * normal)
        return self.shift_time(t)

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.timestep_scale

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        t = extract_continuous(t, x0)
        return (1.0 - t) * x0 + t * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - x0

    def split_output(self, model_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return model_output, None

    def training_losses(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss`` = ``mse`` of the velocity over the kept samples/tokens (see GaussianDiffusion)."""
        noise = torch.randn_like(x0) if noise is None else noise
        prediction = model_fn(self.q_sample(x0, t, noise), self.model_timesteps(t))
        mse = prediction_mse(prediction, self.target(x0, noise, t), mask, t.ndim)
        return {"loss": mse, "mse": mse}
