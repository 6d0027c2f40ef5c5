import numpy as np
import pytest

from videodiff.data import decoding
from videodiff.data.decoding import VideoReadError


def test_lossless_clip_reads_back_exactly(write_clip):
    path, frames = write_clip(frames=7, height=18, width=30)
    np.testing.assert_array_equal(decoding.read_frames(path), frames)
    np.testing.assert_array_equal(decoding.read_frames(path, [5, 0, 3]), frames[[5, 0, 3]])


@pytest.mark.parametrize("width", [2, 8, 24, 48, 72, 74, 130])
def test_narrow_widths_decode_exactly(write_clip, width):
    # decord 0.6 mis-reads the channel count at some widths (see decoding._get_padded_frames).
    path, frames = write_clip(frames=3, height=10, width=width)
    np.testing.assert_array_equal(decoding.read_frames(path, [0, 2]), frames[[0, 2]])


def test_probe_reports_size_rate_and_count(write_clip):
    path, _ = write_clip(frames=11, height=20, width=36, fps=24)
    assert decoding.probe(path) == decoding.VideoInfo(frames=11, fps=24.0, height=20, width=36)
    assert decoding.probe(path, full=True) == decoding.probe(path)


def test_image_is_a_one_frame_video(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    path = decoding.write_image(tmp_path / "a.png", image)
    assert decoding.probe(path) == decoding.VideoInfo(frames=1, fps=None, height=13, width=21)
    np.testing.assert_array_equal(decoding.read_frames(path), image[None])
    with pytest.raises(VideoReadError, match="an image has one frame"):
        decoding.read_frames(path, [1])


def test_lossy_write_is_close(tmp_path):
    smooth = np.zeros((4, 32, 32, 3), np.uint8)
    smooth[:, 8:24, 8:24] = (200, 40, 40)
    path = decoding.write_video(tmp_path / "a.mp4", smooth, fps=8)
    assert np.abs(decoding.read_frames(path).astype(int) - smooth).mean() < 3
    with pytest.raises(ValueError, match="even sides"):
        decoding.write_video(tmp_path / "b.mp4", smooth[:, :31], fps=8)


def test_missing_empty_corrupt_and_truncated_files_raise_with_path(tmp_path, write_clip):
    path, _ = write_clip(frames=20, height=32, width=32)
    data = path.read_bytes()
    cases = {
        tmp_path / "missing.mp4": None,
        tmp_path / "empty.mp4": b"",
        tmp_path / "garbage.mp4": np.random.default_rng(0).bytes(4000),
        tmp_path / "truncated.mp4": data[: len(data) // 2],
        tmp_path / "garbage.png": b"\x89PNG not really",
    }
    reasons = {}
    for bad, content in cases.items():
        if content is not None:
            bad.write_bytes(content)
        with pytest.raises(VideoReadError) as info:
            decoding.probe(bad)
        assert info.value.path == str(bad) and str(bad) in str(info.value)
        reasons[bad.name] = info.value.reason
    assert reasons["missing.mp4"] == "file not found"
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["garbage.mp4"].startswith("cannot open as video")


def test_truncated_tail_is_caught_by_decoding_the_last_frame(tmp_path):
    # moov atom first (faststart): the file opens, but frames at the end are gone.
    import av

    frames = np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "fs.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=12)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoReadError, match="cut.mp4"):
        decoding.probe(cut)


def test_frame_step_and_clip_indices_resample_by_fps():
    assert decoding.frame_step(24, target_fps=8) == 3.0
    assert decoding.frame_step(12, target_fps=8) == 1.5
    assert decoding.frame_step(8, target_fps=24) == 1.0  # never duplicates frames
    assert decoding.frame_step(30, stride=2) == 2.0
    assert decoding.clip_indices(10, 5, 1.5) == [0, 1, 3, 4, 6]
    assert decoding.clip_indices(11, 4, 3.0, start=1) == [1, 4, 7, 10]
    assert decoding.available_frames(10, 1.5) == 7  # 0, 1.5, ..., 9
    assert decoding.available_frames(10, 3.0) == 4
    with pytest.raises(ValueError, match="needs 11 source frames"):
        decoding.clip_indices(10, 6, 2.0)
    with pytest.raises(ValueError, match="either target_fps or stride"):
        decoding.frame_step(24, target_fps=8, stride=2)


@pytest.mark.parametrize("source_frames, step", [(48, 3.0), (17, 1.5), (9, 1.0), (31, 2.5)])
def test_available_frames_is_the_longest_clip(source_frames, step):
    n = decoding.available_frames(source_frames, step)
    decoding.clip_indices(source_frames, n, step)  # fits
    with pytest.raises(ValueError):
        decoding.clip_indices(source_frames, n + 1, step)
