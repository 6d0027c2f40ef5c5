"""videodiff benchmarks: ``make bench`` runs every figure and writes bench/results.json and results.md.

Each figure is the median of several repeats with min and max, beside the machine and the config that
produced it. Figures from other benchmarks merge into the same files (keyed by name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def repeat(fn: Callable[[], float], repeats: int) -> dict:
    """Run ``fn`` (returning a rate) ``repeats`` times after one warm-up; median, min, max."""
    fn()
    rates = [fn() for _ in range(repeats)]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats}


def decode_benchmark(num_clips: int, repeats: int) -> dict:
    """Frames per second decoding every frame of the synthetic set's videos, three ways."""
    from videodiff.data import ClipSampling, LatentGrid, SyntheticData, VideoDataset, read_manifest
    from videodiff.data.datasets import ClipPlanner, VideoSample
    from videodiff.data.decoding import read_frames, read_frames_pyav

    manifest = SyntheticData(num=num_clips, seed=0).ensure()
    entries = [e for e in read_manifest(manifest) if not e.is_image]
    total_frames = sum(e.frames for e in entries)
    # The dataset at native size and full length: decord decode + uint8 -> float [-1, 1] (C, T, H, W).
    planner = ClipPlanner(LatentGrid(), ClipSampling(max_frames=None, token_budget=10**9))
    dataset = VideoDataset(entries, planner)

    def timed(read: Callable[[int], int]) -> Callable[[], float]:
        def run() -> float:
            start, frames = time.perf_counter(), 0
            for i in range(len(entries)):
                frames += read(i)
            return frames / (time.perf_counter() - start)

        return run

    def dataset_read(i: int) -> int:
        sample = dataset[i]
        assert isinstance(sample, VideoSample), sample
        return sample.video.shape[1]

    figures = {
        "decode_frames_per_s/videodiff_dataset": timed(dataset_read),
        "decode_frames_per_s/decord_uint8": timed(lambda i: read_frames(entries[i].path).shape[0]),
        "decode_frames_per_s/pyav_plain": timed(lambda i: read_frames_pyav(entries[i].path).shape[0]),
    }
    config = {
        "clips": len(entries),
        "frames": total_frames,
        "sizes": "32-128 px per side, 8-48 frames (built-in synthetic set, seed 0)",
        "process": "single process, decoder threads 1 (decord) / auto (PyAV)",
    }
    results = {}
    for name, fn in figures.items():
        results[name] = {**repeat(fn, repeats), "unit": "frames/s", "config": config}
        print(f"{name}: {results[name]['median']:.0f} frames/s", flush=True)
    ratio = results["decode_frames_per_s/videodiff_dataset"]["median"]
    ratio /= results["decode_frames_per_s/pyav_plain"]["median"]
    results["decode_frames_per_s/ratio_dataset_over_pyav"] = {"median": ratio, "unit": "x", "config": config}
    return results


def write(out: Path, figures: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    merged = {"machine": machine(), "figures": {**existing.get("figures", {}), **figures}}
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {merged['machine']['cpu']}, {merged['machine']['cpu_count']} cores, "
        f"torch {merged['machine']['torch']} ({merged['machine']['torch_threads']} threads), "
        f"GPU: {merged['machine']['gpu'] or 'none'}. Written by `make bench`.",
        "",
        "| figure | median | min | max | unit |",
        "|---|---|---|---|---|",
    ]
    for name, fig in sorted(merged["figures"].items()):
        cells = [f"{fig[k]:.3g}" if k in fig else "" for k in ("median", "min", "max")]
        lines.append(f"| {name} | {' | '.join(cells)} | {fig['unit']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and {out / 'results.md'}")


def recorded_shapes(path: str) -> list[tuple[int, int, int]]:
    """Latent (T, H, W) shapes saved by ``--save-shapes``."""
    return [tuple(s) for s in json.loads(Path(path).read_text())]


def packing_benchmarks(repeats: int, device: str, sizes: list[str], shapes_file: str | None) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import packing  # bench/packing.py

    figures = {}
    if shapes_file:  # a machine without the video stack (e.g. a bare GPU box) reuses a recorded mix
        shapes = recorded_shapes(shapes_file)
    else:
        shapes = packing.dataset_mix()
        figures = packing.padding_figures(shapes)
        for name in ("pack_padding_fraction", "pad_to_max_padding_fraction"):
            print(f"{name}: {figures[name]['median']:.4f}", flush=True)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for size in sizes:
        # CPU: 8 steps of PackedRows(1024, 4) for tiny, one of PackedRows(1024, 2) for the 40x larger S.
        steps, rows = (25, 4) if device == "cuda" else ((8, 4) if size == "tiny" else (1, 2))
        for layout in ("joint", "factorised"):
            figs = packing.throughput_figures(
                shapes, size, layout, steps, repeats, device=device, dtype=dtype, rows=rows
            )
            figures.update(figs)
            for key, fig in figs.items():
                print(f"{key}: {fig['median']:.3g} {fig['unit']}", flush=True)
    backends = ("loop", "sdpa", "varlen", "flex") if device == "cuda" else ("loop", "sdpa", "varlen")
    figs = packing.attention_figures(shapes, repeats, device=device, backends=backends)
    figures.update(figs)
    for key, fig in figs.items():
        print(f"{key}: {fig['median']:.3g} ms", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench", help="folder for results.json and results.md")
    parser.add_argument("--clips", type=int, default=100, help="synthetic clips to decode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=["decode", "packing", "autoencoder", "ae-quality", "sampling", "mfu", "reference"],
        help="run one group of benchmarks",
    )
    parser.add_argument(
        "--reference-dit",
        help="a checkout of facebookresearch/DiT to time side by side (needs `pip install --no-deps timm`)",
    )
    parser.add_argument("--ae-steps", type=int, default=1500, help="training steps of the ae-quality figure")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="tiny,S", help="DiT presets for the throughput figures")
    parser.add_argument("--shapes", help="JSON list of latent (T, H, W) shapes instead of the built-in mix")
    parser.add_argument("--save-shapes", help="write the built-in mix's latent shapes to this JSON file")
    args = parser.parse_args()
    figures = {}
    if args.only in (None, "decode"):
        figures.update(decode_benchmark(args.clips, args.repeats))
    if args.only in (None, "autoencoder"):
        sys.path.insert(0, str(Path(__file__).parent))
        import autoencoder  # bench/autoencoder.py

        ae_figures = autoencoder.throughput_figures(args.repeats, args.device)
        for key, fig in ae_figures.items():
            print(f"{key}: {fig['median']:.1f} frames/s", flush=True)
        figures.update(ae_figures)
    if args.only in (None, "ae-quality"):  # trains the tiny autoencoder: about 10 minutes on 2 cores
        sys.path.insert(0, str(Path(__file__).parent))
        import autoencoder

        quality = autoencoder.quality_figures(args.ae_steps)
        for key, fig in quality.items():
            print(f"{key}: {fig['median']:.3f} {fig['unit']}", flush=True)
        figures.update(quality)
    if args.only in (None, "packing"):
        figures.update(packing_benchmarks(args.repeats, args.device, args.sizes.split(","), args.shapes))
    if args.only in (None, "sampling", "mfu"):
        sys.path.insert(0, str(Path(__file__).parent))
        import dit_compute  # bench/dit_compute.py

        if args.only in (None, "sampling"):
            figures.update(dit_compute.sampling_figures(args.repeats, args.device))
        if args.only in (None, "mfu"):
            import packing

            shapes = recorded_shapes(args.shapes) if args.shapes else packing.dataset_mix()
            dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
            for size in args.sizes.split(","):
                steps, rows = (10, 4) if args.device == "cuda" else ((2, 4) if size == "tiny" else (1, 2))
                figs = dit_compute.mfu_figures(
                    shapes, size, args.repeats, args.device, steps=steps, rows=rows, dtype=dtype
                )
                for key, fig in figs.items():
                    print(f"{key}: {fig['median']:.3g} {fig['unit']}", flush=True)
                figures.update(figs)
    if args.only in (None, "reference"):
        if args.reference_dit:
            sys.path.insert(0, str(Path(__file__).parent))
            import reference_dit  # bench/reference_dit.py

            figs = reference_dit.reference_figures(Path(args.reference_dit), args.repeats, args.device)
            for key, fig in figs.items():
                print(f"{key}: {fig['median']:.3g} {fig['unit']}", flush=True)
            figures.update(figs)
        else:  # the reference is third-party code: never fetched, so the comparison needs it given
            print("reference DiT comparison not run: give --reference-dit PATH (make bench REFERENCE_DIT=PATH)")
    if args.save_shapes:
        sys.path.insert(0, str(Path(__file__).parent))
        import packing

        Path(args.save_shapes).write_text(json.dumps(packing.dataset_mix()) + "\n")
    write(Path(args.out), figures)


if __name__ == "__main__":
    main()
