"""``videodiff data synth|scan``: write the built-in dataset; probe a manifest and write a clean copy."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import track

from videodiff.data import decoding, synthetic
from videodiff.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest


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


def _synth(args: argparse.Namespace, console: Console) -> int:
    manifest = synthetic.generate(args.out, num=args.num, seed=args.seed, image_fraction=args.image_fraction)
    console.print(f"wrote {args.num} clips and {manifest}")
    return 0


def _scan(args: argparse.Namespace, console: Console) -> int:
    try:
        entries = read_manifest(args.manifest)
    except ManifestError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videodiff data", description="Make and check datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write the built-in captioned dataset (mp4 + png + manifest.jsonl)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num", type=int, default=200, help="number of clips (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    synth.add_argument("--image-fraction", type=float, default=0.1, help="share of still images (default 0.1)")
    synth.set_defaults(run=_synth)
    scan_ = sub.add_parser(
        "scan",
        help="probe every entry with the training decoder, report unreadable files, write a clean manifest",
        description="Exit code 0 when the scan ran, whatever it found; 1 if the manifest cannot be read.",
    )
    scan_.add_argument("manifest", help="manifest (.jsonl or .csv)")
    scan_.add_argument("--out", help="clean manifest to write (default: MANIFEST with suffix .clean.jsonl)")
    scan_.add_argument("--full", action="store_true", help="decode every frame, not just the first and last")
    scan_.set_defaults(run=_scan)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args, Console(file=sys.stdout))
