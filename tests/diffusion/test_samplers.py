import math

import pytest
import torch

from videodiff.diffusion import (
    DDIMSampler,
    DDPMSampler,
    EulerSampler,
    GaussianDiffusion,
    RectifiedFlow,
    classifier_free_guidance,
    spaced_timesteps,
)
from videodiff.diffusion.samplers import edit_steps


def gaussian_eps_model(diffusion: GaussianDiffusion, mu: float, var: float):
    """The exact epsilon-predictor for 1-D data x0 ~ N(mu, var): E[eps | x_t] in closed form."""
    ab = diffusion.schedule.alphas_cumprod

    def fn(x, t):
        a = ab[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        # x_t = sqrt(a) x0 + sqrt(1-a) eps, jointly Gaussian with eps: E[eps|x_t] = cov / var_xt * (x_t - mean)
        var_xt = a * var + (1 - a)
        return (1 - a).sqrt() / var_xt * (x - a.sqrt() * mu)

    return fn


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDIMSampler(steps=250), DDIMSampler(steps=1000, eta=1.0)])
def test_exact_model_samples_the_data_distribution(sampler):
    # With the exact epsilon of N(1.5, 0.5^2) data, the samplers must return that distribution up to their
    # discretisation error (which shrinks with the number of steps: DDIM 50 steps gives var 0.227 here).
    d = GaussianDiffusion("linear", 1000)
    noise = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sampler.sample(gaussian_eps_model(d, 1.5, 0.25), noise, d, generator=torch.Generator().manual_seed(1))
    assert abs(x.mean().item() - 1.5) < 0.02 and abs(x.var().item() - 0.25) < 0.01


def test_ddim_at_eta_one_is_ddpm():
    d = GaussianDiffusion("cosine", 1000)
    model = gaussian_eps_model(d, 0.3, 2.0)
    noise = torch.randn(64, 2, dtype=torch.float64)
    ddpm = DDPMSampler(steps=40).sample(model, noise, d, generator=torch.Generator().manual_seed(5))
    ddim = DDIMSampler(steps=40, eta=1.0).sample(model, noise, d, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)


def test_deterministic_given_a_generator():
    d = GaussianDiffusion("linear", 100)
    model = gaussian_eps_model(d, 0.0, 1.0)
    noise = torch.randn(4, 3)
    run = lambda seed: DDPMSampler(steps=20).sample(model, noise, d, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    ddim = DDIMSampler(steps=10)
    assert torch.equal(ddim.sample(model, noise, d), ddim.sample(model, noise, d, progress=True))


def test_per_token_timesteps_in_sampling():
    d = GaussianDiffusion("linear", 100)
    seen = []

    def model(x, t):
        seen.append(t.shape)
        return torch.zeros_like(x)

    DDIMSampler(steps=5).sample(model, torch.randn(2, 7, 4), d, t_dims=2)
    assert seen == [torch.Size([2, 7])] * 5


def test_respaced_ddpm_conditions_the_model_on_original_timesteps():
    d = GaussianDiffusion("linear", 1000)
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    DDPMSampler(steps=10).sample(model, torch.randn(2, 3), d)
    assert seen == sorted(seen, reverse=True) and seen[0] == 999 and seen[-1] == 0 and len(seen) == 10


def test_guidance_extrapolates_every_channel():
    d = GaussianDiffusion("linear", 100, channel_dim=1)
    cond = lambda x, t: torch.ones_like(x)
    uncond = lambda x, t: torch.zeros_like(x)
    x = torch.randn(2, 4, 3, 3)
    t = torch.zeros(2, dtype=torch.long)
    assert torch.equal(classifier_free_guidance(cond, uncond, 4.0, d)(x, t), torch.full_like(x, 4.0))
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0, d)(x, t), cond(x, t))
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0, d)(x, t), uncond(x, t))


def test_guidance_keeps_the_conditional_variance():
    d = GaussianDiffusion("linear", 100, variance="learned_range", channel_dim=1)
    cond = lambda x, t: torch.cat([torch.ones_like(x), torch.full_like(x, 0.5)], 1)
    uncond = lambda x, t: torch.cat([torch.zeros_like(x), torch.full_like(x, -0.5)], 1)
    out = classifier_free_guidance(cond, uncond, 3.0, d)(torch.randn(1, 4, 2, 2), torch.zeros(1, dtype=torch.long))
    assert torch.equal(out[:, :4], torch.full((1, 4, 2, 2), 3.0)) and torch.equal(
        out[:, 4:], torch.full((1, 4, 2, 2), 0.5)
    )


def test_samplers_refuse_the_wrong_process():
    with pytest.raises(TypeError, match="use EulerSampler"):
        DDIMSampler(steps=2).sample(lambda x, t: x, torch.zeros(1, 1), RectifiedFlow())
    with pytest.raises(TypeError, match="integrates a RectifiedFlow"):
        EulerSampler(2).sample(lambda x, t: x, torch.zeros(1, 1), GaussianDiffusion("linear", 100))


def gaussian_velocity_model(flow: RectifiedFlow, mu: float, var: float):
    """The exact velocity E[noise - x0 | x_t] for x0 ~ N(mu, var), x_t = (1-t) x0 + t noise."""

    def fn(x, model_t):
        t = (model_t / flow.timestep_scale).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        mean_xt, var_xt = (1 - t) * mu, (1 - t) ** 2 * var + t**2
        cov_v = t - (1 - t) * var  # Cov(noise - x0, x_t)
        return (-mu) + cov_v / var_xt * (x - mean_xt)

    return fn


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_on_the_exact_velocity_recovers_the_distribution(shift):
    flow = RectifiedFlow(shift=shift)
    noise = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = EulerSampler(steps=100).sample(gaussian_velocity_model(flow, -0.5, 0.36), noise, flow)
    assert abs(x.mean().item() + 0.5) < 0.02 and abs(x.std().item() - 0.6) < 0.02


def test_flow_path_timesteps_and_loss():
    flow = RectifiedFlow(timestep_sampling="logit_normal")
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(flow.q_sample(x0, torch.zeros(3), noise), x0)
    torch.testing.assert_close(flow.q_sample(x0, torch.ones(3), noise), noise)
    t = flow.sample_timesteps((10_000,), generator=torch.Generator().manual_seed(0))
    assert t.min() > 0 and t.max() < 1 and abs(t.mean().item() - 0.5) < 0.02
    shifted = RectifiedFlow(shift=3.0).sample_timesteps((10_000,), generator=torch.Generator().manual_seed(0))
    assert shifted.mean() > t.mean() + 0.1  # more noise
    perfect = lambda x, mt: noise - x0
    assert flow.training_losses(perfect, x0, t[:3], noise)["loss"].item() == pytest.approx(0.0, abs=1e-12)
    mask = torch.tensor([True, False, True])
    losses = flow.training_losses(lambda x, mt: torch.zeros_like(x), x0, t[:3], noise, mask)
    assert losses["loss"].item() == pytest.approx(((noise - x0)[mask] ** 2).mean().item(), rel=1e-6)
    assert math.isclose(flow.model_timesteps(torch.tensor(0.25)).item(), 250.0)


def x0_oracle_eps(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """The epsilon-predictor that knows the data: at every (original) timestep its x_0 estimate is ``x0``."""
    ab = diffusion.schedule.alphas_cumprod

    def fn(x, t):
        a = ab[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    return fn


@pytest.mark.parametrize("sampler", [DDIMSampler(steps=50), DDIMSampler(steps=50, eta=1.0), DDPMSampler(steps=50)])
@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0])
def test_edit_starts_where_its_last_steps_begin_and_an_oracle_returns_the_data(sampler, strength):
    d = GaussianDiffusion("cosine", 1000)
    x0, noise = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    oracle, calls = x0_oracle_eps(d, x0), []
    record = lambda x, t: calls.append((x.clone(), int(t[0]))) or oracle(x, t)
    out = sampler.edit(record, x0, noise, d, strength, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=1e-9, atol=1e-9)
    # It runs the last round(strength * 50) of the sampler's 50 steps, from x0 noised to the first of them.
    count = round(strength * 50)
    assert len(calls) == count
    first_x, first_t = calls[0]
    assert first_t == int(spaced_timesteps(1000, 50, "linspace")[count - 1])
    a = d.schedule.alphas_cumprod[first_t]
    torch.testing.assert_close(first_x, a.sqrt() * x0 + (1 - a).sqrt() * noise)


def test_euler_edit_of_a_straight_path_returns_the_data_and_at_full_strength_is_sampling():
    flow = RectifiedFlow(shift=2.0)
    x0, noise = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    times = []
    velocity = lambda x, t: times.append(float(t[0])) or (noise - x0)  # the straight path's exact velocity
    torch.testing.assert_close(EulerSampler(steps=20).edit(velocity, x0, noise, flow, 0.3), x0)
    assert len(times) == 6
    start = flow.shift_time(torch.tensor([6 / 20], dtype=torch.float64))  # the last 6 of 20 steps begin at t = 0.3
    assert times[0] == pytest.approx(float(flow.model_timesteps(start)[0]))
    model = gaussian_velocity_model(flow, 0.2, 0.5)
    full = EulerSampler(steps=20).edit(model, x0, noise, flow, 1.0)
    torch.testing.assert_close(full, EulerSampler(steps=20).sample(model, noise, flow))


def test_edit_strength_must_be_a_fraction_of_the_steps():
    d = GaussianDiffusion("linear", 100)
    for strength in (0.0, -0.2, 1.5):
        with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
            DDIMSampler(steps=10).edit(lambda x, t: x, torch.zeros(1, 1), torch.zeros(1, 1), d, strength)
    assert edit_steps(50, 0.001) == 1 and edit_steps(50, 0.5) == 25 and edit_steps(50, 1.0) == 50
