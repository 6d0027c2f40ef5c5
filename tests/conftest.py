"""Shared fixtures: small real video files written on the fly, and an isolated cache for every test."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videodiff.data import synthetic
from videodiff.data.decoding import write_image, write_video
from videodiff.data.manifest import ManifestEntry, write_manifest


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    # Generated datasets and trackers must never touch the user's home or the network.
    monkeypatch.setenv("VIDEODIFF_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # LightningCLI warns when given args while sys.argv holds pytest's own.
    monkeypatch.setattr("sys.argv", ["videodiff"])
    yield
    # A wandb run left open by one test would be reused by the next test's WandbLogger.
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def random_frames(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, C) frames; each frame differs, so a wrong index is caught by equality."""
    return rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@pytest.fixture
def write_clip(tmp_path):
    """Write a lossless clip of random frames; returns (path, frames)."""
    counter = iter(range(10_000))

    def write(frames: int = 9, height: int = 16, width: int = 24, fps: float = 12.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        data = random_frames(rng, frames, height, width)
        path = write_video(tmp_path / f"clip{next(counter)}.mp4", data, fps=fps, lossless=True)
        return path, data

    return write


@pytest.fixture
def clip_manifest(tmp_path):
    """A manifest of lossless clips of assorted sizes (and one PNG image), with metadata."""
    rng = np.random.default_rng(1)
    entries, arrays = [], {}
    sizes = [(9, 16, 24), (9, 16, 24), (17, 32, 16), (5, 24, 24), (9, 16, 24), (13, 40, 32)]
    for i, (t, h, w) in enumerate(sizes):
        frames = random_frames(rng, t, h, w)
        path = write_video(tmp_path / "clips" / f"{i}.mp4", frames, fps=12, lossless=True)
        entries.append(ManifestEntry(str(path), f"clip {i}", frames=t, fps=12.0, height=h, width=w))
        arrays[str(path)] = frames
    image = random_frames(rng, 1, 20, 28)
    path = write_image(tmp_path / "clips" / "still.png", image[0])
    entries.append(ManifestEntry(str(path), "a still", frames=1, height=20, width=28))
    arrays[str(path)] = image
    manifest = write_manifest(entries, tmp_path / "manifest.jsonl")
    return manifest, arrays


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """A small built-in dataset, generated once per test session; returns the manifest path."""
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), num=24, seed=3)


@pytest.fixture(scope="session")
def autoencoder_ckpt(tmp_path_factory) -> str:
    """A tiny untrained autoencoder checkpoint (the DiT only needs its strides and a deterministic map)."""
    from tests.helpers import write_autoencoder_checkpoint

    return write_autoencoder_checkpoint(tmp_path_factory.mktemp("ae") / "ae.ckpt")


@pytest.fixture(scope="session")
def tiny_autoencoder_ckpt(tmp_path_factory) -> str:
    """Untrained, with the strides of configs/autoencoder/tiny.yaml (2x spatial): what the tiny DiT configs expect."""
    from tests.helpers import write_autoencoder_checkpoint

    return write_autoencoder_checkpoint(tmp_path_factory.mktemp("ae") / "tiny.ckpt", spatial=2)
