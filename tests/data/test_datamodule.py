from pathlib import Path

import numpy as np
import pytest

from videodiff.data import ClipSampling, LatentGrid, ShapeBuckets, SyntheticData, VideoDataModule
from videodiff.data.batching import ShapeBucketSampler
from videodiff.data.datasets import ClipPlanner
from videodiff.data.manifest import ManifestEntry, read_manifest, write_manifest

GRID = LatentGrid(temporal_compression=2, spatial_compression=4, patch_size=(1, 2, 2))


def _epoch(datamodule, loader):
    seen, shapes = [], []
    for batch in loader:
        datamodule.on_before_batch_transfer(batch, 0)
        assert batch.video.shape[0] == len(batch.captions) <= 3
        shapes.append(tuple(batch.video.shape[2:]))
        seen.extend(batch.indices.tolist())
    return seen, shapes


@pytest.mark.parametrize("random_size", [False, True])
def test_same_shape_batches_cover_every_sample_once(synthetic_set, random_size):
    sampling = ClipSampling(target_fps=8, max_frames=17, token_budget=300, random_size=random_size)
    dm = VideoDataModule(
        manifest=str(synthetic_set),
        grid=GRID,
        sampling=sampling,
        batching=ShapeBuckets(batch_size=3),
        val_fraction=0.25,
    )
    dm.setup("fit")
    assert len(dm.train_entries) == 18 and len(dm.val_entries) == 6
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        seen, shapes = _epoch(dm, loader)
        if len(loader.batch_sampler.plan(epoch)) == len(loader):  # else the epoch is cut/wrapped to epoch 0's length
            assert sorted(seen) == list(range(len(dm.train_entries)))
        assert len(shapes) == len(loader)
        for t, h, w in shapes:
            assert GRID.is_valid_frames(t) and GRID.tokens(t, h, w) <= 300
    val_seen, _ = _epoch(dm, dm.val_dataloader())
    assert sorted(val_seen) == list(range(6))
    assert dm.num_skipped == 0


def test_random_sizes_change_with_the_epoch_and_repeat_with_the_seed(synthetic_set):
    entries = read_manifest(synthetic_set)
    planner = ClipPlanner(GRID, ClipSampling(token_budget=300, random_size=True))
    make = lambda: ShapeBucketSampler(entries, planner, 4, shuffle=True, seed=1, randomise=True)
    a, b = make(), make()
    plans = lambda s: [(r.index, r.plan, r.start) for batch in s for r in batch]
    assert plans(a) == plans(b)
    b.set_epoch(1)
    assert plans(a) != plans(b)


def test_epochs_keep_epoch_0s_length_follow_the_epoch_source_and_resume_mid_epoch(synthetic_set):
    entries = read_manifest(synthetic_set)
    planner = ClipPlanner(GRID, ClipSampling(token_budget=300, random_size=True))
    sampler = ShapeBucketSampler(entries, planner, 3, shuffle=True, seed=2, randomise=True)
    ids = lambda batches: [[r.index for r in batch] for batch in batches]
    plans = {epoch: ids(sampler.plan(epoch)) for epoch in range(6)}
    assert len({len(p) for p in plans.values()}) > 1, "random sizes should pack into different batch counts"
    epoch = [0]
    sampler.epoch_source = lambda: epoch[0]  # what the data module wires to trainer.current_epoch
    for epoch[0] in range(6):
        got = ids(list(sampler))
        assert len(got) == len(sampler) == len(plans[0])
        n = min(len(got), len(plans[epoch[0]]))
        assert got[:n] == plans[epoch[0]][:n]  # its own plan, cut or wrapped to epoch 0's length
        assert got[n:] == plans[epoch[0]][: len(got) - n]
    # A resume continues where the killed run stopped, once; a finished epoch continues as the next one.
    epoch[0] = 3
    full = ids(list(sampler))
    sampler.resume_at(3, 2)
    assert ids(list(sampler)) == full[2:] and ids(list(sampler)) == full
    sampler.resume_at(3, len(full))
    epoch[0] = 3  # Lightning still names the finished epoch when it draws the next one's first batch
    next_epoch = ShapeBucketSampler(entries, planner, 3, shuffle=True, seed=2, randomise=True)
    next_epoch.set_epoch(4)
    assert ids(list(sampler)) == ids(list(next_epoch))


def test_ranks_split_batches_without_overlap(synthetic_set):
    entries = read_manifest(synthetic_set)
    planner = ClipPlanner(GRID, ClipSampling(token_budget=300))
    ranks = [ShapeBucketSampler(entries, planner, 2, shuffle=True, num_replicas=3, rank=r) for r in range(3)]
    assert len({len(list(r)) for r in ranks}) == 1 and len(ranks[0]) == len(list(ranks[0]))
    everything = ShapeBucketSampler(entries, planner, 2, shuffle=True).batches()
    got = [[req.index for req in batch] for r in ranks for batch in r]
    assert set(sum(got, [])) == set(range(len(entries)))
    assert 0 <= len(got) - len(everything) < 3  # repeats only to equalise the ranks
    distinct = {tuple(b) for b in got}
    assert len(distinct) == len(everything)


def _every_sample_at_native_size(manifest: Path, num_workers: int) -> VideoDataModule:
    return VideoDataModule(
        manifest=str(manifest),
        grid=LatentGrid(),
        val_fraction=0.0,
        sampling=ClipSampling(token_budget=10**6),
        batching=ShapeBuckets(2),
        num_workers=num_workers,
    )


def test_corrupt_files_are_skipped_counted_and_reported(tmp_path, clip_manifest, recwarn):
    manifest, _ = clip_manifest
    entries = read_manifest(manifest)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 2048)
    # With metadata the file is only found while loading; without, when setup probes it.
    entries.append(ManifestEntry(str(tmp_path / "broken.mp4"), "x", frames=9, fps=12.0, height=16, width=24))
    entries.append(ManifestEntry(str(tmp_path / "missing.mp4"), "y"))
    write_manifest(entries, tmp_path / "with_bad.jsonl")
    dm = _every_sample_at_native_size(tmp_path / "with_bad.jsonl", num_workers=1)
    dm.setup("fit")
    assert dm.skipped == {str(tmp_path / "missing.mp4"): "file not found"}
    seen, _ = _epoch(dm, dm.train_dataloader())
    assert len(seen) == len(entries) - 2  # the broken file is skipped, the epoch completes
    assert dm.num_skipped == 2 and "cannot open" in dm.skipped[str(tmp_path / "broken.mp4")]
    messages = [str(w.message) for w in recwarn]
    assert sum("broken.mp4" in m for m in messages) == 1  # warned once per file
    _epoch(dm, dm.train_dataloader())
    assert sum("broken.mp4" in str(w.message) for w in recwarn) == 1 and dm.num_skipped == 2


def test_split_is_deterministic_and_disjoint(synthetic_set):
    split = lambda seed: VideoDataModule(manifest=str(synthetic_set), val_fraction=0.2, seed=seed)
    a, b, c = split(0), split(0), split(1)
    for dm in (a, b, c):
        dm.setup("fit")
    paths = lambda entries: {e.path for e in entries}
    assert paths(a.val_entries) == paths(b.val_entries) != paths(c.val_entries)
    assert not paths(a.train_entries) & paths(a.val_entries)
    assert len(a.train_entries) + len(a.val_entries) == 24


def test_separate_val_manifest(clip_manifest, synthetic_set):
    manifest, _ = clip_manifest
    dm = VideoDataModule(manifest=str(synthetic_set), val_manifest=str(manifest))
    dm.setup("fit")
    assert len(dm.train_entries) == 24 and len(dm.val_entries) == 7


def test_configuration_errors(tmp_path, synthetic_set):
    with pytest.raises(ValueError, match="exactly one of 'manifest', 'synthetic' and 'latents'"):
        VideoDataModule()
    with pytest.raises(ValueError, match="exactly one of"):
        VideoDataModule(manifest=str(synthetic_set), synthetic=SyntheticData(num=2))
    with pytest.raises(ValueError, match="val_fraction"):
        VideoDataModule(manifest=str(synthetic_set), val_fraction=1.0)
    (tmp_path / "empty.jsonl").write_text("")
    dm = VideoDataModule(manifest=str(tmp_path / "empty.jsonl"))
    with pytest.raises(ValueError, match="empty.jsonl: no readable training samples"):
        dm.setup("fit")


def test_synthetic_data_is_generated_once(tmp_path):
    spec = SyntheticData(num=3, seed=2, cache_dir=str(tmp_path))
    manifest = spec.ensure()
    stamp = manifest.stat().st_mtime_ns
    assert spec.ensure() == manifest and manifest.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [spec.folder.name]  # no staging folder left behind
    dm = VideoDataModule(synthetic=spec, val_fraction=0.0)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_entries) == 3


def test_packed_rows_batches_fit_their_rows_and_cover_every_sample(synthetic_set):
    from videodiff.data import PackedRows
    from videodiff.packing.pack import first_fit

    sampling = ClipSampling(target_fps=8, max_frames=17, token_budget=300, random_size=True)
    dm = VideoDataModule(
        manifest=str(synthetic_set),
        grid=GRID,
        sampling=sampling,
        batching=PackedRows(max_tokens=320, rows=2),
        val_fraction=0.0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    seen, shapes = [], set()
    for batch in loader:
        tokens = [GRID.tokens(*v.shape[1:]) for v in batch.videos]
        assert len(first_fit(tokens, 320)) <= 2
        seen.extend(batch.indices.tolist())
        shapes.update(tuple(v.shape) for v in batch.videos)
    assert sorted(seen) == list(range(24)) and len(shapes) > 5
    # Far fewer batches than samples: several videos share each row.
    assert len(loader) < 24 / 2
    too_small = VideoDataModule(
        manifest=str(synthetic_set), grid=GRID, sampling=sampling, batching=PackedRows(max_tokens=100, rows=2)
    )
    with pytest.raises(ValueError, match=r"token_budget=300 is more than a packed row holds \(.*max_tokens=100\)"):
        too_small.setup("fit")  # checked at setup, before any batch is planned


def test_skips_are_counted_for_packed_row_batches_too(tmp_path, clip_manifest):
    from videodiff.data import PackedRows

    manifest, _ = clip_manifest
    entries = read_manifest(manifest)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 2048)
    entries.append(ManifestEntry(str(tmp_path / "broken.mp4"), "x", frames=9, fps=12.0, height=16, width=24))
    write_manifest(entries, tmp_path / "with_bad.jsonl")
    dm = VideoDataModule(
        manifest=str(tmp_path / "with_bad.jsonl"),
        grid=LatentGrid(),
        val_fraction=0.0,
        sampling=ClipSampling(token_budget=10**6),
        batching=PackedRows(max_tokens=10**6, rows=1),
    )
    dm.setup("fit")
    seen = []
    for batch in dm.train_dataloader():  # VideoListBatch: samples of any shapes
        dm.on_before_batch_transfer(batch, 0)
        seen.extend(batch.indices.tolist())
    assert len(seen) == len(entries) - 1 and dm.skipped.keys() == {str(tmp_path / "broken.mp4")}


def test_grid_comes_from_the_model_and_a_stated_grid_must_agree(synthetic_set):
    dm = VideoDataModule(manifest=str(synthetic_set))
    with pytest.raises(ValueError, match="grid is not set and no model gives one"):
        dm.planner()
    model_grid = LatentGrid(2, 4, (1, 2, 2))
    dm.link_grid(model_grid)
    assert dm.planner().grid == model_grid
    # The autoencoder (patch 1x1x1) keeps the data's patch; its strides must still agree.
    ae_data = VideoDataModule(manifest=str(synthetic_set), grid=LatentGrid(2, 4, (1, 2, 2)))
    ae_data.link_grid(LatentGrid(2, 4, (1, 1, 1)))
    assert ae_data.grid.patch_size == (1, 2, 2)
    with pytest.raises(ValueError, match="disagrees with the model's"):
        VideoDataModule(manifest=str(synthetic_set), grid=LatentGrid(2, 8, (1, 2, 2))).link_grid(model_grid)
    with pytest.raises(ValueError, match="disagrees with the model's"):
        VideoDataModule(manifest=str(synthetic_set), grid=LatentGrid(2, 4, (1, 1, 1))).link_grid(model_grid)


def _audio_only(path):
    """An mp4 with no video stream: what a codec or stream the decoder cannot use looks like to it."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("num_workers", [0, 1])
def test_every_kind_of_bad_file_is_skipped_mid_epoch_counted_and_reported(tmp_path, clip_manifest, num_workers):
    from videodiff.data.decoding import write_image

    manifest, arrays = clip_manifest
    good = read_manifest(manifest)
    first = good[0]
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(Path(first.path).read_bytes()[: Path(first.path).stat().st_size // 3])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(bytes(range(256)) * 16)
    _audio_only(tmp_path / "audio.mp4")
    odd = write_image(tmp_path / "odd.png", np.full((17, 33, 3), 200, np.uint8))  # odd sizes are fine
    meta = dict(frames=9, fps=12.0, height=16, width=24)  # metadata given: nothing is probed at setup
    bad = ["truncated.mp4", "empty.mp4", "garbage.mp4", "audio.mp4", "missing.mp4"]
    entries = good + [ManifestEntry(str(tmp_path / name), "", **meta) for name in bad]
    entries.append(ManifestEntry(str(odd), "word " * 300, frames=1, height=17, width=33))
    write_manifest(entries, tmp_path / "bad.jsonl")
    dm = _every_sample_at_native_size(tmp_path / "bad.jsonl", num_workers)
    dm.setup("fit")
    assert dm.num_skipped == 0  # found only while loading, mid-epoch
    with pytest.warns(UserWarning) as warned:
        seen, shapes = _epoch(dm, dm.train_dataloader())
    assert len(seen) == len(good) + 1  # every good file and the odd-sized image, the epoch completes
    assert sorted(Path(p).name for p in dm.skipped) == sorted(bad)
    reasons = {Path(p).name: r for p, r in dm.skipped.items()}
    assert reasons["empty.mp4"] == "empty file (0 bytes)" and reasons["missing.mp4"] == "file not found"
    assert "video stream" in reasons["audio.mp4"]
    assert sorted(Path(str(w.message).split()[3].rstrip(":")).name for w in warned) == sorted(bad)
