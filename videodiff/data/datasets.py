"""VideoDataset: manifest entries decoded into clips at the size the token budget allows.

Which clip a sample becomes (its length, start, crop and resize) is decided before it is read, by a
:class:`ClipPlanner`, so that a batch sampler can group samples of one shape (or, for the DiT, pack them)
without decoding anything. A file that fails to decode yields a :class:`SkippedSample` instead of raising,
so a corrupt video never stops an epoch; the data module counts and reports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from videodiff.data import decoding, transforms
from videodiff.data.manifest import ManifestEntry
from videodiff.data.sizing import LatentGrid, SizePlan, plan_size
from videodiff.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut from their sources.

    Args:
        target_fps: resample to this frame rate (frames are skipped, never repeated). Exclusive with
            ``frame_stride``; neither keeps every frame.
        frame_stride: keep every n-th frame.
        max_frames: longest clip, in frames at the sampling rate.
        token_budget: most DiT tokens a sample may have (see ``sizing.plan_size``).
        random_size: NaViT-style random duration and resolution per sample (training only).
        scale_range: spatial scale range when ``random_size``, as fractions of the largest that fits.
        duration_range: clip length range when ``random_size``, as fractions of the longest clip.
    """

    target_fps: float | None = None
    frame_stride: int | None = None
    max_frames: int | None = 33
    token_budget: int = 4096
    random_size: bool = False
    scale_range: tuple[float, float] = (0.5, 1.0)
    duration_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        if self.target_fps is not None and self.frame_stride is not None:
            raise ValueError("ClipSampling: give target_fps or frame_stride, not both")
        if self.token_budget < 1:
            raise ConfigError(f"data.init_args.sampling.token_budget must be >= 1 token, got {self.token_budget}")
        for name in ("scale_range", "duration_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"ClipSampling.{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")


@dataclass(frozen=True)
class SampleRequest:
    """One sample as the sampler asks for it: which entry, which clip, at which size."""

    index: int
    plan: SizePlan
    start: int
    step: float


@dataclass
class VideoSample:
    video: torch.Tensor  # (C, T, H, W) float32 in [-1, 1]
    caption: str
    index: int
    fps: float  # effective frame rate of the clip; 0.0 for an image


@dataclass(frozen=True)
class SkippedSample:
    """A sample that could not be read: travels through the loader so the main process can count it."""

    index: int
    path: str
    reason: str


@dataclass
class VideoBatch:
    """Same-shape samples stacked; ``skipped`` lists the batch's unreadable samples as (path, reason)."""

    video: torch.Tensor  # (B, C, T, H, W)
    captions: list[str]
    indices: torch.Tensor  # (B,)
    fps: torch.Tensor  # (B,)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def pin_memory(self) -> VideoBatch:
        """Called by the DataLoader's pinning thread (``pin_memory=True``): page-locked tensors copy to a GPU
        asynchronously, so the next batch's transfer overlaps the current step."""
        return replace(
            self, video=self.video.pin_memory(), indices=self.indices.pin_memory(), fps=self.fps.pin_memory()
        )


@dataclass
class VideoListBatch:
    """Samples of different shapes, unpadded, for the DiT: it encodes each and packs the latents."""

    videos: list[torch.Tensor]  # each (C, T, H, W)
    captions: list[str]
    indices: torch.Tensor  # (B,)
    fps: torch.Tensor  # (B,)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    latent: bool = False  # the videos are cached latents, not pixels
    max_tokens: int | None = None  # the packing layout the sampler formed the batch for
    rows: int | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def pin_memory(self) -> VideoListBatch:
        """See ``VideoBatch.pin_memory``."""
        return replace(
            self,
            videos=[v.pin_memory() for v in self.videos],
            indices=self.indices.pin_memory(),
            fps=self.fps.pin_memory(),
        )


class ClipPlanner:
    """Turns a manifest entry into a :class:`SampleRequest` (deterministic without ``rng``)."""

    def __init__(self, grid: LatentGrid, sampling: ClipSampling):
        self.grid, self.sampling = grid, sampling

    @property
    def random_size(self) -> bool:
        return self.sampling.random_size

    def tokens(self, shape: tuple[int, int, int]) -> int:
        """DiT tokens of a planned ``(frames, height, width)`` clip."""
        return self.grid.tokens(*shape)

    def step(self, entry: ManifestEntry) -> float:
        if entry.is_image:
            return 1.0
        return decoding.frame_step(entry.fps, self.sampling.target_fps, self.sampling.frame_stride)

    def plan(self, index: int, entry: ManifestEntry, rng: np.random.Generator | None = None) -> SampleRequest:
        if not entry.has_metadata:
            raise ValueError(f"{entry.path}: frames/fps/height/width unknown; scan the manifest first")
        step = self.step(entry)
        frames = decoding.available_frames(entry.frames, step)
        randomise = rng is not None and self.sampling.random_size
        plan = plan_size(
            frames,
            entry.height,
            entry.width,
            self.grid,
            self.sampling.token_budget,
            max_frames=self.sampling.max_frames,
            rng=rng if randomise else None,
            scale_range=self.sampling.scale_range,
            duration_range=self.sampling.duration_range,
        )
        last_start = entry.frames - 1 - int(np.floor((plan.frames - 1) * step + 1e-9))
        start = int(rng.integers(0, last_start + 1)) if rng is not None else 0
        return SampleRequest(index=index, plan=plan, start=start, step=step)


class VideoDataset(Dataset):
    """Decodes the clips that :class:`SampleRequest` s describe. An ``int`` index uses the default plan.

    Returns float32 ``(C, T, H, W)`` video in [-1, 1]; a source at the planned size is returned bit-exact.
    """

    def __init__(self, entries: list[ManifestEntry], planner: ClipPlanner, num_threads: int = 1):
        self.entries, self.planner, self.num_threads = entries, planner, num_threads

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, request: SampleRequest | int) -> VideoSample | SkippedSample:
        if not isinstance(request, SampleRequest):
            request = self.planner.plan(int(request), self.entries[int(request)])
        entry = self.entries[request.index]
        try:
            return self._load(entry, request)
        except decoding.VideoReadError as e:
            return SkippedSample(request.index, e.path, e.reason)

    def _load(self, entry: ManifestEntry, request: SampleRequest) -> VideoSample:
        plan = request.plan
        indices = None
        if not entry.is_image:
            indices = decoding.clip_indices(entry.frames, plan.frames, request.step, request.start)
        frames = decoding.read_frames(entry.path, indices, num_threads=self.num_threads)  # (T, H, W, C)
        height, width = frames.shape[1:3]
        if (height, width) != (entry.height, entry.width):
            raise decoding.VideoReadError(
                entry.path, f"frames are {height}x{width}, the manifest says {entry.height}x{entry.width}"
            )
        video = transforms.to_unit_range(transforms.thwc_to_cthw(frames))  # (C, T, H, W)
        video = transforms.center_crop(video, plan.crop_height, plan.crop_width)
        video = transforms.resize(video, plan.height, plan.width)
        fps = 0.0 if entry.is_image else entry.fps / request.step
        return VideoSample(video=video, caption=entry.caption, index=request.index, fps=fps)


def split_skipped(items: list[VideoSample | SkippedSample]) -> tuple[list[VideoSample], list[tuple[str, str]]]:
    """The readable samples of a batch, and (path, reason) of the skipped ones, for every collate function."""
    samples = [s for s in items if not isinstance(s, SkippedSample)]
    return samples, [(s.path, s.reason) for s in items if isinstance(s, SkippedSample)]


def collate_video_list(
    items: list[VideoSample | SkippedSample],
    latent: bool = False,
    max_tokens: int | None = None,
    rows: int | None = None,
) -> VideoListBatch:
    """Keep samples of any shapes as a list; skipped samples are reported, as in ``collate_same_shape``.

    ``max_tokens`` and ``rows`` travel with the batch so the module packs it into the layout it was formed for.
    """
    samples, skipped = split_skipped(items)
    return VideoListBatch(
        videos=[s.video for s in samples],
        captions=[s.caption for s in samples],
        indices=torch.tensor([s.index for s in samples], dtype=torch.long),
        fps=torch.tensor([s.fps for s in samples], dtype=torch.float32),
        skipped=skipped,
        latent=latent,
        max_tokens=max_tokens,
        rows=rows,
    )


def collate_same_shape(items: list[VideoSample | SkippedSample]) -> VideoBatch:
    """Stack samples of one shape; skipped samples are reported in ``VideoBatch.skipped``, not padded."""
    samples, skipped = split_skipped(items)
    shapes = {tuple(s.video.shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"collate_same_shape got samples of shapes {sorted(shapes)}; use a shape-bucket sampler")
    if samples:
        video = torch.stack([s.video for s in samples])  # (B, C, T, H, W)
    else:
        video = torch.empty(0, 3, 0, 0, 0)
    return VideoBatch(
        video=video,
        captions=[s.caption for s in samples],
        indices=torch.tensor([s.index for s in samples], dtype=torch.long),
        fps=torch.tensor([s.fps for s in samples], dtype=torch.float32),
        skipped=skipped,
    )
