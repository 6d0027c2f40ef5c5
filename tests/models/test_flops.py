"""The closed-form FLOP count (MFU's numerator) against PyTorch's FlopCounterMode run on each video alone."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from videodiff.models.dit.model import DiT
from videodiff.models.flops import dit_forward_flops, dit_training_flops, peak_matmul_flops
from videodiff.packing.pack import pack

PATCH = (1, 2, 2)
SHAPES = [(4, 3, 6, 4), (4, 1, 8, 8), (4, 5, 4, 6)]  # a clip, an image, a longer clip


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "layout",
    [{"attention": "joint"}, {"attention": "factorised"}, {"attention": "factorised", "factorised": "sequential"}],
)
@pytest.mark.parametrize("conditioning", ["labels", "captions", "pooled captions"])
def test_packed_count_equals_each_video_counted_alone(layout, conditioning):
    torch.manual_seed(0)
    text = conditioning != "labels"
    model = DiT(
        in_channels=4,
        patch_size=PATCH,
        hidden_size=32,
        depth=2,
        num_heads=2,
        attention_backend="loop",
        text_dim=16 if text else None,
        num_classes=None if text else 5,
        pooled_captions=conditioning == "pooled captions",
        **layout,
    ).eval()
    videos = [torch.randn(*s) for s in SHAPES]
    captions = [torch.randn(3, 16), None, torch.randn(7, 16)]
    caption_lengths = [3, None, 7]

    def alone(i: int) -> int:
        _, t, h, w = videos[i].shape
        batch = pack([videos[i]], PATCH, max_tokens=t * (h // 2) * (w // 2))  # one row, no padding
        kwargs = {"captions": [captions[i]]} if text else {"labels": torch.tensor([2])}
        with torch.no_grad():
            return counted(lambda: model(batch.tokens, torch.tensor([10]), batch, **kwargs))

    batch = pack(videos, PATCH, max_tokens=40)  # several rows with padding: the count must not see it
    assert batch.padding_fraction() > 0
    closed_form = dit_forward_flops(model, batch, caption_lengths if text else None)
    assert closed_form == sum(alone(i) for i in range(len(videos)))
    assert dit_training_flops(model, batch, caption_lengths if text else None) == 3 * closed_form


def test_count_excludes_what_a_dense_mask_computes():
    model = DiT(in_channels=4, patch_size=PATCH, hidden_size=32, depth=2, num_heads=2, num_classes=5).eval()
    videos = [torch.randn(*s) for s in SHAPES]
    batch = pack(videos, PATCH, max_tokens=128, one_per_row=True)  # padded to the longest
    with torch.no_grad():
        dense = counted(
            lambda: model(batch.tokens, torch.zeros(3, dtype=torch.long), batch, labels=torch.zeros(3).long())
        )
    assert dit_forward_flops(model, batch) < dense


def test_cross_attention_needs_caption_lengths():
    model = DiT(in_channels=4, patch_size=PATCH, hidden_size=32, depth=1, num_heads=2, text_dim=16)
    with pytest.raises(ValueError, match="caption_lengths"):
        dit_forward_flops(model, pack([torch.randn(*SHAPES[0])], PATCH, 64))


def test_peak_matmul_flops_is_a_rate():
    assert peak_matmul_flops(size=256) > 1e6
