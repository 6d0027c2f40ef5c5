"""Autoencoder losses beyond reconstruction + KL: an optional 3-D PatchGAN (no pretrained weights needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator3D(nn.Module):
    """A 3-D PatchGAN: strided 3-D convolutions giving one real/fake logit per spacetime patch.

    Args:
        channels: width of the first layer (doubled per layer, at most 8x).
        layers: strided layers; each halves H and W (time keeps its length: clips may be 1 frame).
    """

    def __init__(self, channels: int = 32, layers: int = 3):
        super().__init__()
        self.config = {"channels": channels, "layers": layers}
        modules: list[nn.Module] = []
        width_in = 3
        for i in range(layers):
            width = channels * min(2**i, 8)
            modules += [
                nn.Conv3d(width_in, width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)),
                nn.GroupNorm(min(8, width), width) if i else nn.Identity(),
                nn.LeakyReLU(0.2),
            ]
            width_in = width
        modules.append(nn.Conv3d(width_in, 1, 3, padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
