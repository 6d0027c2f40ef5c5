"""Model FLOPs of a DiT step counted on real tokens only: what MFU divides by.

Counted in closed form from the packing layout rather than with a FLOP counter on the real run, because
the run's own kernels also compute padding (and, with a dense mask, attention across videos) that MFU must
not credit. Only matrix products count (the convention of MFU figures: norms, activations and rotary
embeddings are a few percent); ``tests/models/test_flops.py`` checks the count against PyTorch's
``FlopCounterMode`` on unpadded layouts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from videodiff.models.attention import attention_groups
from videodiff.models.dit.model import DiT
from videodiff.packing.pack import PackedBatch


def _sum_squared_group_sizes(batch: PackedBatch, layout: str) -> int:
    groups = attention_groups(batch.video_ids, batch.coords, layout)
    sizes = torch.unique(groups[groups >= 0], return_counts=True)[1]
    return int((sizes.long() ** 2).sum())


def dit_forward_flops(model: DiT, batch: PackedBatch, caption_lengths: Sequence[int | None] | None = None) -> int:
    """FLOPs (2 per multiply-add) of ``model``'s forward pass over the real tokens of ``batch``.

    Args:
        model: the DiT (its widths and attention layouts are read, not run).
        batch: the packing layout; padding and dropped tokens are excluded.
        caption_lengths: caption tokens per video when the DiT cross-attends to captions; None for a null
            caption (one learned token, not projected).
    """
    d, n, videos = model.hidden_size, int(batch.mask.sum()), batch.num_videos
    mlp = model.blocks[0].mlp[0].out_features
    macs = n * model.patch_dim * d  # patch embedding
    macs += videos * (model.timestep.mlp[0].in_features * d + d * d)  # timestep MLP
    context_tokens, cross_pairs = 0, 0
    if model.captions is not None:
        if caption_lengths is None or len(caption_lengths) != videos:
            raise ValueError(f"this DiT cross-attends to captions: give caption_lengths for all {videos} videos")
        projected = sum(length or 0 for length in caption_lengths)
        lengths = torch.tensor([1 if length is None else length for length in caption_lengths], dtype=torch.long)
        context_tokens = int(lengths.sum())
        cross_pairs = int((batch.lengths.cpu().long() * lengths).sum())
        macs += projected * (model.captions.proj[0].in_features * d + d * d)
        if model.pooled is not None:  # the pooled caption's MLP, once per video
            macs += videos * 2 * d * d
    squared = {layout: _sum_squared_group_sizes(batch, layout) for block in model.blocks for layout in block.layouts}
    for block in model.blocks:
        macs += videos * d * block.modulation[1].out_features  # adaLN, once per video
        for layout in block.layouts:
            macs += 4 * d * d * n + 2 * d * squared[layout]  # q, k, v, out projections; QK^T and AV
        if block.cross is not None:
            macs += 2 * d * d * n + 2 * d * d * context_tokens + 2 * d * cross_pairs
        macs += 2 * d * mlp * n
    macs += videos * d * model.final.modulation[1].out_features + n * d * model.final.linear.out_features
    return 2 * macs


def dit_training_flops(model: DiT, batch: PackedBatch, caption_lengths: Sequence[int | None] | None = None) -> int:
    """Forward + backward FLOPs of one training step on real tokens: the backward pass costs twice the forward."""
    return 3 * dit_forward_flops(model, batch, caption_lengths)


def peak_matmul_flops(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, size: int = 2048
) -> float:
    """The machine's measured matrix-multiply FLOP/s (best of several square products): MFU's denominator."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(5 if torch.device(device).type == "cpu" else 20):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
