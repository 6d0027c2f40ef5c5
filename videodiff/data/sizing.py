"""Choose the size a sample is trained at: clip length and resize under a token budget, aspect kept.

A video of ``(frames, height, width)`` pixels becomes ``token_frames x (height / sh) x (width / sw)`` DiT
tokens, where ``sh = spatial_compression x patch_h`` (likewise ``sw``) and the time axis goes through the
autoencoder's temporal compression and then the temporal patch size. The autoencoder is causal by default,
so ``frames = 1 + k x temporal_compression`` and a single image is a valid video.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from videodiff.errors import ConfigError

_SIZE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def parse_size(text: str) -> tuple[int, int, int]:
    """``"FRAMESxHEIGHTxWIDTH"`` (e.g. ``"9x32x48"``) -> ``(frames, height, width)``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"size {text!r} is not FRAMESxHEIGHTxWIDTH (e.g. 9x32x48)")
    return tuple(int(v) for v in match.groups())


class SizingError(ConfigError):
    """No size satisfies the constraints (e.g. the token budget is below one latent token)."""


@dataclass(frozen=True)
class LatentGrid:
    """How pixels map to tokens: the autoencoder's compression and the DiT's patch size.

    Args:
        temporal_compression: autoencoder frames per latent frame (ft).
        spatial_compression: autoencoder pixels per latent pixel, per side (fs).
        patch_size: DiT patch ``(pt, ph, pw)`` in latent units.
        causal: causal autoencoders map ``T`` frames to ``1 + (T - 1) / ft`` latent frames.
    """

    temporal_compression: int = 1
    spatial_compression: int = 1
    patch_size: tuple[int, int, int] = (1, 1, 1)
    causal: bool = True

    def __post_init__(self) -> None:
        values = (self.temporal_compression, self.spatial_compression, *self.patch_size)
        if len(self.patch_size) != 3 or any(int(v) != v or v < 1 for v in values):
            raise ValueError(f"compression and patch sizes must be positive integers, got {self}")

    @property
    def spatial_stride(self) -> tuple[int, int]:
        """Pixels per token along height and width."""
        return self.spatial_compression * self.patch_size[1], self.spatial_compression * self.patch_size[2]

    def latent_frames(self, frames: int) -> int:
        ft = self.temporal_compression
        if self.causal:
            if (frames - 1) % ft:
                raise SizingError(f"a causal autoencoder with ft={ft} needs 1 + k*{ft} frames, got {frames}")
            return 1 + (frames - 1) // ft
        if frames % ft:
            raise SizingError(f"an autoencoder with ft={ft} needs a multiple of {ft} frames, got {frames}")
        return frames // ft

    def is_valid_frames(self, frames: int) -> bool:
        """A frame count the autoencoder accepts and the temporal patch divides (images always pass)."""
        if frames == 1:
            return self.causal or self.temporal_compression * self.patch_size[0] == 1
        try:
            return self.latent_frames(frames) % self.patch_size[0] == 0
        except SizingError:
            return False

    def valid_frames_at_most(self, frames: int) -> int | None:
        """The longest valid clip of at most ``frames`` frames, or None."""
        for n in range(frames, 0, -1):
            if self.is_valid_frames(n):
                return n
        return None

    def token_frames(self, frames: int) -> int:
        """Token positions along time; an image takes one (the packer pads its time patch)."""
        latent, pt = self.latent_frames(frames), self.patch_size[0]
        if latent != 1 and latent % pt:
            raise SizingError(f"{frames} frames make {latent} latent frames, not a multiple of the temporal patch {pt}")
        return max(1, latent // pt)

    def valid_frame_counts(self, count: int = 4) -> list[int]:
        """The first ``count`` frame counts above one that this grid accepts (for error messages)."""
        return [
            n for n in range(2, 1 + 64 * self.temporal_compression * self.patch_size[0]) if self.is_valid_frames(n)
        ][:count]

    def tokens(self, frames: int, height: int, width: int) -> int:
        sh, sw = self.spatial_stride
        if height % sh or width % sw:
            raise SizingError(f"{height}x{width} is not a multiple of the token stride {sh}x{sw}")
        return self.token_frames(frames) * (height // sh) * (width // sw)


@dataclass(frozen=True)
class SizePlan:
    """The clip a sample becomes: crop the source to ``crop_height x crop_width`` (centred), then resize."""

    frames: int
    height: int
    width: int
    crop_height: int
    crop_width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.frames, self.height, self.width


def plan_size(
    frames: int,
    height: int,
    width: int,
    grid: LatentGrid,
    token_budget: int,
    max_frames: int | None = None,
    rng: np.random.Generator | None = None,
    scale_range: tuple[float, float] | None = None,
    duration_range: tuple[float, float] | None = None,
) -> SizePlan:
    """Pick the clip length and resize of one sample.

    The largest size that fits the budget without upsampling is chosen: the clip as long as the source
    allows (up to ``max_frames``), then the largest spatial scale <= 1 whose token grid fits. Every side
    becomes a multiple of the grid's stride and stays within one stride of the scaled source, so the
    aspect ratio is kept. A side shorter than one token at that scale becomes one token, and the other
    side follows it (upsampling only a source narrower than one stride); where that exceeds the budget
    (extreme aspect ratios) the long side is centre-cropped to the aspect the grid can hold.

    With ``rng``, NaViT-style random sizes for training: the clip length is drawn uniformly from
    ``duration_range`` (fractions of the longest clip) and the spatial scale from ``scale_range``
    (fractions of the largest scale that fits).

    Args:
        frames, height, width: the source clip (frames at the sampling rate), any aspect ratio.
        grid: the pixel-to-token mapping.
        token_budget: most tokens the sample may have.
        max_frames: cap on the clip length.
    """
    if min(frames, height, width) < 1:
        raise SizingError(f"source size must be positive, got {frames}x{height}x{width}")
    if token_budget < 1:
        raise SizingError(f"token_budget must be >= 1, got {token_budget}")
    longest = grid.valid_frames_at_most(min(frames, max_frames or frames))
    if longest is None:
        raise SizingError(f"no valid clip length <= {min(frames, max_frames or frames)} frames for {grid}")
    if rng is not None and duration_range is not None and longest > 1:
        low = max(1, math.ceil(duration_range[0] * longest))
        high = max(low, math.floor(duration_range[1] * longest))
        choices = [n for n in range(low, high + 1) if grid.is_valid_frames(n)] or [longest]
        longest = int(rng.choice(choices))

    clip = longest
    while grid.token_frames(clip) > token_budget:
        shorter = grid.valid_frames_at_most(clip - 1)
        if shorter is None:
            raise SizingError(f"token budget {token_budget} is below one token per latent frame of any clip")
        clip = shorter
    spatial_budget = token_budget // grid.token_frames(clip)

    sh, sw = grid.spatial_stride
    scale = min(1.0, math.sqrt(spatial_budget * sh * sw / (height * width)))
    if rng is not None and scale_range is not None:
        scale *= float(rng.uniform(*scale_range))
    rows = math.floor(scale * height / sh + 1e-9)
    cols = math.floor(scale * width / sw + 1e-9)
    crop_height, crop_width = height, width
    if rows == 0 and cols == 0:  # a source smaller than one token: one token it is
        rows = cols = 1
    elif cols == 0:  # too narrow for one token column at this scale: rescale so the width is one token
        cols = 1
        rows = max(1, math.floor(sw / width * height / sh + 1e-9))
        if rows > spatial_budget:  # still too tall: keep the aspect by cropping the height
            rows = spatial_budget
            crop_height = min(height, max(1, round(width * rows * sh / sw)))
    elif rows == 0:
        rows = 1
        cols = max(1, math.floor(sh / height * width / sw + 1e-9))
        if cols > spatial_budget:
            cols = spatial_budget
            crop_width = min(width, max(1, round(height * cols * sw / sh)))
    return SizePlan(clip, rows * sh, cols * sw, crop_height, crop_width)
