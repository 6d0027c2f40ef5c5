"""Samplers: stateless functions of (model, noise, process). No step counter survives a call.

``DDPMSampler`` (ancestral, all T steps or a respaced subset) and ``DDIMSampler`` (eta) run a
``GaussianDiffusion``; ``EulerSampler`` integrates a ``RectifiedFlow``. Classifier-free guidance wraps
two model functions into one before sampling. Noise is drawn only from the given generator, so a call is
deterministic given it. ``edit`` runs the last part of a sampler's steps from data noised to where they
begin (SDEdit, Meng et al. 2022): video-to-video editing, and a probe of what a model takes from its
condition rather than from its input (``videodiff fidelity --edit``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch
from rich.progress import track

from videodiff.diffusion.flow import RectifiedFlow
from videodiff.diffusion.gaussian import GaussianDiffusion, ModelFn, extract
from videodiff.diffusion.schedules import Spacing, spaced_timesteps

DiffusionProcess = GaussianDiffusion | RectifiedFlow


def classifier_free_guidance(cond_fn: ModelFn, uncond_fn: ModelFn, scale: float, process: DiffusionProcess) -> ModelFn:
    """uncond + scale (cond - uncond), on every channel of the prediction.

    With learned variance, the variance half of the output comes from the conditional branch:
    extrapolating interpolation weights would leave the [posterior variance, beta] range. (DiT guided only
    3 of its 4 latent channels by accident; here the whole prediction is guided.)
    """

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = cond_fn(x, t)
        if scale == 1.0:
            return cond
        cond_prediction, values = process.split_output(cond)
        uncond_prediction, _ = process.split_output(uncond_fn(x, t))
        prediction = uncond_prediction + scale * (cond_prediction - uncond_prediction)
        if values is None:
            return prediction
        return torch.cat([prediction, values], dim=process.channel_dim)

    return guided


def _steps(indices: Iterable[int], progress: bool, description: str) -> Iterable[int]:
    indices = list(indices)
    return track(indices, description=description, transient=True) if progress else indices


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class Sampler(ABC):
    """Turns noise into data with a model function. Subclasses hold only their settings."""

    @abstractmethod
    def sample(
        self,
        model_fn: ModelFn,
        noise: torch.Tensor,
        process: DiffusionProcess,
        generator: torch.Generator | None = None,
        progress: bool = False,
        t_dims: int = 1,
    ) -> torch.Tensor:
        """Sample from ``noise``; ``t_dims`` leading dims of it carry a timestep each (1: per sample)."""

    @abstractmethod
    def edit(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        noise: torch.Tensor,
        process: DiffusionProcess,
        strength: float,
        generator: torch.Generator | None = None,
        progress: bool = False,
        t_dims: int = 1,
    ) -> torch.Tensor:
        """SDEdit: noise ``x0`` with ``noise`` to where the last ``strength`` of the steps begin, then run them.

        ``strength`` 1 starts (nearly) from pure noise; smaller keeps more of ``x0``'s layout.
        """


def check_strength(strength: float, name: str = "strength") -> float:
    """An edit's strength, or a ``ValueError`` naming ``name`` (e.g. the command-line flag that gave it)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {strength}")
    return strength


def edit_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` an edit of ``strength`` in (0, 1] runs: at least one."""
    return max(1, round(check_strength(strength) * steps))


def _respaced(process: DiffusionProcess, steps: int | None, spacing: Spacing, sampler: str) -> GaussianDiffusion:
    if not isinstance(process, GaussianDiffusion):
        raise TypeError(f"{sampler} samples a GaussianDiffusion, got {type(process).__name__}; use EulerSampler")
    if steps is None or steps == process.num_timesteps:
        return process
    keep = spaced_timesteps(process.num_timesteps, steps, spacing)
    return process.with_schedule(process.schedule.respace(keep))


class _GaussianSampler(Sampler):
    """A sampler stepping a (respaced) ``GaussianDiffusion``: subclasses give ``steps``, ``spacing``, ``_run``."""

    steps: int | None
    spacing: Spacing

    def sample(self, model_fn, noise, process, generator=None, progress=False, t_dims=1):
        diffusion = _respaced(process, self.steps, self.spacing, type(self).__name__)
        return self._run(model_fn, noise, diffusion, diffusion.num_timesteps, generator, progress, t_dims)

    def edit(self, model_fn, x0, noise, process, strength, generator=None, progress=False, t_dims=1):
        diffusion = _respaced(process, self.steps, self.spacing, type(self).__name__)
        count = edit_steps(diffusion.num_timesteps, strength)
        t = torch.full(x0.shape[:t_dims], count - 1, dtype=torch.long, device=x0.device)
        return self._run(model_fn, diffusion.q_sample(x0, t, noise), diffusion, count, generator, progress, t_dims)

    @abstractmethod
    def _run(self, model_fn, x, diffusion, count, generator, progress, t_dims) -> torch.Tensor:
        """The last ``count`` steps of ``diffusion`` (respaced), from ``x`` at the first of them."""


class DDPMSampler(_GaussianSampler):
    """Ancestral sampling: x_{t-1} ~ p(x_{t-1} | x_t) at every step.

    Args:
        steps: number of steps; None runs all T, fewer respaces the schedule (improved-diffusion).
        spacing: which timesteps a respaced run visits.
    """

    def __init__(self, steps: int | None = None, spacing: Spacing = "linspace"):
        self.steps, self.spacing = steps, spacing

    def _run(self, model_fn, x, diffusion, count, generator, progress, t_dims):
        for i in _steps(reversed(range(count)), progress, "DDPM sampling"):
            t = torch.full(x.shape[:t_dims], i, dtype=torch.long, device=x.device)
            x = self.step(diffusion, model_fn(x, diffusion.model_timesteps(t)), x, t, generator)
        return x

    @staticmethod
    def step(diffusion, model_output, x, t, generator=None, noise=None):
        """One ancestral step; all of ``t`` is one step. ``noise`` overrides the generator."""
        estimate = diffusion.p_mean_variance(model_output, x, t)
        if not bool((t > 0).any()):  # no noise on the last step (and none drawn, as diffusers does)
            return estimate.mean
        noise = _noise_like(x, generator) if noise is None else noise
        return estimate.mean + torch.exp(0.5 * estimate.log_variance) * noise


class DDIMSampler(_GaussianSampler):
    """DDIM (Song et al. 2021): deterministic at eta=0, DDPM-like at eta=1.

    Args:
        steps: number of steps over a respaced schedule.
        eta: stochasticity.
        spacing: which timesteps the steps visit.
    """

    def __init__(self, steps: int = 50, eta: float = 0.0, spacing: Spacing = "linspace"):
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.steps, self.eta, self.spacing = steps, eta, spacing

    def _run(self, model_fn, x, diffusion, count, generator, progress, t_dims):
        schedule = diffusion.schedule
        for i in _steps(reversed(range(count)), progress, "DDIM sampling"):
            t = torch.full(x.shape[:t_dims], i, dtype=torch.long, device=x.device)
            estimate = diffusion.p_mean_variance(model_fn(x, diffusion.model_timesteps(t)), x, t)
            x = self.step(schedule.alphas_cumprod, schedule.alphas_cumprod_prev, t, x, estimate, generator)
        return x

    def step(self, alphas_cumprod, alphas_cumprod_prev, t, x, estimate, generator=None, noise=None):
        """One DDIM update from the model's (x_0, epsilon) estimate; ``noise`` overrides the generator."""
        ab, ab_prev = extract(alphas_cumprod, t, x), extract(alphas_cumprod_prev, t, x)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        direction = (1 - ab_prev - sigma**2).clamp_min(0).sqrt() * estimate.pred_eps
        x = ab_prev.sqrt() * estimate.pred_x0 + direction
        if self.eta > 0 and bool((t > 0).any()):
            x = x + sigma * (_noise_like(x, generator) if noise is None else noise)
        return x


class EulerSampler(Sampler):
    """Euler integration of a rectified flow's velocity from t=1 (noise) to t=0 (data).

    Args:
        steps: number of Euler steps (uniform in t before the process's shift).
    """

    def __init__(self, steps: int = 50):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def sample(self, model_fn, noise, process, generator=None, progress=False, t_dims=1):
        return self._run(model_fn, noise, process, self._times(process), 0, progress, t_dims)

    def edit(self, model_fn, x0, noise, process, strength, generator=None, progress=False, t_dims=1):
        times = self._times(process)
        first = self.steps - edit_steps(self.steps, strength)
        t = torch.full(x0.shape[:t_dims], float(times[first]), dtype=x0.dtype, device=x0.device)
        return self._run(model_fn, process.q_sample(x0, t, noise), process, times, first, progress, t_dims)

    def _times(self, process) -> torch.Tensor:
        if not isinstance(process, RectifiedFlow):
            raise TypeError(f"EulerSampler integrates a RectifiedFlow, got {type(process).__name__}")
        return process.shift_time(torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64))

    def _run(self, model_fn, x, process, times, first, progress, t_dims):
        """Steps ``first`` to the last, from ``x`` at ``times[first]``."""
        for k in _steps(range(first, self.steps), progress, "Euler sampling"):
            t = torch.full(x.shape[:t_dims], float(times[k]), dtype=x.dtype, device=x.device)
            velocity = model_fn(x, process.model_timesteps(t))
            x = x + float(times[k + 1] - times[k]) * velocity
        return x
