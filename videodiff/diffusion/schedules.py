"""Noise schedules: beta sequences and every quantity derived from them, in float64, with no hidden state.

``NoiseSchedule.respace`` keeps a subset of the timesteps (for DDPM over fewer steps, and for DDIM): the
betas are recomputed so that the kept steps have the original cumulative products, and ``timesteps`` maps
each step back to the original index that the model is conditioned on (improved-diffusion's respacing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine"]
Spacing = Literal["leading", "trailing", "linspace"]


def linear_betas(num_timesteps: int) -> torch.Tensor:
    """DDPM's linear schedule, 1e-4 to 0.02 at T=1000, scaled so any T spans the same noise range."""
    scale = 1000.0 / num_timesteps
    if scale * 0.02 >= 1.0:
        raise ValueError(f"the linear schedule needs num_timesteps >= 21 (its last beta is 20/T), got {num_timesteps}")
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2)."""

    def alpha_bar(step: float) -> float:
        return math.cos((step / num_timesteps + offset) / (1 + offset) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar(i + 1) / alpha_bar(i), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def shift_snr(betas: torch.Tensor, shift: float, max_beta: float = 0.999) -> torch.Tensor:
    """The schedule whose every SNR is the given one's divided by ``shift**2`` (the shifted schedules of
    Hoogeboom et al. 2023, SD3's shift for flows): ``shift > 1`` spends more timesteps at noise levels where
    the input no longer shows a video's layout, so the network must take it from its condition."""
    if not shift > 0:
        raise ValueError(f"the SNR shift must be a positive number, got {shift}")
    if shift == 1.0:
        return betas
    alphas_cumprod = torch.cumprod(1.0 - betas.double(), dim=0)
    snr = alphas_cumprod / (1.0 - alphas_cumprod) / shift**2
    shifted = snr / (1.0 + snr)
    previous = torch.cat([torch.ones(1, dtype=shifted.dtype), shifted[:-1]])
    return (1.0 - shifted / previous).clamp(max=max_beta)


def spaced_timesteps(num_timesteps: int, steps: int, spacing: Spacing = "leading") -> list[int]:
    """Which of ``num_timesteps`` original steps a ``steps``-step sampler visits (ascending).

    ``leading`` is diffusers' default (0, T/n, 2T/n, ...), ``trailing`` ends at T-1, ``linspace`` spans both.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    if spacing == "leading":
        ratio = num_timesteps // steps
        return [i * ratio for i in range(steps)]
    if spacing == "trailing":
        ratio = num_timesteps / steps
        return sorted({round(num_timesteps - i * ratio) - 1 for i in range(steps)})
    if spacing == "linspace":
        return sorted({round(x) for x in torch.linspace(0, num_timesteps - 1, steps, dtype=torch.float64).tolist()})
    raise ValueError(f"unknown spacing {spacing!r}")


class NoiseSchedule:
    """Betas and their derived quantities (all float64, shape ``(T,)``).

    Args:
        betas: the per-step noise variances.
        timesteps: the original timestep of each step (what the model sees); identity when None.
    """

    def __init__(self, betas: torch.Tensor, timesteps: Sequence[int] | torch.Tensor | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-D sequence in (0, 1]")
        self.betas = betas
        self.num_timesteps = len(betas)
        self.timesteps = torch.as_tensor(
            range(self.num_timesteps) if timesteps is None else timesteps, dtype=torch.long
        )
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1.0).sqrt()
        # q(x_{t-1} | x_t, x_0): variance and mean coefficients (DDPM eq. 7).
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The posterior variance is 0 at t=0; its log is clipped to the t=1 value (a finite stand-in
        # that the t=0 step never uses for noise, since no noise is added there).
        clipped = torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        self.posterior_log_variance_clipped = clipped.log() if self.num_timesteps > 1 else betas.log()
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)

    @classmethod
    def from_name(
        cls, name: ScheduleName = "linear", num_timesteps: int = 1000, snr_shift: float = 1.0
    ) -> NoiseSchedule:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
        if name == "linear":
            return cls(shift_snr(linear_betas(num_timesteps), snr_shift))
        if name == "cosine":
            return cls(shift_snr(cosine_betas(num_timesteps), snr_shift))
        raise ValueError(f"unknown beta schedule {name!r}; expected 'linear' or 'cosine'")

    def respace(self, keep: Sequence[int]) -> NoiseSchedule:
        """A schedule over the kept steps with the same cumulative products at those steps."""
        keep = sorted(set(int(k) for k in keep))
        if not keep or keep[0] < 0 or keep[-1] >= self.num_timesteps:
            raise ValueError(f"timesteps to keep must lie in [0, {self.num_timesteps - 1}]")
        betas, last = [], 1.0
        for k in keep:
            alpha_bar = float(self.alphas_cumprod[k])
            betas.append(1.0 - alpha_bar / last)
            last = alpha_bar
        return NoiseSchedule(torch.tensor(betas, dtype=torch.float64), self.timesteps[keep])
