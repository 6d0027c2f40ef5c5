import numpy as np
import pytest
import torch

from videodiff.data import transforms
from videodiff.data.datasets import (
    ClipPlanner,
    ClipSampling,
    SampleRequest,
    SkippedSample,
    VideoDataset,
    VideoSample,
    collate_same_shape,
)
from videodiff.data.manifest import ManifestEntry, read_manifest
from videodiff.data.sizing import LatentGrid, SizePlan


def _dataset(manifest, sampling=ClipSampling(max_frames=None, token_budget=10**6), grid=LatentGrid()):
    return VideoDataset(read_manifest(manifest), ClipPlanner(grid, sampling))


def test_native_size_samples_are_exact_frames(clip_manifest):
    manifest, arrays = clip_manifest
    dataset = _dataset(manifest)
    for i, entry in enumerate(dataset.entries):
        sample = dataset[i]
        assert isinstance(sample, VideoSample) and sample.caption == entry.caption
        expected = transforms.thwc_to_cthw(arrays[entry.path])  # (C, T, H, W)
        assert sample.video.dtype == torch.float32 and sample.video.shape == expected.shape
        assert torch.equal(transforms.to_uint8(sample.video), expected)
        assert sample.video.min() >= -1 and sample.video.max() <= 1


def test_uint8_unit_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(transforms.to_uint8(transforms.to_unit_range(x)), x)


def test_fps_resampling_picks_the_right_source_frames(write_clip, tmp_path):
    path, frames = write_clip(frames=24, height=16, width=16, fps=24)
    entry = ManifestEntry(str(path), "c", frames=24, fps=24.0, height=16, width=16)
    planner = ClipPlanner(LatentGrid(), ClipSampling(target_fps=8, max_frames=None, token_budget=10**6))
    sample = VideoDataset([entry], planner)[0]
    assert sample.fps == 8.0
    expected = transforms.thwc_to_cthw(frames[::3])  # 24 -> 8 fps: every third frame, 8 of them
    assert torch.equal(transforms.to_uint8(sample.video), expected)
    # A random start within the clip, as training uses.
    request = planner.plan(0, entry, np.random.default_rng(0))
    assert request.plan.frames == 8 and 0 <= request.start <= 2  # frames 21..23 are the only slack


def test_random_start_stays_inside_the_video(write_clip):
    path, frames = write_clip(frames=30, height=16, width=16, fps=12)
    entry = ManifestEntry(str(path), "c", frames=30, fps=12.0, height=16, width=16)
    planner = ClipPlanner(LatentGrid(), ClipSampling(frame_stride=2, max_frames=5, token_budget=10**6))
    dataset = VideoDataset([entry], planner)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(20):
        request = planner.plan(0, entry, rng)
        sample = dataset[request]
        expected = frames[request.start : request.start + 10 : 2]
        assert torch.equal(transforms.to_uint8(sample.video), transforms.thwc_to_cthw(expected))
        starts.add(request.start)
    assert len(starts) > 5 and max(starts) <= 30 - 9


def test_resize_under_a_budget_keeps_the_grid(clip_manifest):
    manifest, _ = clip_manifest
    grid = LatentGrid(temporal_compression=2, spatial_compression=4, patch_size=(1, 2, 2))
    dataset = _dataset(manifest, ClipSampling(max_frames=9, token_budget=12), grid)
    for i in range(len(dataset)):
        sample = dataset[i]
        _, t, h, w = sample.video.shape
        assert grid.is_valid_frames(t) and grid.tokens(t, h, w) <= 12


def test_unreadable_file_becomes_a_skipped_sample(tmp_path, clip_manifest):
    manifest, _ = clip_manifest
    entries = read_manifest(manifest)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
    entries.append(ManifestEntry(str(tmp_path / "bad.mp4"), "bad", frames=9, fps=12.0, height=16, width=24))
    entries.append(ManifestEntry(str(tmp_path / "gone.mp4"), "gone", frames=9, fps=12.0, height=16, width=24))
    dataset = VideoDataset(entries, ClipPlanner(LatentGrid(), ClipSampling(token_budget=10**6)))
    bad, gone = dataset[len(entries) - 2], dataset[len(entries) - 1]
    assert isinstance(bad, SkippedSample) and bad.path.endswith("bad.mp4") and "cannot open" in bad.reason
    assert isinstance(gone, SkippedSample) and gone.reason == "file not found"


def test_wrong_size_in_manifest_is_reported(clip_manifest):
    manifest, _ = clip_manifest
    entry = read_manifest(manifest)[0]
    wrong = ManifestEntry(entry.path, "c", frames=entry.frames, fps=12.0, height=entry.height + 2, width=entry.width)
    sample = VideoDataset([wrong], ClipPlanner(LatentGrid(), ClipSampling(token_budget=10**6)))[0]
    assert isinstance(sample, SkippedSample) and "the manifest says" in sample.reason


def test_collate_stacks_and_reports_skips():
    plan = SizePlan(2, 4, 4, 4, 4)
    samples = [
        VideoSample(torch.zeros(3, 2, 4, 4), "a", 0, 8.0),
        SkippedSample(1, "/x.mp4", "broken"),
        VideoSample(torch.ones(3, 2, 4, 4), "b", 2, 12.0),
    ]
    batch = collate_same_shape(samples)
    assert batch.video.shape == (2, 3, 2, 4, 4) and batch.captions == ["a", "b"]
    assert batch.indices.tolist() == [0, 2] and batch.fps.tolist() == [8.0, 12.0]
    assert batch.skipped == [("/x.mp4", "broken")] and len(batch) == 2
    assert len(collate_same_shape([SkippedSample(0, "/y", "r")])) == 0
    with pytest.raises(ValueError, match="shape-bucket sampler"):
        collate_same_shape([samples[0], VideoSample(torch.zeros(3, 1, 4, 4), "c", 3, 8.0)])
    assert SampleRequest(0, plan, 0, 1.0).plan.shape == (2, 4, 4)
