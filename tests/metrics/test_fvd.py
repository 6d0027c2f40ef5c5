import os

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from videodiff.metrics.frechet import frechet_distance, gaussian_statistics
from videodiff.metrics.fvd import FrechetVideoDistance, FVDProtocol


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The formula as FID / FVD reference code computes it (sqrtm, real part)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("samples", [400, 12], ids=["well-conditioned", "near-singular"])
def test_frechet_distance_matches_scipy(samples):
    rng = np.random.default_rng(0)
    d = 16
    a = rng.normal(size=(samples, d))
    b = rng.normal(size=(samples, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.3
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    expected = scipy_frechet(*stats[0], *stats[1])
    got = frechet_distance(*(torch.from_numpy(v) for s in stats for v in s))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(float(got), expected, rtol=1e-6, atol=1e-6)
    # Identical Gaussians are at distance 0, even with rank-deficient covariances (the square roots of
    # round-off eigenvalues ~1e-16 leave ~1e-8 per null direction).
    mu, sigma = (torch.from_numpy(v) for v in stats[0])
    assert abs(float(frechet_distance(mu, sigma, mu, sigma))) < 1e-6


def test_gaussian_statistics_from_sums_match_numpy():
    x = torch.randn(50, 6, dtype=torch.float64)
    mean, cov = gaussian_statistics(x.sum(0), x.T @ x, torch.tensor(50))
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(cov, torch.from_numpy(np.cov(x.numpy(), rowvar=False)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_statistics(x[0], torch.outer(x[0], x[0]), torch.tensor(1))


class MeanPool(nn.Module):
    """A stand-in feature network: per-channel means over (t, h, w) and their squares."""

    def forward(self, clips):
        m = clips.mean(dim=(2, 3, 4))
        return torch.cat([m, m.square(), clips.std(dim=(2, 3, 4))], dim=1)


def videos(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 16, 24, generator=g) * 2 - 1 + shift).clamp(-1, 1)


PROTOCOL = FVDProtocol(num_videos=16, frames=4, stride=2, resolution=32)


def test_fvd_of_a_set_with_itself_is_zero_and_split_updates_equal_one():
    real = videos(20, 0)
    metric = FrechetVideoDistance(MeanPool(), 9, PROTOCOL)
    metric.update(real, real=True)
    metric.update(real, real=False)
    assert abs(float(metric.compute())) < 1e-9
    one = FrechetVideoDistance(MeanPool(), 9, PROTOCOL)
    one.update(real, real=True)
    one.update(videos(20, 1, shift=0.2), real=False)
    two = FrechetVideoDistance(MeanPool(), 9, PROTOCOL)
    two.update(real[:7], real=True)
    two.update(real[7:], real=True)
    fake = videos(20, 1, shift=0.2)
    two.update(fake[:13], real=False)
    two.update(fake[13:], real=False)
    torch.testing.assert_close(one.compute(), two.compute())
    assert float(one.compute()) > 0.01 and one.name == "fvd20_4f_s2_32px"


def test_protocol_prepares_frames_and_names_short_clips():
    clips = FVDProtocol(frames=4, stride=2, resolution=32).prepare(videos(2, 0))
    assert clips.shape == (2, 3, 4, 32, 32)
    assert FVDProtocol().name() == "fvd2048_16f"
    with pytest.raises(ValueError, match="needs 16"):
        FVDProtocol().prepare(videos(1, 0))


def test_real_features_survive_reset_when_asked():
    metric = FrechetVideoDistance(MeanPool(), 9, PROTOCOL, reset_real_features=False)
    metric.update(videos(10, 0), real=True)
    metric.update(videos(10, 1), real=False)
    metric.reset()
    assert int(metric.real_count) == 10 and int(metric.fake_count) == 0


def _sync_worker(rank, world, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    metric = FrechetVideoDistance(MeanPool(), 9, PROTOCOL)
    real, fake = videos(20, 0), videos(20, 1, shift=0.2)
    metric.update(real[rank::world], real=True)
    metric.update(fake[rank::world], real=False)
    results[rank] = float(metric.compute())  # compute() all-reduces the sum states
    dist.destroy_process_group()


def test_states_sync_across_processes():
    world, port = 2, 29500 + os.getpid() % 1000
    results = mp.Manager().dict()
    mp.spawn(_sync_worker, args=(world, port, results), nprocs=world, join=True)
    single = FrechetVideoDistance(MeanPool(), 9, PROTOCOL)
    single.update(videos(20, 0), real=True)
    single.update(videos(20, 1, shift=0.2), real=False)
    assert results[0] == pytest.approx(float(single.compute()), rel=1e-9) and results[0] == results[1]
