import pytest
import torch

from videodiff.data.datasets import SkippedSample, VideoSample
from videodiff.packing.collate import PackedCollator
from videodiff.packing.pack import TokenDropping, unpack_videos


def _samples():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 4, 6), (4, 1, 6, 4), (4, 5, 2, 2)]
    return [VideoSample(torch.randn(s, generator=g), f"caption {i}", i, 8.0) for i, s in enumerate(shapes)]


def test_collator_packs_latents_and_keeps_captions_in_order():
    samples = _samples()
    batch = PackedCollator((1, 2, 2), max_tokens=24, rows=2)(samples + [SkippedSample(9, "/x.mp4", "broken")])
    assert batch.packed.tokens.shape == (2, 24, 16) and batch.skipped == [("/x.mp4", "broken")]
    assert batch.captions == ["caption 0", "caption 1", "caption 2"] and batch.indices.tolist() == [0, 1, 2]
    for sample, video in zip(samples, unpack_videos(batch.packed.tokens, batch.packed, (1, 2, 2)), strict=True):
        assert torch.equal(sample.video, video)


def test_collator_dropping_is_seeded():
    run = lambda: PackedCollator((1, 2, 2), 24, dropping=TokenDropping(0.5), seed=3)(_samples()).packed.token_index
    assert torch.equal(run(), run())
    with pytest.raises(ValueError, match="every sample of the batch was unreadable"):
        PackedCollator((1, 2, 2), 24)([SkippedSample(0, "/y", "r")])
