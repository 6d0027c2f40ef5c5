"""End to end on a toy problem: train a tiny MLP on a 2-D mixture of Gaussians, sample it back."""

import math

import pytest
import torch
from torch import nn

from videodiff.diffusion import DDIMSampler, DDPMSampler, EulerSampler, GaussianDiffusion, RectifiedFlow

CENTERS = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])


def mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    which = torch.randint(0, 4, (n,), generator=generator)
    return CENTERS[which] + 0.2 * torch.randn(n, 2, generator=generator)


class TinyDenoiser(nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + 32, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2)
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(1000.0) * torch.arange(16) / 16)
        angles = t.float()[:, None] * freqs[None]
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


def train(process, steps: int = 800) -> TinyDenoiser:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = TinyDenoiser()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x0 = mixture(512, generator)
        t = process.sample_timesteps((512,), generator=generator)
        loss = process.training_losses(model, x0, t)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


def assert_mixture(samples: torch.Tensor) -> None:
    nearest = torch.cdist(samples, CENTERS).argmin(dim=1)
    for k in range(4):
        members = samples[nearest == k]
        assert 0.15 < len(members) / len(samples) < 0.35, f"mode {k} holds {len(members)} of {len(samples)}"
        assert torch.linalg.norm(members.mean(0) - CENTERS[k]) < 0.25, f"mode {k} mean {members.mean(0)}"
    assert torch.cdist(samples, CENTERS).min(dim=1).values.median() < 0.5  # on the modes, not between them


@pytest.fixture(scope="module")
def ddpm_model():
    process = GaussianDiffusion("linear", 100)
    return process, train(process)


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDIMSampler(steps=25)], ids=["ddpm", "ddim"])
def test_gaussian_diffusion_learns_the_mixture(ddpm_model, sampler):
    process, model = ddpm_model
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        samples = sampler.sample(model, noise, process, generator=torch.Generator().manual_seed(2))
    assert_mixture(samples)


def test_rectified_flow_learns_the_mixture():
    process = RectifiedFlow()
    model = train(process)
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_mixture(EulerSampler(steps=50).sample(model, noise, process))
