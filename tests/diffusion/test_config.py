import pytest
import torch

from videodiff.diffusion import DDIMSampler, DDPMSampler, EulerSampler, GaussianDiffusion, RectifiedFlow
from videodiff.diffusion.config import build_process, make_sampler, process_config


@pytest.mark.parametrize(
    "process",
    [
        GaussianDiffusion("cosine", 200, prediction="v", variance="learned_range", vb_weight=0.5, clip_x0=1.0),
        GaussianDiffusion("linear", 100, prediction="epsilon", snr_gamma=5.0),
        GaussianDiffusion("cosine", 100, prediction="v", loss_space="x0"),
        GaussianDiffusion("cosine", 100, prediction="x0", snr_shift=3.0),
        GaussianDiffusion("cosine", 100, prediction="x0", sigma_data=0.5, loss_space="x0"),
        RectifiedFlow(timestep_sampling="uniform", logit_mean=0.3, logit_std=0.7, shift=3.0, timestep_scale=10.0),
    ],
)
def test_a_process_survives_its_config(process):
    config = process_config(process)
    rebuilt = build_process(config)
    assert type(rebuilt) is type(process) and process_config(rebuilt) == config
    # The same settings mean the same training targets and timesteps.
    x0, noise = torch.randn(4, 3), torch.randn(4, 3)
    t = process.sample_timesteps((4,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rebuilt.sample_timesteps((4,), generator=torch.Generator().manual_seed(0)), t)
    torch.testing.assert_close(rebuilt.q_sample(x0, t, noise), process.q_sample(x0, t, noise))
    if isinstance(process, GaussianDiffusion):  # and the same loss weights
        weights, rebuilt_weights = process.loss_weights(t), rebuilt.loss_weights(t)
        assert (weights is None) == (rebuilt_weights is None)
        if weights is not None:
            torch.testing.assert_close(rebuilt_weights, weights)


def test_a_config_without_a_process_is_gaussian_and_an_unknown_one_is_an_error():
    """Checkpoints written before rectified flow was supported hold only the Gaussian settings."""
    old = {k: v for k, v in process_config(GaussianDiffusion("cosine", 100)).items() if k != "process"}
    assert isinstance(build_process(old), GaussianDiffusion) and build_process(old).num_timesteps == 100
    with pytest.raises(ValueError, match="unknown process 'edm'"):
        build_process({"process": "edm"})


def test_auto_picks_the_process_own_sampler_and_a_mismatch_says_what_to_use():
    flow, gaussian = RectifiedFlow(), GaussianDiffusion()
    assert isinstance(make_sampler("auto", flow, 7), EulerSampler) and make_sampler("auto", flow, 7).steps == 7
    ddim = make_sampler("auto", gaussian, 5, eta=0.5)
    assert isinstance(ddim, DDIMSampler) and (ddim.steps, ddim.eta) == (5, 0.5)
    assert isinstance(make_sampler("ddpm", gaussian, 5), DDPMSampler)
    with pytest.raises(ValueError, match="diffusion is RectifiedFlow; use sampler 'auto' \\(or 'euler'\\)"):
        make_sampler("ddim", flow, 5)
    with pytest.raises(ValueError, match="diffusion is GaussianDiffusion; use sampler 'auto' \\(or 'ddim'\\)"):
        make_sampler("euler", gaussian, 5)
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        make_sampler("heun", gaussian, 5)
