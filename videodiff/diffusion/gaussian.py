"""Gaussian diffusion (DDPM): forward process, posterior, model parameterisations and training losses.

Timesteps are per sample *or per token*: ``t`` has the shape of the leading dimensions of ``x`` (``(B,)``
for a batch of videos, ``(R, L)`` for packed token rows whose segments each have their own t), and every
schedule coefficient is broadcast over the remaining dimensions. A ``mask`` of t's shape keeps padding and
dropped tokens out of every loss.

A model is any ``model_fn(x_t, timesteps) -> output``; with learned variance the output has twice the
channels of ``x`` along ``channel_dim`` (prediction first, then the variance interpolation values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from videodiff.diffusion.schedules import NoiseSchedule, ScheduleName

LossSpace = Literal["prediction", "x0"]
Prediction = Literal["epsilon", "v", "x0"]
VarianceType = Literal["fixed_small", "fixed_large", "learned_range"]
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_leading(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if tuple(like.shape[: t.ndim]) != tuple(t.shape):
        raise ValueError(f"timesteps of shape {tuple(t.shape)} must match the leading dims of {tuple(like.shape)}")
    return values.to(like.dtype).reshape(*t.shape, *([1] * (like.ndim - t.ndim)))


def extract(coefficients: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``coefficients[t]`` shaped to broadcast against ``like`` (t indexes its leading dimensions)."""
    return _per_leading(coefficients.to(like.device)[t], t, like)


def extract_continuous(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Continuous per-sample/per-token times shaped to broadcast against ``like``."""
    return _per_leading(t, t, like)


def masked_mean(
    values: torch.Tensor,
    t_shape_mask: torch.Tensor | None,
    prefix_ndim: int,
    item_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over trailing dims per sample/token, then over the samples/tokens the mask keeps.

    ``item_weights`` (t-shaped) scale each sample/token's term; the mean still divides by the kept count, so
    weights of 1 give the plain mean.
    """
    per_item = values.flatten(prefix_ndim).mean(-1) if values.ndim > prefix_ndim else values
    if item_weights is not None:
        per_item = per_item * item_weights.to(per_item.dtype)
    if t_shape_mask is None:
        return per_item.mean()
    weight = t_shape_mask.to(per_item.dtype)
    return (per_item * weight).sum() / weight.sum().clamp_min(1.0)


def prediction_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    prefix_ndim: int,
    item_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked (optionally per-item weighted) mean squared error of a prediction; its shape must be the target's."""
    if prediction.shape != target.shape:
        raise ValueError(f"model prediction has shape {tuple(prediction.shape)}, expected {tuple(target.shape)}")
    return masked_mean((target - prediction) ** 2, mask, prefix_ndim, item_weights)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of data in [-1, 1] quantised to 256 bins under a Gaussian (DDPM's decoder, t=0).

    Uses the exact normal CDF (``torch.special.ndtr``) where improved-diffusion used a tanh approximation.
    """
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = torch.special.ndtr(inv_std * (centered + 1.0 / 255.0))
    cdf_min = torch.special.ndtr(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_cdf_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


@dataclass
class PosteriorEstimate:
    """The model's p(x_{t-1} | x_t) and the x_0 / epsilon it implies."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor


class GaussianDiffusion:
    """DDPM with epsilon / v / x0 prediction and fixed or learned (DiT-style) variance.

    Args:
        schedule: beta schedule name.
        num_timesteps: T.
        prediction: what the network predicts: ``epsilon`` (DDPM, DiT), ``v`` (Salimans & Ho) or ``x0``.
        variance: ``fixed_small`` (posterior variance), ``fixed_large`` (beta) or ``learned_range``
            (the network interpolates log-variance between them, Nichol & Dhariwal; DiT's learn_sigma).
        vb_weight: weight of the variational-bound term in the hybrid loss (learned variance only).
        snr_gamma: Min-SNR-gamma loss weighting (Hang et al. 2023): each sample's prediction loss is weighted
            so that it equals ``min(SNR(t), snr_gamma)`` times its x_0 error, whatever the parameterisation
            (epsilon: ``min(SNR, g) / SNR``, v: ``min(SNR, g) / (SNR + 1)``, x0: ``min(SNR, g)``). None (the
            default) trains the unweighted loss. The logged ``mse`` stays unweighted so runs compare.
        loss_space: ``prediction`` (the default) trains the MSE of what the network predicts; ``x0`` the MSE of
            the x_0 that prediction implies, every timestep weighted alike (v: each term times ``1 / (SNR + 1)``).
            With ``prediction="v"`` this keeps v's skip from x_t (at low noise x_0 = x_t minus a small
            correction, so the network need not rebuild a clean latent from scratch, which x0-prediction
            must) and x0-prediction's weighting, which puts more of the loss on the noisy timesteps where
            layout and colour are decided than the v loss's ``SNR + 1`` does (docs/dit.md, "Session 18").
            Not with epsilon-prediction: its x_0 weight, ``1 / SNR``, is unbounded at the last timesteps.
        snr_shift: divide the schedule's SNR at every timestep by ``snr_shift**2`` (1: the schedule as named).
            Above 1, more of training and sampling happens where the noisy input no longer shows where an
            object is or how it moves, so the network has to learn those from its caption: on small latents
            the cosine schedule keeps them visible up to its last few per cent of timesteps (docs/dit.md,
            "Session 19").
        sigma_data: with ``prediction="x0"``, precondition the network as EDM does (Karras et al. 2022, with
            this data standard deviation): x_0 = c_skip x_t / sqrt(alpha_bar) + c_out F, where ``c_skip =
            s^2 SNR / (1 + s^2 SNR)`` and ``c_out = s / sqrt(1 + s^2 SNR)``. At low noise x_0 is mostly the input
            and the network draws only a correction; at high noise it draws x_0 (times ``s``) as plain
            x0-prediction does. ``s = 1`` is v-prediction (F = -v); a smaller ``s`` keeps x0-prediction's
            behaviour over more of the schedule and the skip only for its last, nearly clean steps, where a
            plain x0 network redraws the fine detail it is handed (docs/dit.md, "Session 21"). None (the
            default): plain x0-prediction. The prediction-space loss is then the MSE of F (EDM's weighting);
            ``loss_space="x0"`` keeps x0-prediction's.
        channel_dim: the axis along which a learned-variance output stacks prediction and variance.
        clip_x0: clamp predicted x_0 to [-clip_x0, clip_x0] when sampling (None for latents, as in DiT).
    """

    def __init__(
        self,
        schedule: ScheduleName = "linear",
        num_timesteps: int = 1000,
        prediction: Prediction = "epsilon",
        variance: VarianceType = "fixed_small",
        vb_weight: float = 1.0,
        channel_dim: int = -1,
        clip_x0: float | None = None,
        snr_gamma: float | None = None,
        loss_space: LossSpace = "prediction",
        snr_shift: float = 1.0,
        sigma_data: float | None = None,
    ):
        if prediction not in ("epsilon", "v", "x0"):
            raise ValueError(f"unknown prediction {prediction!r}; expected 'epsilon', 'v' or 'x0'")
        if variance not in ("fixed_small", "fixed_large", "learned_range"):
            raise ValueError(f"unknown variance {variance!r}")
        if snr_gamma is not None and not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be a positive number (or None for no weighting), got {snr_gamma}")
        if loss_space not in ("prediction", "x0"):
            raise ValueError(f"unknown loss_space {loss_space!r}; expected 'prediction' or 'x0'")
        if loss_space == "x0" and prediction == "epsilon":
            raise ValueError(
                "loss_space='x0' needs prediction 'v' or 'x0': an epsilon-prediction's x_0 error weight, 1/SNR, "
                "is unbounded at the last timesteps"
            )
        if loss_space == "x0" and snr_gamma is not None:
            raise ValueError("set snr_gamma or loss_space='x0', not both: each sets the loss's weight per timestep")
        if sigma_data is not None and (prediction != "x0" or not sigma_data > 0):
            raise ValueError(
                f"sigma_data preconditions x0-prediction: it needs prediction='x0' and a positive value, "
                f"got prediction={prediction!r}, sigma_data={sigma_data!r}"
            )
        self.snr_gamma, self.loss_space, self.sigma_data = snr_gamma, loss_space, sigma_data
        self.schedule_name, self.prediction, self.variance = schedule, prediction, variance
        self.vb_weight, self.channel_dim, self.clip_x0 = vb_weight, channel_dim, clip_x0
        self.snr_shift = snr_shift
        self.schedule = NoiseSchedule.from_name(schedule, num_timesteps, snr_shift)

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    @property
    def learned_variance(self) -> bool:
        return self.variance == "learned_range"

    @property
    def output_factor(self) -> int:
        """The network's output channels per input channel."""
        return 2 if self.learned_variance else 1

    def with_schedule(self, schedule: NoiseSchedule) -> GaussianDiffusion:
        """The same process on another (e.g. respaced) schedule."""
        other = object.__new__(GaussianDiffusion)
        other.__dict__.update(self.__dict__)
        other.schedule = schedule
        return other

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The original timesteps the network is conditioned on (differs from t after respacing)."""
        return self.schedule.timesteps.to(t.device)[t]

    def sample_timesteps(
        self, shape: tuple[int, ...], device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.randint(0, self.num_timesteps, shape, device=device, generator=generator)

    # Forward process and posterior -------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        s = self.schedule
        return extract(s.sqrt_alphas_cumprod, t, x0) * x0 + extract(s.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and (clipped) log-variance of q(x_{t-1} | x_t, x_0)."""
        s = self.schedule
        mean = extract(s.posterior_mean_coef1, t, xt) * x0 + extract(s.posterior_mean_coef2, t, xt) * xt
        return mean, extract(s.posterior_variance, t, xt), extract(s.posterior_log_variance_clipped, t, xt)

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x_0."""
        s = self.schedule
        return extract(s.sqrt_alphas_cumprod, t, x0) * noise - extract(s.sqrt_one_minus_alphas_cumprod, t, x0) * x0

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """Per-sample/per-token weights of the prediction loss (None: unweighted): Min-SNR-gamma with
        ``snr_gamma``, the implied x_0's error with ``loss_space="x0"``."""
        if self.snr_gamma is None and self.loss_space == "prediction":
            return None
        alpha_bar = self.schedule.alphas_cumprod.to(t.device)[t]
        snr = alpha_bar / (1.0 - alpha_bar)
        x0_weight = snr.clamp(max=self.snr_gamma) if self.snr_gamma is not None else torch.ones_like(snr)
        # From the x_0 error to the prediction's: x_0 = (x_t - sqrt(1 - a) eps) / sqrt(a) = sqrt(a) x_t - sqrt(1 - a) v.
        if self.prediction == "epsilon":
            return x0_weight / snr
        if self.prediction == "v":
            return x0_weight / (snr + 1.0)
        if self.sigma_data is not None:  # x_0 = skip x_t + out F
            return x0_weight * self._preconditioning(t, snr)[1] ** 2
        return x0_weight

    def _preconditioning(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EDM's (c_skip / sqrt(alpha_bar), c_out) at ``t``, shaped to broadcast against ``like``: x_0 = skip x_t
        + out F. Written in alpha_bar so that neither divides by zero at either end of the schedule."""
        alpha_bar = extract(self.schedule.alphas_cumprod, t, like)
        s2 = self.sigma_data**2
        denominator = (1.0 - alpha_bar) + s2 * alpha_bar
        return s2 * alpha_bar.sqrt() / denominator, (s2 * (1.0 - alpha_bar) / denominator).sqrt()

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "v":
            return self.velocity(x0, noise, t)
        if self.sigma_data is not None:
            skip, out = self._preconditioning(t, x0)
            return (x0 - skip * self.q_sample(x0, t, noise)) / out
        return x0

    def predict_x0(self, prediction: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        if self.prediction == "epsilon":
            return (
                extract(s.sqrt_recip_alphas_cumprod, t, xt) * xt
                - extract(s.sqrt_recipm1_alphas_cumprod, t, xt) * prediction
            )
        if self.prediction == "v":
            return (
                extract(s.sqrt_alphas_cumprod, t, xt) * xt
                - extract(s.sqrt_one_minus_alphas_cumprod, t, xt) * prediction
            )
        if self.sigma_data is not None:
            skip, out = self._preconditioning(t, xt)
            return skip * xt + out * prediction
        return prediction

    def predict_eps(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        return (extract(s.sqrt_recip_alphas_cumprod, t, xt) * xt - x0) / extract(s.sqrt_recipm1_alphas_cumprod, t, xt)

    def split_output(self, model_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prediction, variance values); the latter None for fixed variance."""
        if not self.learned_variance:
            return model_output, None
        if model_output.shape[self.channel_dim] % 2:
            raise ValueError(
                f"learned variance needs an even number of output channels on dim {self.channel_dim}, "
                f"got {tuple(model_output.shape)}"
            )
        prediction, values = model_output.chunk(2, dim=self.channel_dim)
        return prediction, values

    def log_variance(self, values: torch.Tensor | None, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The model's log-variance of p(x_{t-1} | x_t), shaped like ``like`` (or broadcastable to it)."""
        s = self.schedule
        if self.variance == "fixed_small":
            return extract(s.posterior_log_variance_clipped, t, like)
        if self.variance == "fixed_large":
            # beta_t, except at t=0 where the posterior variance of t=1 keeps the log finite (DDPM).
            large = torch.cat([s.posterior_variance[1:2], s.betas[1:]]) if s.num_timesteps > 1 else s.betas
            return extract(large.log(), t, like)
        min_log = extract(s.posterior_log_variance_clipped, t, like)
        max_log = extract(s.betas.log(), t, like)
        # Clamped so the variance always lies in [posterior variance, beta], whatever the network emits.
        frac = ((values + 1.0) / 2.0).clamp(0.0, 1.0)
        return frac * max_log + (1.0 - frac) * min_log

    def p_mean_variance(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> PosteriorEstimate:
        prediction, values = self.split_output(model_output)
        log_variance = self.log_variance(values, t, xt)
        raw_x0 = self.predict_x0(prediction, xt, t)
        # Clipping constrains x_0 only; epsilon stays the network's (diffusers' convention for DDIM).
        pred_eps = prediction if self.prediction == "epsilon" else self.predict_eps(raw_x0, xt, t)
        pred_x0 = raw_x0 if self.clip_x0 is None else raw_x0.clamp(-self.clip_x0, self.clip_x0)
        mean, _, _ = self.q_posterior(pred_x0, xt, t)
        log_variance = log_variance.expand_as(xt)
        return PosteriorEstimate(mean, log_variance.exp(), log_variance, pred_x0, pred_eps)

    # Losses ------------------------------------------------------------------------------------------
    def vb_terms(self, model_output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Elementwise variational-bound term in bits: KL(q || p) for t > 0, decoder NLL at t = 0."""
        true_mean, _, true_log_variance = self.q_posterior(x0, xt, t)
        estimate = self.p_mean_variance(model_output, xt, t)
        kl = normal_kl(true_mean, true_log_variance, estimate.mean, estimate.log_variance) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, estimate.mean, 0.5 * estimate.log_variance) / math.log(2.0)
        first = (t == 0).reshape(*t.shape, *([1] * (x0.ndim - t.ndim)))
        return torch.where(first, nll, kl)

    def training_losses(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Scalar losses over the kept samples/tokens: ``loss`` = ``mse`` (Min-SNR weighted with ``snr_gamma``)
        (+ ``vb_weight`` x ``vb``).

        Args:
            model_fn: the network, called once with (x_t, model timesteps).
            x0: clean data, ``t``'s shape followed by the feature dims.
            t: per-sample or per-token timesteps.
            noise: the Gaussian noise (drawn when None).
            mask: t-shaped; false entries (padding, dropped tokens) count in no loss.
        """
        noise = torch.randn_like(x0) if noise is None else noise
        xt = self.q_sample(x0, t, noise)
        model_output = model_fn(xt, self.model_timesteps(t))
        prediction, values = self.split_output(model_output)
        target = self.target(x0, noise, t)
        mse = prediction_mse(prediction, target, mask, t.ndim)
        weights = self.loss_weights(t)
        simple = mse if weights is None else prediction_mse(prediction, target, mask, t.ndim, weights)
        terms = {"mse": mse, "loss": simple}
        if values is not None:
            # The bound trains the variance only: the mean is learned by the simple loss (stop-gradient).
            frozen = torch.cat([prediction.detach(), values], dim=self.channel_dim)
            vb = masked_mean(self.vb_terms(frozen, x0, xt, t), mask, t.ndim)
            terms["vb"] = vb
            terms["loss"] = simple + self.vb_weight * vb
        return terms
