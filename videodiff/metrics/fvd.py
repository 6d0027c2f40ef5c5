"""Fréchet Video Distance as a torchmetrics ``Metric`` with an injected feature network.

States are sums (of features, of their outer products, and counts), reduced by summation, so the metric is
exact under DDP: any split of the videos over processes gives the same statistics. The protocol (how many
videos, frames, stride, resolution) is explicit and names the value (``fvd2048_16f`` is the usual one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from videodiff.metrics.frechet import frechet_distance, gaussian_statistics


@dataclass(frozen=True)
class FVDProtocol:
    """How videos are prepared for the feature network.

    Args:
        num_videos: videos per set (2048 in the usual protocol; fewer are allowed and named as such).
        frames: frames per clip fed to the network (16 for I3D).
        stride: take every ``stride``-th frame.
        resolution: frames are resized to ``resolution x resolution`` (224 for I3D).
    """

    num_videos: int = 2048
    frames: int = 16
    stride: int = 1
    resolution: int = 224

    def name(self, num_videos: int | None = None) -> str:
        """``fvd{N}_{F}f`` (plus ``_s{stride}`` / ``_{R}px`` when they differ from the usual protocol)."""
        name = f"fvd{num_videos if num_videos is not None else self.num_videos}_{self.frames}f"
        if self.stride != 1:
            name += f"_s{self.stride}"
        if self.resolution != 224:
            name += f"_{self.resolution}px"
        return name

    @property
    def min_frames(self) -> int:
        """The shortest clip the protocol can take its frames from."""
        return (self.frames - 1) * self.stride + 1

    def prepare(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3, frames, R, R)``: the protocol's frames, resized."""
        needed = self.min_frames
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"expected videos (B, 3, T, H, W), got {tuple(videos.shape)}")
        if videos.shape[2] < needed:
            raise ValueError(
                f"videos have {videos.shape[2]} frames; protocol {self.name()} needs {needed} "
                f"({self.frames} frames at stride {self.stride}): sample longer clips or choose fewer frames"
            )
        clips = videos[:, :, : needed : self.stride].float()  # (B, 3, F, H, W)
        b, c, t = clips.shape[:3]
        frames = clips.transpose(1, 2).reshape(b * t, c, *clips.shape[3:])  # (B F, 3, H, W)
        frames = F.interpolate(frames, size=(self.resolution,) * 2, mode="bilinear", antialias=True)
        return frames.reshape(b, t, c, self.resolution, self.resolution).transpose(1, 2).clamp(-1, 1)


class FrechetVideoDistance(Metric):
    """FVD between the real and the generated videos seen by ``update``.

    Args:
        feature_network: maps ``(B, 3, F, R, R)`` clips in [-1, 1] to ``(B, D)`` features (I3D logits in the
            standard protocol; see ``metrics/i3d.py``). Kept frozen, in eval mode.
        feature_dim: D.
        protocol: frames, stride and resolution of the clips (and the name of the value).
        reset_real_features: whether ``reset()`` also forgets the real set (False keeps it, so a fixed real
            set is featurised once per run).
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        feature_network: nn.Module,
        feature_dim: int,
        protocol: FVDProtocol = FVDProtocol(),
        reset_real_features: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.feature_network = feature_network.eval().requires_grad_(False)
        self.protocol, self.reset_real_features = protocol, reset_real_features
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_sum", torch.zeros(feature_dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{prefix}_outer", torch.zeros(feature_dim, feature_dim, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(f"{prefix}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @torch.no_grad()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        return self.feature_network(self.protocol.prepare(videos)).double()  # (B, D)

    def update(self, videos: torch.Tensor, real: bool) -> None:
        """Add ``(B, 3, T, H, W)`` videos in [-1, 1] to the real or the generated set."""
        self.add_features(self.features(videos), real)

    def add_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed ``(B, D)`` features (e.g. a cached real set)."""
        prefix = "real" if real else "fake"
        features = features.double()
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + features.sum(0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + features.T @ features)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + features.shape[0])

    def compute(self) -> torch.Tensor:
        real = gaussian_statistics(self.real_sum, self.real_outer, self.real_count)
        fake = gaussian_statistics(self.fake_sum, self.fake_outer, self.fake_count)
        return frechet_distance(*real, *fake)

    @property
    def name(self) -> str:
        """The protocol's name with the number of generated videos actually used."""
        return self.protocol.name(int(self.fake_count))

    def reset(self) -> None:
        if self.reset_real_features:
            return super().reset()
        kept = {k: getattr(self, k).clone() for k in ("real_sum", "real_outer", "real_count")}
        super().reset()
        for key, value in kept.items():
            setattr(self, key, value)
