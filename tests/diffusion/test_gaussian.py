import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from videodiff.diffusion import GaussianDiffusion


def test_q_sample_statistics_by_monte_carlo():
    d = GaussianDiffusion("linear", 1000)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.7, -0.3], dtype=torch.float64)
    for step in (0, 250, 999):
        noise = torch.randn(200_000, 2, generator=gen, dtype=torch.float64)
        t = torch.full((200_000,), step)
        xt = d.q_sample(x0.expand(200_000, 2), t, noise)
        ab = d.schedule.alphas_cumprod[step]
        torch.testing.assert_close(xt.mean(0), ab.sqrt() * x0, atol=5e-3, rtol=0)
        torch.testing.assert_close(xt.var(0), (1 - ab).expand(2), atol=5e-3 * (1 - ab).item() + 1e-6, rtol=0)


@pytest.mark.parametrize("step", [1, 50, 999])
def test_posterior_equals_bayes_rule_on_gaussians(step):
    d = GaussianDiffusion("cosine", 1000)
    s = d.schedule
    x0, xt = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    t = torch.full((5,), step)
    mean, var, _ = d.q_posterior(x0, xt, t)
    # q(x_{t-1}|x_t, x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x_0, 1 - ab_{t-1})
    a, b, ab_prev = s.alphas[step], s.betas[step], s.alphas_cumprod_prev[step]
    precision = a / b + 1 / (1 - ab_prev)
    expected_mean = (a.sqrt() / b * xt + ab_prev.sqrt() / (1 - ab_prev) * x0) / precision
    torch.testing.assert_close(mean, expected_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var.squeeze(), (1 / precision).expand(5), rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    "prediction, extra",
    [("epsilon", {}), ("v", {}), ("x0", {}), ("x0", {"sigma_data": 0.5}), ("x0", {"sigma_data": 3.0})],
)
def test_parameterisations_invert(prediction, extra):
    d = GaussianDiffusion("linear", 1000, prediction=prediction, **extra)
    x0, noise = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    xt = d.q_sample(x0, t, noise)
    target = d.target(x0, noise, t)
    torch.testing.assert_close(d.predict_x0(target, xt, t), x0, rtol=1e-9, atol=1e-9)
    estimate = d.p_mean_variance(target, xt, t)
    torch.testing.assert_close(estimate.pred_eps[1:], noise[1:], rtol=1e-7, atol=1e-7)


def test_per_token_timesteps_equal_a_per_element_loop():
    d = GaussianDiffusion("linear", 1000)
    x0, noise = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    t = torch.randint(0, 1000, (2, 5))
    xt = d.q_sample(x0, t, noise)
    for r in range(2):
        for k in range(5):
            single = d.q_sample(x0[r, k][None], t[r, k][None], noise[r, k][None])
            torch.testing.assert_close(xt[r, k], single[0])
    with pytest.raises(ValueError, match="leading dims"):
        d.q_sample(x0, t[:, :3], noise)


def _model(out_channels_factor=1, bias=0.0):
    def fn(x, t):
        out = 0.5 * x + bias
        return torch.cat([out, torch.tanh(x)], dim=-1) if out_channels_factor == 2 else out

    return fn


@pytest.mark.parametrize("variance", ["fixed_small", "learned_range"])
def test_mask_keeps_padding_out_of_every_loss(variance):
    d = GaussianDiffusion("linear", 100, variance=variance)
    x0, noise = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    t = torch.randint(0, 100, (2, 6))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    model = _model(d.output_factor)
    losses = d.training_losses(model, x0, t, noise, mask)
    x0_changed = torch.where(mask[..., None], x0, torch.full_like(x0, 99.0))
    again = d.training_losses(model, x0_changed, t, noise, mask)
    for key in losses:
        torch.testing.assert_close(losses[key], again[key])
    kept = d.training_losses(model, x0[mask][None], t[mask][None], noise[mask][None])
    for key in losses:
        torch.testing.assert_close(losses[key], kept[key])


def test_vb_is_zero_for_the_true_posterior_and_matches_brute_force_kl():
    d = GaussianDiffusion("linear", 1000, variance="learned_range", channel_dim=1)
    x0, noise = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([1, 5, 300, 999])
    xt = d.q_sample(x0, t, noise)
    # A perfect model: the true noise, and variance values -1 (the posterior variance end of the range).
    perfect = torch.cat([noise, -torch.ones_like(noise)], dim=1)
    assert d.vb_terms(perfect, x0, xt, t).abs().max() < 1e-8
    values = torch.rand(4, 3, dtype=torch.float64) * 2 - 1
    output = torch.cat([noise + 0.3 * torch.randn_like(noise), values], dim=1)
    vb = d.vb_terms(output, x0, xt, t)
    true_mean, true_var, _ = d.q_posterior(x0, xt, t)
    estimate = d.p_mean_variance(output, xt, t)
    brute = kl_divergence(
        Normal(true_mean, true_var.expand_as(x0).sqrt()), Normal(estimate.mean, estimate.variance.sqrt())
    )
    torch.testing.assert_close(vb, brute / math.log(2), rtol=1e-8, atol=1e-10)
    assert (vb >= 0).all()


def test_decoder_nll_at_t0_matches_the_normal_cdf():
    d = GaussianDiffusion("linear", 1000, variance="learned_range", channel_dim=1)
    x0 = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1.0]], dtype=torch.float64)
    t = torch.zeros(1, dtype=torch.long)
    xt = d.q_sample(x0, t, torch.randn_like(x0))
    output = torch.cat([torch.randn_like(x0), torch.zeros_like(x0)], dim=1)
    nll = d.vb_terms(output, x0, xt, t)
    estimate = d.p_mean_variance(output, xt, t)
    normal = Normal(estimate.mean, estimate.variance.sqrt())
    upper = torch.where(x0 > 0.999, torch.ones_like(x0), normal.cdf(x0 + 1 / 255))
    lower = torch.where(x0 < -0.999, torch.zeros_like(x0), normal.cdf(x0 - 1 / 255))
    torch.testing.assert_close(nll, -torch.log(upper - lower) / math.log(2), rtol=1e-6, atol=1e-8)


def test_learned_variance_stays_between_posterior_variance_and_beta():
    d = GaussianDiffusion("cosine", 1000, variance="learned_range", channel_dim=1)
    s = d.schedule
    x = torch.randn(1000, 2, dtype=torch.float64)
    t = torch.randint(1, 1000, (1000,))
    values = torch.randn(1000, 2, dtype=torch.float64) * 3  # also far outside [-1, 1]
    estimate = d.p_mean_variance(torch.cat([x, values], dim=1), x, t)
    low, high = s.posterior_variance[t][:, None], s.betas[t][:, None]
    assert (estimate.variance >= low * (1 - 1e-9)).all() and (estimate.variance <= high * (1 + 1e-9)).all()


def test_hybrid_loss_gradients_are_stopped_on_the_mean():
    d = GaussianDiffusion("linear", 100, variance="learned_range", channel_dim=-1, vb_weight=1.0)
    x0, noise = torch.randn(8, 4), torch.randn(8, 4)
    t = torch.randint(1, 100, (8,))
    prediction = torch.zeros(8, 4, requires_grad=True)
    values = torch.zeros(8, 4, requires_grad=True)
    losses = d.training_losses(lambda x, ts: torch.cat([prediction, values], -1), x0, t, noise)
    (grad_pred_vb,) = torch.autograd.grad(losses["vb"], prediction, retain_graph=True, allow_unused=True)
    assert grad_pred_vb is None or grad_pred_vb.abs().max() == 0
    grad_values_mse = torch.autograd.grad(losses["mse"], values, allow_unused=True, retain_graph=True)[0]
    assert grad_values_mse is None or grad_values_mse.abs().max() == 0
    grad_values, grad_pred = torch.autograd.grad(losses["loss"], [values, prediction])
    assert grad_values.abs().sum() > 0 and grad_pred.abs().sum() > 0
    torch.testing.assert_close(losses["loss"], losses["mse"] + losses["vb"])


@pytest.mark.parametrize(
    "prediction, weighting",
    [
        ("epsilon", {"snr_gamma": 5.0}),
        ("v", {"snr_gamma": 5.0}),
        ("x0", {"snr_gamma": 5.0}),
        ("v", {"loss_space": "x0"}),
        ("x0", {"loss_space": "x0"}),
        ("x0", {"loss_space": "x0", "sigma_data": 0.5}),
        ("x0", {"snr_gamma": 5.0, "sigma_data": 0.5}),
    ],
)
def test_weighted_losses_are_their_x0_error_definitions_in_every_parameterisation(prediction, weighting):
    """Against the definitions, per sample: Min-SNR-gamma (Hang et al.) is min(SNR(t), gamma) x ||x0 - x0_hat||^2,
    ``loss_space="x0"`` is ||x0 - x0_hat||^2 itself, whatever the network predicts."""
    d = GaussianDiffusion("cosine", 1000, prediction=prediction, **weighting)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 8, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(2, 8, 3, generator=gen, dtype=torch.float64)
    x0_hat = x0 + 0.3 * torch.randn(2, 8, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([[1, 20, 100, 300, 500, 700, 900, 999]] * 2)  # SNR from far above gamma to far below
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False

    def network(xt, timesteps):  # a model whose x0 estimate is x0_hat, in the parameterisation's own terms
        ab = d.schedule.alphas_cumprod[timesteps][..., None]
        eps_hat = (xt - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
        if "sigma_data" in weighting:  # EDM: x0_hat = c_skip x + c_out F on x = xt / sqrt(ab), sigma^2 = 1 / SNR
            sd, sigma2 = weighting["sigma_data"], (1 - ab) / ab
            c_skip, c_out = sd**2 / (sigma2 + sd**2), (sigma2.sqrt() * sd) / (sigma2 + sd**2).sqrt()
            return (x0_hat - c_skip * xt / ab.sqrt()) / c_out
        return {"epsilon": eps_hat, "v": ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat, "x0": x0_hat}[prediction]

    losses = d.training_losses(network, x0, t, noise, mask)
    ab = d.schedule.alphas_cumprod[t]
    snr = ab / (1 - ab)
    gamma = weighting.get("snr_gamma")
    weight = torch.ones_like(snr) if gamma is None else torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64))
    per_sample = weight * ((x0 - x0_hat) ** 2).mean(-1)
    torch.testing.assert_close(losses["loss"], per_sample[mask].mean(), rtol=1e-5, atol=0)
    # The logged mse stays the unweighted one, so weighted and unweighted runs compare.
    preconditioning = {k: v for k, v in weighting.items() if k == "sigma_data"}
    plain = GaussianDiffusion("cosine", 1000, prediction=prediction, **preconditioning).training_losses(
        network, x0, t, noise, mask
    )
    torch.testing.assert_close(losses["mse"], plain["mse"])
    torch.testing.assert_close(plain["loss"], plain["mse"])
    if weighting != {"loss_space": "x0"} or prediction != "x0":  # x0's own loss is already the x0 error
        assert not torch.allclose(losses["loss"], plain["loss"])


def test_sigma_data_one_is_v_prediction_and_small_sigma_data_skips_only_at_low_noise():
    """EDM's preconditioning with sigma_data = 1 on a variance-preserving process is v-prediction with F = -v
    (same x_0 from the same x_t, same training loss); with a small sigma_data the network's output carries the
    x_0 estimate until the last, nearly clean timesteps."""
    edm = GaussianDiffusion("cosine", 1000, prediction="x0", sigma_data=1.0)
    v = GaussianDiffusion("cosine", 1000, prediction="v")
    gen = torch.Generator().manual_seed(1)
    x0, noise, out = (torch.randn(7, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 5, 50, 300, 600, 900, 999])
    xt = v.q_sample(x0, t, noise)
    torch.testing.assert_close(edm.predict_x0(-out, xt, t), v.predict_x0(out, xt, t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(edm.target(x0, noise, t), -v.target(x0, noise, t), rtol=1e-9, atol=1e-9)
    losses = [d.training_losses(lambda x, s: x * 0.3, x0, t, noise)["loss"] for d in (v, edm)]
    assert not torch.allclose(losses[0], losses[1])  # one output read as v and as F = -v: different x_0...
    losses_neg = edm.training_losses(lambda x, s: -x * 0.3, x0, t, noise)["loss"]
    torch.testing.assert_close(losses_neg, losses[0])  # ...negated, the same x_0 and the same loss
    small = GaussianDiffusion("cosine", 1000, prediction="x0", sigma_data=0.25, snr_shift=4.0)
    ab = small.schedule.alphas_cumprod

    def input_share(step: int) -> float:  # c_skip: x_0 from an x_t of sqrt(alpha_bar) with F = 0
        return small.predict_x0(torch.zeros(1, 1), ab[step].sqrt().reshape(1, 1), torch.tensor([step])).item()

    assert input_share(5) > 0.8
    assert input_share(900) < 0.01


def test_errors():
    with pytest.raises(ValueError, match="snr_gamma must be a positive number"):
        GaussianDiffusion(snr_gamma=0.0)
    with pytest.raises(ValueError, match="unknown prediction"):
        GaussianDiffusion(prediction="score")
    with pytest.raises(ValueError, match="unknown loss_space"):
        GaussianDiffusion(prediction="v", loss_space="eps")
    with pytest.raises(ValueError, match="needs prediction 'v' or 'x0'"):
        GaussianDiffusion(prediction="epsilon", loss_space="x0")
    with pytest.raises(ValueError, match="not both"):
        GaussianDiffusion(prediction="v", loss_space="x0", snr_gamma=5.0)
    with pytest.raises(ValueError, match="sigma_data preconditions x0-prediction"):
        GaussianDiffusion(prediction="v", sigma_data=0.5)
    with pytest.raises(ValueError, match="sigma_data preconditions x0-prediction"):
        GaussianDiffusion(prediction="x0", sigma_data=0.0)
    d = GaussianDiffusion(variance="learned_range", channel_dim=1)
    with pytest.raises(ValueError, match="even number of output channels"):
        d.split_output(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="model prediction has shape"):
        GaussianDiffusion("linear", 100).training_losses(
            lambda x, t: x[:, :1], torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
        )
