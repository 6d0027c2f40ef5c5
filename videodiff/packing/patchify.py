"""Spacetime patches: a ``(C, T, H, W)`` latent video <-> ``(N, D)`` tokens in (t, h, w) raster order.

``patch = (pt, ph, pw)``: pt = 1 gives per-frame ViT patches, pt > 1 tubelets (ViViT). ``D = C pt ph pw``.
A 1-frame video (an image) with pt > 1 is repeated along time to fill its one tubelet, and ``unpatchify``
given ``frames=1`` returns the single frame, so images and videos share one tokeniser.
"""

from __future__ import annotations

import torch
from einops import rearrange

Patch = tuple[int, int, int]


def token_grid(shape_cthw: tuple[int, ...] | torch.Size, patch: Patch) -> tuple[int, int, int]:
    """The ``(T', H', W')`` token grid of a ``(C, T, H, W)`` video; raises if a side is not divisible."""
    _, t, h, w = shape_cthw
    pt, ph, pw = patch
    if h % ph or w % pw:
        raise ValueError(f"latent size {h}x{w} is not a multiple of the patch size {ph}x{pw}")
    if t % pt and t != 1:
        raise ValueError(f"{t} latent frames are not a multiple of the temporal patch {pt} (nor a single image)")
    return max(1, t // pt), h // ph, w // pw


def patchify(video_cthw: torch.Tensor, patch: Patch) -> torch.Tensor:
    """``(C, T, H, W)`` -> ``(T' H' W', C pt ph pw)``."""
    token_grid(video_cthw.shape, patch)
    pt, ph, pw = patch
    if video_cthw.shape[1] == 1 and pt > 1:
        video_cthw = video_cthw.expand(-1, pt, -1, -1)  # an image fills one tubelet
    return rearrange(video_cthw, "c (t pt) (h ph) (w pw) -> (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch: Patch, frames: int | None = None
) -> torch.Tensor:
    """``(T' H' W', C pt ph pw)`` -> ``(C, T, H, W)``; ``frames=1`` recovers an image from its tubelet."""
    t, h, w = grid
    pt, ph, pw = patch
    if tokens.shape[0] != t * h * w:
        raise ValueError(f"{tokens.shape[0]} tokens do not fill a {t}x{h}x{w} grid")
    video = rearrange(tokens, "(t h w) (c pt ph pw) -> c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)
    if frames is not None:
        video = video[:, :frames]
    return video


def grid_coords(grid: tuple[int, int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """``(N, 3)`` long: each token's (t, h, w) in raster order."""
    axes = [torch.arange(n, device=device) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
