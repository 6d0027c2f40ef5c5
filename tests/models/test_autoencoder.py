import pytest
import torch
from torch.distributions import Normal, kl_divergence

from videodiff.models.autoencoder.model import DiagonalGaussian, VideoAutoencoder


def tiny(ft=2, fs=4, chunk=None):
    torch.manual_seed(0)
    return VideoAutoencoder(
        latent_channels=4,
        temporal_compression=ft,
        spatial_compression=fs,
        widths=[8, 16, 16][: 1 + fs.bit_length() - 1],
        blocks=1,
        groups=4,
        chunk_frames=chunk,
    ).eval()


@pytest.mark.parametrize("ft, fs", [(1, 4), (2, 4), (4, 4), (2, 8)])
@pytest.mark.parametrize("frames, height, width", [(1, 16, 24), (9, 32, 16), (17, 16, 40)])
def test_shapes_for_odd_frame_counts_images_and_non_square(ft, fs, frames, height, width):
    if (frames - 1) % ft:
        pytest.skip("not a valid frame count for ft")
    model = VideoAutoencoder(
        latent_channels=4, temporal_compression=ft, spatial_compression=fs, groups=4, widths=[8] * (fs.bit_length())
    )
    video = torch.randn(2, 3, frames, height, width)
    with torch.no_grad():
        posterior = model.encode(video)
        assert posterior.mean.shape == (2, 4, *model.latent_shape(frames, height, width))
        assert model.decode(posterior.mode()).shape == video.shape
    with pytest.raises(ValueError, match="needs 1 \\+ k"):
        model.latent_shape(frames + 1 if ft > 1 else frames, height + 1, width)


def test_causality_later_frames_do_not_change_earlier_latents():
    model = tiny(ft=2)
    video = torch.randn(1, 3, 9, 16, 16)
    changed = video.clone()
    changed[:, :, 5:] += torch.randn_like(changed[:, :, 5:])  # frames 5.. -> latent frames 3..
    with torch.no_grad():
        a, b = model.encode(video).mean, model.encode(changed).mean
        assert torch.equal(a[:, :, :3], b[:, :, :3]) and not torch.allclose(a[:, :, 3:], b[:, :, 3:])
        za = a.clone()
        zb = a.clone()
        zb[:, :, 3:] += 1.0
        da, db = model.decode(za), model.decode(zb)
        assert torch.equal(da[:, :, :5], db[:, :, :5]) and not torch.allclose(da[:, :, 5:], db[:, :, 5:])


@pytest.mark.parametrize("ft", [1, 2, 4])
def test_chunked_encode_and_decode_equal_the_whole_clip(ft):
    whole, chunked = tiny(ft=ft), tiny(ft=ft, chunk=2)
    chunked.load_state_dict(whole.state_dict())
    video = torch.randn(1, 3, 1 + 6 * ft, 16, 16)
    with torch.no_grad():
        z_whole, z_chunked = whole.encode(video).mean, chunked.encode(video).mean
        torch.testing.assert_close(z_chunked, z_whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(chunked.decode(z_whole), whole.decode(z_whole), rtol=1e-5, atol=1e-5)


def test_kl_matches_torch_distributions():
    moments = torch.randn(3, 8, 2, 4, 4)
    posterior = DiagonalGaussian(moments)
    q = Normal(posterior.mean, posterior.std)
    p = Normal(torch.zeros_like(posterior.mean), torch.ones_like(posterior.std))
    torch.testing.assert_close(posterior.kl(), kl_divergence(q, p).flatten(1).sum(1), rtol=1e-5, atol=1e-5)
    assert torch.equal(posterior.mode(), posterior.mean)


def test_invalid_compression():
    with pytest.raises(ValueError, match="power of two"):
        VideoAutoencoder(spatial_compression=6)
    with pytest.raises(ValueError, match="temporal_compression"):
        VideoAutoencoder(temporal_compression=3)
