"""Video data: manifests, decoding, sizing, the built-in dataset and the shared data module."""

from videodiff.data.batching import Batching, PackedRows, ShapeBuckets
from videodiff.data.datamodule import SyntheticData, VideoDataModule
from videodiff.data.datasets import ClipSampling, VideoBatch, VideoDataset
from videodiff.data.decoding import VideoReadError
from videodiff.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from videodiff.data.sizing import LatentGrid, SizePlan, plan_size

__all__ = [
    "Batching",
    "ClipSampling",
    "LatentGrid",
    "ManifestEntry",
    "ManifestError",
    "PackedRows",
    "ShapeBuckets",
    "SizePlan",
    "SyntheticData",
    "VideoBatch",
    "VideoDataModule",
    "VideoDataset",
    "VideoReadError",
    "plan_size",
    "read_manifest",
    "write_manifest",
]
