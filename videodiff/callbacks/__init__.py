"""Callbacks own *when* and *where* (frequency, rank zero, loggers); modules own *what* (``sample_videos``)."""

from videodiff.callbacks.fvd import FVDCallback
from videodiff.callbacks.sample_videos import SampleVideos

__all__ = ["FVDCallback", "SampleVideos"]
