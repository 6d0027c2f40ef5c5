"""The latent cache: clips encoded once by the autoencoder, so the DiT trains without decoding video.

A cache folder holds ``latents/<index>.pt`` (one ``(C, T', H', W')`` tensor per clip, loaded with
``weights_only=True``) and ``manifest.jsonl`` whose entries carry the caption, the latent shape, the source
clip and its split. ``videodiff encode`` writes it; ``LatentDataset`` reads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from videodiff.data.datasets import SkippedSample, VideoSample
from videodiff.data.manifest import ManifestEntry, read_manifest


def write_latent(folder: Path, index: int, latent: torch.Tensor) -> Path:
    path = folder / "latents" / f"{index:07d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(latent.contiguous().clone(), path)
    return path


class LatentDataset(Dataset):
    """Cached latents as samples (``VideoSample.video`` holds the latent). Filter by ``split`` if given."""

    def __init__(self, cache: str | Path, split: str | None = None):
        entries = read_manifest(Path(cache) / "manifest.jsonl")
        self.entries: list[ManifestEntry] = [e for e in entries if split is None or e.extra.get("split") == split]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> VideoSample | SkippedSample:
        entry = self.entries[index]
        try:
            latent = torch.load(entry.path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            return SkippedSample(index, entry.path, f"cannot load latent ({type(e).__name__}: {e})")
        expected = tuple(entry.extra["latent_shape"])
        if tuple(latent.shape[1:]) != expected:
            return SkippedSample(index, entry.path, f"latent has shape {tuple(latent.shape)}, manifest says {expected}")
        return VideoSample(video=latent.float(), caption=entry.caption, index=index, fps=float(entry.fps or 0.0))
