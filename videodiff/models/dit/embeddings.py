"""Embeddings of the DiT: timesteps, class labels, captions, and positions from each token's (t, h, w)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def sinusoidal(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(...,) -> (..., dim) sin-cos features of scalar values (DiT's timestep features, cos first)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    angles = values.float()[..., None] * freqs
    features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        features = torch.cat([features, torch.zeros_like(features[..., :1])], dim=-1)
    return features


class TimestepEmbedder(nn.Module):
    """Scalar timesteps (integers for DDPM, t * 1000 for flows) -> (N, hidden)."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(t, self.frequency_size).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> (N, hidden); label ``num_classes`` is the null class (classifier-free guidance).

    Several label sets (e.g. colour, shape, motion) each get their own rows of one table, and a video's
    embeddings are summed, so each attribute is learned on its own and any combination has a conditioning
    vector. With one set this is DiT's class embedding (the same parameter and shape).
    """

    def __init__(self, num_classes: int | Sequence[int], hidden_size: int):
        super().__init__()
        sizes = [num_classes] if isinstance(num_classes, int) else list(num_classes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"LabelEmbedder: every label set needs at least one class, got {num_classes}")
        self.table = nn.Embedding(sum(n + 1 for n in sizes), hidden_size)
        starts = torch.tensor([0] + [n + 1 for n in sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", starts, persistent=False)  # first row of each set in the table
        self.register_buffer("sizes", torch.tensor(sizes), persistent=False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """(N,) labels of one set, or (N, K) of K sets -> (N, hidden)."""
        labels = labels[:, None] if labels.dim() == 1 else labels  # (N, K)
        if labels.shape[1] != len(self.sizes):
            raise ValueError(f"expected labels of {len(self.sizes)} label sets, got {labels.shape[1]}")
        if ((labels < 0) | (labels > self.sizes)).any():  # label n of a set of n is its null class
            sizes = self.sizes.tolist()
            raise ValueError(f"labels out of range: sets of {sizes} classes (+1 null), got {labels.tolist()}")
        return self.table(labels + self.offsets).sum(dim=1)


class CaptionProjection(nn.Module):
    """Frozen text-encoder token states -> the DiT's width (PixArt's two-layer projection), plus a learned
    one-token null caption for the unconditional branch."""

    def __init__(self, text_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(text_dim, hidden_size), nn.GELU(approximate="tanh"), nn.Linear(hidden_size, hidden_size)
        )
        self.null = nn.Parameter(torch.randn(1, hidden_size) / hidden_size**0.5)

    def forward(self, caption: torch.Tensor | None) -> torch.Tensor:
        """(n, text_dim) token states, or None for the null caption -> (n, hidden)."""
        return self.null if caption is None else self.proj(caption)


def _axis_split(total: int) -> tuple[int, int, int]:
    """Split ``total`` features over (t, h, w), each even, space getting what does not divide evenly."""
    pairs = total // 2
    t = pairs // 3
    h = (pairs - t) // 2
    return 2 * t, 2 * h, 2 * (pairs - t - h)


class SinCos3D(nn.Module):
    """Additive factorised 3-D sin-cos positions: features of t, h and w concatenated (no parameters)."""

    def __init__(self, hidden_size: int, max_period: float = 10000.0):
        super().__init__()
        self.dims, self.max_period = _axis_split(hidden_size), max_period
        self.hidden_size = hidden_size

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """(R, L, 3) -> (R, L, hidden)."""
        parts = [sinusoidal(coords[..., i], d, self.max_period) for i, d in enumerate(self.dims) if d]
        out = torch.cat(parts, dim=-1)
        if out.shape[-1] < self.hidden_size:
            out = torch.cat([out, out.new_zeros(*out.shape[:-1], self.hidden_size - out.shape[-1])], dim=-1)
        return out


class Rope3D(nn.Module):
    """3-D rotary positions: each head's features rotate by angles of t, h and w (split over the pairs).

    The dot product of a rotated query and key depends only on their coordinate difference, so attention
    sees relative positions and any grid size works.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        dims = _axis_split(head_dim)
        freqs = [1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / max(d, 1)) for d in dims]
        self.register_buffer(
            "axis", torch.cat([torch.full((d // 2,), i) for i, d in enumerate(dims)]), persistent=False
        )
        self.register_buffer("freqs", torch.cat(freqs), persistent=False)

    def angles(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, L, 3) -> cos, sin of shape (R, 1, L, head_dim / 2)."""
        angle = coords.float()[..., self.axis] * self.freqs  # (R, L, Dh/2)
        return angle.cos()[:, None], angle.sin()[:, None]

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate interleaved feature pairs of (R, H, L, Dh) by the angles."""
        pairs = x.to(torch.promote_types(x.dtype, torch.float32)).unflatten(-1, (-1, 2))  # (R, H, L, Dh/2, 2)
        first, second = pairs.unbind(-1)
        rotated = torch.stack([first * cos - second * sin, first * sin + second * cos], dim=-1)
        return rotated.flatten(-2).to(x.dtype)


class MixedRope3D(nn.Module):
    """Rotary positions whose per-head frequencies are learned vectors over (t, h, w) (RoPE-Mixed, Heo et al. 2024).

    Axial RoPE turns each feature pair by one axis only, so a head's positional preference is a product of
    per-axis preferences: it can favour "one frame later" and "one token right", but not "one token right
    per frame later", the diagonal that following a moving object needs. Here each pair turns by
    ``f . (t, h, w)`` with ``f`` a learned 3-vector per head and pair (drawn at the axial magnitudes in
    random directions), so attention can prefer any space-time direction and still sees only relative
    positions.
    """

    def __init__(self, head_dim: int, num_heads: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        magnitude = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
        direction = nn.functional.normalize(torch.randn(num_heads, head_dim // 2, 3), dim=-1)
        self.freqs = nn.Parameter(direction * magnitude[:, None])  # (H, Dh/2, 3)

    def angles(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, L, 3) -> cos, sin of shape (R, H, L, head_dim / 2)."""
        angle = torch.einsum("rlc,hpc->rhlp", coords.float(), self.freqs.float())
        return angle.cos(), angle.sin()
