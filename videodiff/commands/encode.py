"""``videodiff encode``: encode every readable clip of a manifest into a latent cache for the DiT."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track

from videodiff.commands import run_reporting_errors
from videodiff.data.datamodule import VideoDataModule
from videodiff.data.datasets import ClipSampling, SkippedSample
from videodiff.data.latents import write_latent
from videodiff.data.manifest import ManifestEntry, ManifestError, write_manifest
from videodiff.models.autoencoder.module import AutoencoderModule


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videodiff encode",
        description="Encode a manifest's clips with a trained autoencoder into DIR/latents and DIR/manifest.jsonl.",
    )
    parser.add_argument("--ckpt", required=True, help="AutoencoderModule checkpoint")
    parser.add_argument("--manifest", required=True, help="video manifest (.jsonl or .csv)")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=[1, 2, 2],
        metavar=("PT", "PH", "PW"),
        help="the DiT's patch size, so cached sizes fit its token grid (default 1 2 2)",
    )
    parser.add_argument("--target-fps", type=float, default=8.0)
    parser.add_argument("--max-frames", type=int, default=33)
    parser.add_argument("--token-budget", type=int, default=4096, help="DiT tokens per clip at most")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


@torch.no_grad()
def encode_manifest(args: argparse.Namespace, console: Console) -> int:
    module = AutoencoderModule.from_checkpoint(args.ckpt, map_location=args.device)
    grid = replace(module.latent_grid, patch_size=tuple(args.patch))
    sampling = ClipSampling(target_fps=args.target_fps, max_frames=args.max_frames, token_budget=args.token_budget)
    data = VideoDataModule(
        manifest=args.manifest, grid=grid, sampling=sampling, val_fraction=args.val_fraction, seed=args.seed
    )
    data.setup("fit")
    out = Path(args.out)
    written: list[ManifestEntry] = []
    index = 0
    for split, entries in (("train", data.train_entries), ("val", data.val_entries)):
        dataset = data.dataset(entries)
        for i in track(
            range(len(entries)), description=f"encoding {split}", transient=True, disable=not console.is_terminal
        ):
            sample = dataset[i]  # an int index takes the deterministic (largest) plan
            if isinstance(sample, SkippedSample):
                data.record_skipped(sample.path, sample.reason)
                continue
            latent = module.encode(sample.video[None].to(args.device))[0].cpu()  # (C, T', H', W')
            path = write_latent(out, index, latent)
            index += 1
            source = entries[i]
            written.append(
                ManifestEntry(
                    path=str(path),
                    caption=source.caption,
                    fps=sample.fps or None,
                    extra={
                        **source.extra,
                        "latent_shape": list(latent.shape[1:]),
                        "split": split,
                        "source": source.path,
                        "pixel_shape": list(sample.video.shape[1:]),
                    },
                )
            )
    manifest = write_manifest(written, out / "manifest.jsonl")
    console.print(f"encoded {len(written)} clips into {manifest}; skipped {data.num_skipped}", highlight=False)
    for path, reason in data.skipped.items():
        console.print(f"  skipped: {path}: {reason}", highlight=False, soft_wrap=True)
    return 0


def main(argv: list[str]) -> int:
    return run_reporting_errors(
        encode_manifest, build_parser().parse_args(argv), (ManifestError, ValueError, OSError), code=1
    )
