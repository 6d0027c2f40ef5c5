import math

import pytest
import torch

from videodiff.diffusion.schedules import NoiseSchedule, spaced_timesteps


def test_linear_schedule_is_ddpms_and_scales_with_t():
    s = NoiseSchedule.from_name("linear", 1000)
    assert s.betas.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    short = NoiseSchedule.from_name("linear", 250)
    assert short.betas[0].item() == pytest.approx(4e-4) and short.betas[-1].item() == pytest.approx(0.08)


def test_cosine_schedule_matches_its_closed_form():
    T, s_ = 1000, 0.008
    sched = NoiseSchedule.from_name("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2
    for t in (0, 10, 500, 900):
        assert sched.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert sched.betas.max().item() <= 0.999


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [1, 7, 123, 999])
def test_derived_quantities_against_plain_python(name, t):
    s = NoiseSchedule.from_name(name, 1000)
    betas = s.betas.tolist()
    alpha_bar = math.prod(1 - b for b in betas[: t + 1])
    alpha_bar_prev = math.prod(1 - b for b in betas[:t])
    beta = betas[t]
    assert s.alphas_cumprod[t].item() == pytest.approx(alpha_bar, rel=1e-12)
    assert s.posterior_variance[t].item() == pytest.approx(beta * (1 - alpha_bar_prev) / (1 - alpha_bar), rel=1e-12)
    assert s.posterior_mean_coef1[t].item() == pytest.approx(math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar))
    assert s.posterior_mean_coef2[t].item() == pytest.approx(
        math.sqrt(1 - beta) * (1 - alpha_bar_prev) / (1 - alpha_bar)
    )
    assert s.sqrt_recipm1_alphas_cumprod[t].item() == pytest.approx(math.sqrt(1 / alpha_bar - 1))


def test_posterior_variance_at_zero_and_its_clipped_log():
    s = NoiseSchedule.from_name("linear", 1000)
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_log_variance_clipped[0].item() == pytest.approx(math.log(s.posterior_variance[1].item()))
    assert torch.isfinite(s.posterior_log_variance_clipped).all()


def test_respacing_keeps_cumulative_products_and_maps_timesteps():
    s = NoiseSchedule.from_name("cosine", 1000)
    keep = spaced_timesteps(1000, 25, "linspace")
    r = s.respace(keep)
    assert r.num_timesteps == 25 and r.timesteps.tolist() == keep
    torch.testing.assert_close(r.alphas_cumprod, s.alphas_cumprod[keep], rtol=1e-7, atol=0)
    twice = r.respace([0, 10, 24])
    assert twice.timesteps.tolist() == [keep[0], keep[10], keep[24]]
    torch.testing.assert_close(twice.alphas_cumprod, s.alphas_cumprod[twice.timesteps], rtol=1e-7, atol=0)


def test_spacings():
    assert spaced_timesteps(1000, 10, "leading") == list(range(0, 1000, 100))  # diffusers' default
    lin = spaced_timesteps(1000, 50, "linspace")
    assert lin[0] == 0 and lin[-1] == 999 and len(lin) == 50
    trail = spaced_timesteps(1000, 10, "trailing")
    assert trail[-1] == 999 and len(trail) == 10
    assert spaced_timesteps(1000, 1000, "linspace") == list(range(1000))
    with pytest.raises(ValueError, match="steps must be in"):
        spaced_timesteps(100, 0)


def test_invalid_schedules():
    with pytest.raises(ValueError, match="unknown beta schedule"):
        NoiseSchedule.from_name("quadratic", 10)
    with pytest.raises(ValueError, match="needs num_timesteps >= 21"):
        NoiseSchedule.from_name("linear", 20)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        NoiseSchedule(torch.tensor([0.0, 0.1]))


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("shift", [0.5, 2.0, 4.0])
def test_snr_shift_divides_every_snr_by_its_square(name, shift):
    base, shifted = NoiseSchedule.from_name(name, 1000), NoiseSchedule.from_name(name, 1000, snr_shift=shift)
    snr = lambda s: s.alphas_cumprod / (1 - s.alphas_cumprod)
    # The cosine schedule clamps its last beta (0.999), and so may the shifted one: compare where neither does.
    unclamped = (base.betas < 0.999) & (shifted.betas < 0.999)
    torch.testing.assert_close(snr(shifted)[unclamped], snr(base)[unclamped] / shift**2, rtol=1e-9, atol=0)
    assert bool(((shifted.alphas_cumprod < base.alphas_cumprod) == (shift > 1))[unclamped].all())
    assert torch.equal(NoiseSchedule.from_name(name, 1000, snr_shift=1.0).betas, base.betas)
    with pytest.raises(ValueError, match="SNR shift must be a positive number"):
        NoiseSchedule.from_name(name, 1000, snr_shift=0.0)
