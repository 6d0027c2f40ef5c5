"""The only module that touches codecs: decord for reading videos, PyAV for images and for writing.

Frames leave this module as uint8 ``(T, H, W, C)`` numpy arrays (C = 3, RGB); layout changes happen in
``transforms``. Anything unreadable raises :class:`VideoReadError` naming the file and the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np

from videodiff.data.manifest import IMAGE_SUFFIXES

# decord prints FFmpeg's own log lines for every broken file; our errors carry the reason instead.
decord.logging.set_level(decord.logging.QUIET)
av.logging.set_level(av.logging.PANIC)


class VideoReadError(RuntimeError):
    """A video or image that cannot be decoded. ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds: frame count, frame rate (None for images) and frame size."""

    frames: int
    fps: float | None
    height: int
    width: int


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _check_file(path: str | os.PathLike) -> None:
    if not os.path.exists(path):
        raise VideoReadError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "empty file (0 bytes)")


def _open(path: str | os.PathLike, num_threads: int) -> decord.VideoReader:
    _check_file(path)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as e:  # decord raises DECORDError/RuntimeError with FFmpeg's message
        raise VideoReadError(path, f"cannot open as video ({_first_line(e)})") from None
    if len(reader) == 0:
        raise VideoReadError(path, "no frames")
    return reader


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _read_image(path: str | os.PathLike) -> np.ndarray:
    _check_file(path)
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")[None]  # (1, H, W, C)
    except (av.FFmpegError, StopIteration, ValueError) as e:
        raise VideoReadError(path, f"cannot decode image ({_first_line(e) or 'no frame'})") from None


def probe(path: str | os.PathLike, full: bool = False, num_threads: int = 1) -> VideoInfo:
    """Read a file's metadata with the decoder training uses, and prove it decodes.

    The first and last frames are decoded (catching truncated files); ``full=True`` decodes every frame.
    """
    if is_image(path):
        image = _read_image(path)
        return VideoInfo(frames=1, fps=None, height=image.shape[1], width=image.shape[2])
    reader = _open(path, num_threads)
    n = len(reader)
    indices = list(range(n)) if full else sorted({0, n - 1})
    frames = _get_batch(reader, path, indices)
    fps = float(reader.get_avg_fps())
    if not math.isfinite(fps) or fps <= 0:
        raise VideoReadError(path, f"invalid frame rate {fps}")
    return VideoInfo(frames=n, fps=fps, height=frames.shape[1], width=frames.shape[2])


def _get_batch(reader: decord.VideoReader, path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    try:
        frames = reader.get_batch(list(indices)).asnumpy()
    except Exception as e:
        frames = _get_padded_frames(reader, indices)
        if frames is None:
            raise VideoReadError(path, f"cannot decode frames ({_first_line(e)})") from None
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise VideoReadError(path, f"decoder returned frames of shape {tuple(frames.shape)}")
    return frames


def _get_padded_frames(reader: decord.VideoReader, indices: Sequence[int]) -> np.ndarray | None:
    """Work around decord 0.6 deriving the channel count from FFmpeg's padded row size.

    For some narrow widths (2-24, 48, 72 px) the aligned RGB row is an exact multiple of the width, so
    decord reports e.g. (H, 48, 4) frames and ``get_batch`` fails its size check. The bytes are right: each
    row is ``3 * W`` RGB bytes plus padding. Frames are then read one by one and the padding cut off.
    Returns None when the failure is something else.
    """
    try:
        first = reader[int(indices[0])]
    except Exception:
        return None
    height, width, channels = first.shape
    if channels == 3 or width * channels < 3 * width:
        return None
    out = np.empty((len(indices), height, width, 3), np.uint8)
    for k, i in enumerate(indices):
        try:
            padded = reader[int(i)].asnumpy().reshape(height, width * channels)
        except Exception:  # a frame that does not decode: the caller reports the file as unreadable
            return None
        out[k] = padded[:, : 3 * width].reshape(height, width, 3)
    return out


def frame_step(source_fps: float | None, target_fps: float | None = None, stride: int | None = None) -> float:
    """Source frames per sampled frame. Never below 1: a clip is subsampled, frames are never duplicated."""
    if target_fps is not None and stride is not None:
        raise ValueError("give either target_fps or stride, not both")
    if target_fps is not None:
        if target_fps <= 0:
            raise ValueError(f"target_fps must be positive, got {target_fps}")
        if source_fps is None:
            return 1.0
        return max(1.0, source_fps / target_fps)
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return float(stride or 1)


def available_frames(num_source_frames: int, step: float) -> int:
    """How many frames a clip sampled every ``step`` source frames can have (see ``clip_indices``)."""
    # Frame k is source frame floor(k * step), which exists while k * step < num_source_frames.
    return max(1, math.ceil(num_source_frames / step - 1e-9))


def clip_indices(num_source_frames: int, num_frames: int, step: float, start: float = 0.0) -> list[int]:
    """Source frame indices of a clip of ``num_frames`` frames, one every ``step`` frames from ``start``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    last = start + (num_frames - 1) * step
    if start < 0 or math.floor(last + 1e-9) > num_source_frames - 1:
        raise ValueError(
            f"a clip of {num_frames} frames every {step} from {start} needs "
            f"{math.floor(last + 1e-9) + 1} source frames, the video has {num_source_frames}"
        )
    return [int(math.floor(start + k * step + 1e-9)) for k in range(num_frames)]


def read_frames(path: str | os.PathLike, indices: Sequence[int] | None = None, num_threads: int = 1) -> np.ndarray:
    """Decode the given frames (all when None) as uint8 ``(T, H, W, C)``. Images are 1-frame videos."""
    if is_image(path):
        image = _read_image(path)
        if indices is not None and list(indices) != [0]:
            raise VideoReadError(path, f"an image has one frame, asked for indices {list(indices)[:8]}")
        return image
    reader = _open(path, num_threads)
    try:
        if indices is None:
            indices = range(len(reader))
        bad = [i for i in indices if not 0 <= i < len(reader)]
        if bad:
            raise VideoReadError(path, f"frame index {bad[0]} out of range for {len(reader)} frames")
        return _get_batch(reader, path, indices)
    except VideoReadError:
        raise
    except Exception as e:  # whatever the decoder raises, a bad file is a VideoReadError: skipped, not a crash
        raise VideoReadError(path, f"decoder error ({type(e).__name__}: {_first_line(e)})") from None


def write_video(
    path: str | os.PathLike, frames_thwc: np.ndarray, fps: float, lossless: bool = False, crf: int = 18
) -> Path:
    """Write uint8 ``(T, H, W, C)`` RGB frames as H.264.

    ``lossless=True`` uses libx264rgb at qp 0 (RGB, no chroma subsampling): decoded frames equal the input
    exactly, which tests rely on. Otherwise yuv420p (the format every player reads; even sides required).
    """
    path = Path(path)
    frames_thwc = np.ascontiguousarray(frames_thwc)
    if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3 or frames_thwc.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {frames_thwc.dtype} {frames_thwc.shape}")
    _, height, width, _ = frames_thwc.shape
    if not lossless and (height % 2 or width % 2):
        raise ValueError(f"yuv420p needs even sides, got {height}x{width}; pass lossless=True or resize")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb" if lossless else "libx264", rate=_fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        # One thread: the codec's threads would fight the data loader's workers for the same cores.
        # x264 decides frame types in lookahead threads whose timing varies under load; one thread makes the
        # bitstream (not just the picture) a pure function of the frames.
        stream.options = {"qp": "0"} if lossless else {"crf": str(crf)}
        stream.options["x264-params"] = "threads=1:lookahead-threads=1:sliced-threads=0"
        stream.thread_count = 1
        for frame in frames_thwc:
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if not lossless:
                # Convert here with one swscale thread: threaded conversion dithers by slice, and the
                # slices it got varied with machine load, so the same frames gave different videos.
                picture = picture.reformat(format="yuv420p", threads=1)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path


def _fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_image(path: str | os.PathLike, frame_hwc: np.ndarray) -> Path:
    """Write one uint8 ``(H, W, C)`` RGB frame as PNG (lossless)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame_hwc = np.ascontiguousarray(frame_hwc)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame_hwc.shape[1], frame_hwc.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_hwc, format="rgb24")))
        container.mux(stream.encode())
    return path


def read_frames_pyav(path: str | os.PathLike) -> np.ndarray:
    """Decode every frame with PyAV alone: the plain baseline the data benchmark compares against."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def write_gif(path: str | os.PathLike, frames_thwc: np.ndarray, fps: float) -> Path:
    """Write uint8 ``(T, H, W, 3)`` RGB frames as an animated GIF (8-bit palette), for quick previews."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames_thwc = np.ascontiguousarray(frames_thwc)
    with av.open(str(path), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames_thwc.shape[2], frames_thwc.shape[1], "rgb8"
        for frame in frames_thwc:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
