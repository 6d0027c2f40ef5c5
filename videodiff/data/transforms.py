"""Pure tensor functions between decoded frames and model input. No state, no codecs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange


def thwc_to_cthw(frames_thwc: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` frames to a ``(C, T, H, W)`` tensor (same dtype)."""
    frames = torch.as_tensor(frames_thwc)
    return rearrange(frames, "t h w c -> c t h w").contiguous()


def cthw_to_thwc(video_cthw: torch.Tensor) -> torch.Tensor:
    return rearrange(video_cthw, "c t h w -> t h w c").contiguous()


def to_frames(video_cthw: torch.Tensor) -> np.ndarray:
    """A ``(C, T, H, W)`` video in [-1, 1] (any device, dtype) -> uint8 ``(T, H, W, C)`` frames for writing."""
    return cthw_to_thwc(to_uint8(video_cthw.detach().float().cpu())).numpy()


def to_unit_range(video_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] to float32 [-1, 1]."""
    return video_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] to uint8 [0, 255], rounding to nearest (the exact inverse of ``to_unit_range``)."""
    return video.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def center_crop(video_cthw: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of the last two axes to ``height x width``."""
    h, w = video_cthw.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} is larger than the frame {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return video_cthw[..., top : top + height, left : left + width]


def resize(video_cthw: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize every frame to ``height x width`` (bilinear, antialiased when shrinking).

    Works on float video; returns the input unchanged when the size already matches, so a sample at its
    native size is bit-exact.
    """
    if tuple(video_cthw.shape[-2:]) == (height, width):
        return video_cthw
    frames = rearrange(video_cthw, "c t h w -> t c h w")
    frames = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return rearrange(frames, "t c h w -> c t h w")
