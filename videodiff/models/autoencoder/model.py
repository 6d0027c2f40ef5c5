"""The video compression network: a causal 3-D VAE (a plain nn.Module).

Causal in time everywhere, so T = 1 + k ft frames map to 1 + k latent frames and an image (T = 1) is a valid
video. Three choices make chunked (tiled) encoding and decoding *exactly* equal to the whole-clip result:
- convolutions pad only the past, and a chunk continues from the previous chunk's last frames (``cache``);
- normalisation is per frame (GroupNorm over C, H, W), never over time;
- temporal resampling works on non-overlapping frame pairs: the first frame stands alone (paired with
  itself), then (1, 2), (3, 4), ... so chunk boundaries that respect the pairs change nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

Cache = dict[int, torch.Tensor]


class DiagonalGaussian:
    """The posterior q(z | x) = N(mean, exp(logvar)), diagonal."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) summed over all but the batch dimension: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class FrameNorm(nn.GroupNorm):
    """GroupNorm over (C, H, W) of each frame: statistics never mix time steps (causal, tiling-exact)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(super().forward(frames), "(b t) c h w -> b c t h w", t=x.shape[2])


class CausalConv3d(nn.Module):
    """3-D convolution padded only on the past in time (replicating the first frame), 'same' in space.

    With a ``cache`` dict, the previous chunk's last ``kt - 1`` input frames replace the padding, and this
    chunk's last frames are stored for the next one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, spatial_stride: int = 1):
        super().__init__()
        self.time_pad, self.space_pad = kernel - 1, kernel // 2
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=(1, spatial_stride, spatial_stride))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.time_pad:
            past = cache.get(id(self)) if cache is not None else None
            if past is None:
                past = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            padded = torch.cat([past, x], dim=2)
            if cache is not None:
                cache[id(self)] = padded[:, :, -self.time_pad :].detach()
            x = padded
        x = F.pad(x, (self.space_pad,) * 4)
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameNorm(min(groups, in_channels), in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = FrameNorm(min(groups, out_channels), out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


def _is_first_chunk(module: nn.Module, cache: Cache | None) -> bool:
    """Whether this call starts a clip (no chunk came before it through this module)."""
    if cache is None:
        return True
    first = id(module) not in cache
    cache[id(module)] = torch.empty(0)
    return first


class Downsample(nn.Module):
    """Halve H and W (strided conv) and, when ``temporal``, halve time over causal frame pairs."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.pairs = nn.Conv3d(2 * channels, channels, 1) if temporal else None
        self.conv = CausalConv3d(channels, channels, spatial_stride=2)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.temporal:
            if _is_first_chunk(self, cache):  # the first frame pairs with itself: 1 + 2k -> 1 + k
                x = torch.cat([x[:, :, :1], x], dim=2)
            if x.shape[2] % 2:
                raise ValueError(f"temporal downsampling got {x.shape[2]} frames in a chunk; chunks must pair up")
            x = self.pairs(rearrange(x, "b c (t two) h w -> b (two c) t h w", two=2))
        return self.conv(x, cache)


class Upsample(nn.Module):
    """Double H and W (nearest + conv) and, when ``temporal``, double time (dropping the first frame's twin)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.pairs = nn.Conv3d(channels, 2 * channels, 1) if temporal else None
        self.conv = CausalConv3d(channels, channels)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.temporal:
            first = _is_first_chunk(self, cache)
            x = rearrange(self.pairs(x), "b (two c) t h w -> b c (t two) h w", two=2)
            if first:
                x = x[:, :, 1:]
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x, cache)


class Encoder(nn.Module):
    def __init__(self, in_channels, latent_channels, widths, blocks, temporal_levels, groups):
        super().__init__()
        self.conv_in = CausalConv3d(in_channels, widths[0])
        self.levels = nn.ModuleList()
        width = widths[0]
        for i, out in enumerate(widths):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(width, out, groups))
                width = out
            if i < len(widths) - 1:
                level.append(Downsample(width, temporal=i < temporal_levels))
            self.levels.append(level)
        self.mid = ResBlock(width, width, groups)
        self.norm_out = FrameNorm(min(groups, width), width)
        self.conv_out = CausalConv3d(width, 2 * latent_channels)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv_in(x, cache)
        for level in self.levels:
            for layer in level:
                h = layer(h, cache)
        h = self.mid(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class Decoder(nn.Module):
    def __init__(self, out_channels, latent_channels, widths, blocks, temporal_levels, groups):
        super().__init__()
        widths = list(reversed(widths))
        self.conv_in = CausalConv3d(latent_channels, widths[0])
        self.mid = ResBlock(widths[0], widths[0], groups)
        self.levels = nn.ModuleList()
        width = widths[0]
        levels = len(widths)
        for i, out in enumerate(widths):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(width, out, groups))
                width = out
            if i < levels - 1:
                # Mirror of the encoder: its first `temporal_levels` downsamplings were temporal.
                level.append(Upsample(width, temporal=(levels - 2 - i) < temporal_levels))
            self.levels.append(level)
        self.norm_out = FrameNorm(min(groups, width), width)
        self.conv_out = CausalConv3d(width, out_channels)

    def forward(self, z: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.mid(self.conv_in(z, cache), cache)
        for level in self.levels:
            for layer in level:
                h = layer(h, cache)
        return self.conv_out(F.silu(self.norm_out(h)), cache)


class VideoAutoencoder(nn.Module):
    """Causal 3-D VAE: ``(B, 3, T, H, W)`` in [-1, 1] <-> ``(B, latent_channels, 1 + (T-1)/ft, H/fs, W/fs)``.

    Args:
        latent_channels: channels of the latent (4 to 16).
        temporal_compression: ft in {1, 2, 4}.
        spatial_compression: fs in {4, 8} (any power of two >= 2 works).
        widths: channel width per level; ``log2(fs) + 1`` levels.
        blocks: residual blocks per level.
        groups: GroupNorm groups.
        chunk_frames: latent frames per chunk for ``encode``/``decode`` of long clips (None: whole clip).
    """

    def __init__(
        self,
        latent_channels: int = 4,
        temporal_compression: int = 2,
        spatial_compression: int = 4,
        widths: tuple[int, ...] | None = None,
        blocks: int = 1,
        groups: int = 8,
        chunk_frames: int | None = None,
    ):
        super().__init__()
        levels = int(math.log2(spatial_compression))
        if 2**levels != spatial_compression or levels < 1:
            raise ValueError(f"spatial_compression must be a power of two >= 2, got {spatial_compression}")
        temporal_levels = int(math.log2(temporal_compression))
        if 2**temporal_levels != temporal_compression or temporal_levels > levels:
            raise ValueError(f"temporal_compression must be 1, 2, 4, ... and <= spatial, got {temporal_compression}")
        widths = tuple(widths or [32 * 2 ** min(i, 2) for i in range(levels + 1)])
        if len(widths) != levels + 1:
            raise ValueError(f"widths needs {levels + 1} entries for spatial_compression {spatial_compression}")
        # The init arguments, so a checkpoint can rebuild the network without the run's config file.
        self.config = dict(
            latent_channels=latent_channels,
            temporal_compression=temporal_compression,
            spatial_compression=spatial_compression,
            widths=list(widths),
            blocks=blocks,
            groups=groups,
            chunk_frames=chunk_frames,
        )
        self.latent_channels, self.chunk_frames = latent_channels, chunk_frames
        self.temporal_compression, self.spatial_compression = temporal_compression, spatial_compression
        self.encoder = Encoder(3, latent_channels, widths, blocks, temporal_levels, groups)
        self.decoder = Decoder(3, latent_channels, widths, blocks, temporal_levels, groups)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        ft, fs = self.temporal_compression, self.spatial_compression
        if (frames - 1) % ft or height % fs or width % fs:
            raise ValueError(f"a clip of {frames}x{height}x{width} needs 1 + k*{ft} frames and sides divisible by {fs}")
        return 1 + (frames - 1) // ft, height // fs, width // fs

    def _chunks(self, total: int, first_extra: int, step: int) -> list[tuple[int, int]]:
        """(start, stop) of chunks: the first holds ``first_extra`` more (the causal first frame)."""
        if self.chunk_frames is None:
            return [(0, total)]
        bounds, start, stop = [], 0, min(total, first_extra + self.chunk_frames * step)
        while start < total:
            bounds.append((start, stop))
            start, stop = stop, min(total, stop + self.chunk_frames * step)
        return bounds

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """``(B, 3, T, H, W)`` -> posterior over ``(B, C, T', H', W')``; chunked with a causal cache if set."""
        self.latent_shape(*video.shape[2:])
        cache: Cache = {}
        parts = [
            self.encoder(video[:, :, a:b], cache) for a, b in self._chunks(video.shape[2], 1, self.temporal_compression)
        ]
        return DiagonalGaussian(torch.cat(parts, dim=2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C, T', H', W')`` -> ``(B, 3, 1 + (T'-1) ft, H' fs, W' fs)``."""
        cache: Cache = {}
        parts = [self.decoder(z[:, :, a:b], cache) for a, b in self._chunks(z.shape[2], 1, 1)]
        return torch.cat(parts, dim=2)

    def forward(self, video: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(video)
        z = posterior.sample() if sample else posterior.mode()
        return self.decode(z), posterior
