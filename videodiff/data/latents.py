"""The latent cache: clips encoded once by the autoencoder, so the DiT trains without decoding video.

A cache folder holds ``latents/<index>.pt`` (one ``(C, T', H', W')`` tensor per clip, loaded with
``weights_only=True``) and ``manifest.jsonl`` whose entries carry the caption, the latent shape, the source
clip and its split. ``videodiff encode`` writes it; ``LatentDataset`` reads it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videodiff.data.datasets import SampleRequest, SkippedSample, VideoSample
from videodiff.data.manifest import ManifestEntry, read_manifest
from videodiff.data.sizing import SizePlan
from videodiff.packing.patchify import token_grid


def write_latent(folder: Path, index: int, latent: torch.Tensor) -> Path:
    path = folder / "latents" / f"{index:07d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(latent.contiguous().clone(), path)
    return path


class LatentPlanner:
    """Plans for cached latents: the size was fixed when the clip was encoded; tokens use the DiT's patch."""

    random_size = False

    def __init__(self, patch: tuple[int, int, int]):
        self.patch = tuple(patch)

    def plan(self, index: int, entry: ManifestEntry, rng: np.random.Generator | None = None) -> SampleRequest:
        shape = latent_shape(entry)
        return SampleRequest(index=index, plan=SizePlan(*shape, shape[1], shape[2]), start=0, step=1.0)

    def tokens(self, shape: tuple[int, int, int]) -> int:
        return math.prod(token_grid((1, *shape), self.patch))


def latent_shape(entry: ManifestEntry) -> tuple[int, int, int]:
    shape = entry.extra.get("latent_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise ValueError(f"{entry.path}: latent cache entry has no 'latent_shape' [T, H, W]; re-run `videodiff encode`")
    return tuple(int(v) for v in shape)


def read_latent_cache(cache: str | Path, split: str | None = None) -> list[ManifestEntry]:
    """The cache's entries (of one ``split``, ``train`` or ``val``, if given)."""
    manifest = Path(cache) / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{cache}: not a latent cache (no manifest.jsonl); make one with `videodiff encode`")
    return [e for e in read_manifest(manifest) if split is None or e.extra.get("split") == split]


class LatentDataset(Dataset):
    """Cached latents as samples (``VideoSample.video`` holds the latent).

    Args:
        entries: a cache folder (all its entries, or one ``split``), or entries already read from one.
        split: with a folder, keep only this split.
    """

    def __init__(self, entries: str | Path | list[ManifestEntry], split: str | None = None):
        self.entries = read_latent_cache(entries, split) if isinstance(entries, str | Path) else list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, request: SampleRequest | int) -> VideoSample | SkippedSample:
        index = request.index if isinstance(request, SampleRequest) else int(request)
        entry = self.entries[index]
        try:
            latent = torch.load(entry.path, map_location="cpu", weights_only=True)
        except Exception as e:  # missing, truncated, not a torch file (UnpicklingError...): skipped, not a crash
            return SkippedSample(index, entry.path, f"cannot load latent ({type(e).__name__}: {e})")
        if not isinstance(latent, torch.Tensor):
            return SkippedSample(index, entry.path, f"holds a {type(latent).__name__}, not a latent tensor")
        expected = latent_shape(entry)
        if tuple(latent.shape[1:]) != expected:
            return SkippedSample(index, entry.path, f"latent has shape {tuple(latent.shape)}, manifest says {expected}")
        return VideoSample(video=latent.float(), caption=entry.caption, index=index, fps=float(entry.fps or 0.0))
