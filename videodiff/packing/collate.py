"""PackedCollator: a list of latent samples -> one PackedBatch (the DiT's input), for cached latents.

From pixels the DiT module encodes the videos of a ``VideoListBatch`` and calls the same ``pack``; either
way one function decides the layout, so training from cache and from pixels see identical batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from videodiff.data.datasets import split_skipped
from videodiff.packing.pack import PackedBatch, TokenDropping, pack
from videodiff.packing.patchify import Patch


class LatentSample(Protocol):
    video: torch.Tensor  # (C, T, H, W) latents
    caption: str
    index: int


@dataclass
class PackedVideoBatch:
    packed: PackedBatch
    captions: list[str]  # one per video, in PackedBatch order
    indices: torch.Tensor  # (N,) dataset indices
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


class PackedCollator:
    """Packs latent samples into ``rows`` rows of ``max_tokens`` (None: as many rows as needed).

    Args:
        patch: the DiT's (pt, ph, pw).
        max_tokens: row length.
        rows: fixed row count for static shapes, or None.
        dropping: token dropping applied when packing (training only).
        seed: seeds the dropping; each call advances a private generator, so runs repeat.
    """

    def __init__(
        self,
        patch: Patch,
        max_tokens: int,
        rows: int | None = None,
        dropping: TokenDropping | None = None,
        seed: int = 0,
    ):
        self.patch, self.max_tokens, self.rows, self.dropping = tuple(patch), max_tokens, rows, dropping
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, items: list) -> PackedVideoBatch:
        samples, skipped = split_skipped(items)
        if not samples:
            raise ValueError(f"every sample of the batch was unreadable: {skipped}")
        packed = pack(
            [s.video for s in samples],
            self.patch,
            self.max_tokens,
            num_rows=self.rows,
            dropping=self.dropping,
            generator=self.generator,
        )
        return PackedVideoBatch(
            packed=packed,
            captions=[s.caption for s in samples],
            indices=torch.tensor([s.index for s in samples], dtype=torch.long),
            skipped=skipped,
        )
