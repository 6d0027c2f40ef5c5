"""The Fréchet distance between two Gaussians, the core of FID and FVD (pure; float64 throughout)."""

from __future__ import annotations

import torch


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix; round-off negative eigenvalues are clamped to 0."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """d² = |mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½), as a float64 scalar.

    ``tr((sigma1 sigma2)^½)`` is computed as the sum of square roots of the eigenvalues of the *symmetric*
    PSD matrix ``sigma1^½ sigma2 sigma1^½`` (similar to ``sigma1 sigma2``), so no general matrix square root
    is needed: scipy's ``sqrtm`` route returns complex round-off on near-singular covariances (few samples,
    many features), which FID code patches with an epsilon offset; this route needs none.
    """
    mu1, mu2 = mu1.double(), mu2.double()
    sigma1, sigma2 = sigma1.double(), sigma2.double()
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}, sigma {tuple(sigma1.shape)}")
    root1 = _psd_sqrt((sigma1 + sigma1.T) / 2)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt


def gaussian_statistics(
    total: torch.Tensor, outer: torch.Tensor, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance from the sums ``sum x`` (D,), ``sum x xᵀ`` (D, D) and the count."""
    n = count.double()
    if n < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {int(n)}")
    mean = total.double() / n
    covariance = (outer.double() - n * torch.outer(mean, mean)) / (n - 1)
    return mean, covariance
