"""``videodiff sample``: generate videos from a DiT checkpoint, any size per prompt, in one packed call."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.data.decoding import VideoReadError
from videodiff.data.sizing import SizingError, parse_size
from videodiff.diffusion.config import SAMPLERS
from videodiff.diffusion.samplers import check_strength


def size_argument(text: str) -> tuple[int, int, int]:
    try:
        return parse_size(text)
    except ValueError as e:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videodiff sample",
        description="Generate one video per prompt with a trained DiT (one mp4 each, plus a GIF grid).",
    )
    parser.add_argument("--ckpt", required=True, help="a DiTModule checkpoint (from `videodiff fit`)")
    parser.add_argument("--prompt", action="append", required=True, help="a caption; repeat for several videos")
    parser.add_argument("--frames", type=int, help="frames of every video (1: an image)")
    parser.add_argument("--height", type=int, help="height in pixels of every video")
    parser.add_argument("--width", type=int, help="width in pixels of every video")
    parser.add_argument(
        "--size",
        type=size_argument,
        action="append",
        help="FRAMESxHEIGHTxWIDTH, one per prompt (repeat) or one for all; instead of --frames/--height/--width",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sampler", choices=SAMPLERS, default="auto", help="auto: DDIM, or Euler for a flow")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    parser.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None, help="packed row length (default: longest video)")
    parser.add_argument("--no-ema", action="store_true", help="sample with the raw weights, not the EMA ones")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the written files")
    parser.add_argument("--out", default="samples", help="output folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--edit",
        action="append",
        metavar="VIDEO",
        help="edit this video (or image) instead of generating from noise (SDEdit): its first frames, resized to "
        "the size asked for, are noised and redrawn under the prompt; one per prompt (repeat) or one for all",
    )
    parser.add_argument(
        "--strength", type=float, help="with --edit: how much to redraw, in (0, 1] (1: from noise; default 0.6)"
    )
    return parser


def one_per_prompt(values: list, prompts: int, what: str) -> list:
    """``values`` given once for all ``prompts`` or once each, as one per prompt; else an error naming ``what``."""
    if len(values) not in (1, prompts):
        raise ValueError(f"{len(values)} {what} for {prompts} prompts: give one, or one each")
    return list(values) * (prompts if len(values) == 1 else 1)


def edit_sources(args: argparse.Namespace, sizes: list[tuple[int, int, int]]) -> list[torch.Tensor]:
    """The ``--edit`` videos as ``(3, T, H, W)`` in [-1, 1]: each one's first T frames, resized to its size."""
    from videodiff.data.decoding import probe, read_frames
    from videodiff.data.transforms import resize, thwc_to_cthw, to_unit_range

    paths = one_per_prompt(args.edit, len(args.prompt), "--edit videos")
    videos = []
    for path, (frames, height, width) in zip(paths, sizes, strict=True):
        available = probe(path).frames
        if available < frames:
            raise ValueError(f"--edit {path}: has {available} frames, the size asks for {frames}")
        video = to_unit_range(thwc_to_cthw(torch.from_numpy(read_frames(path, list(range(frames))))))
        videos.append(resize(video, height, width))
    return videos


def sizes_from(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    given = [args.frames, args.height, args.width]
    if args.size and any(v is not None for v in given):
        raise ValueError("give either --size or --frames/--height/--width, not both")
    if args.size:
        return one_per_prompt(args.size, len(args.prompt), "--size values")
    if any(v is None for v in given):
        raise ValueError("give the size: --frames, --height and --width (or --size FxHxW)")
    return [tuple(given)] * len(args.prompt)


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "video"


def grid_frames(videos: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Videos ``(T, H, W, 3)`` of any sizes side by side on a black canvas; short ones hold their last frame."""
    frames = max(v.shape[0] for v in videos)
    height = max(v.shape[1] for v in videos)
    width = sum(v.shape[2] for v in videos) + gap * (len(videos) - 1)
    canvas = np.zeros((frames, height + height % 2, width + width % 2, 3), dtype=np.uint8)
    x = 0
    for video in videos:
        held = np.concatenate([video, np.repeat(video[-1:], frames - video.shape[0], axis=0)])
        canvas[:, : video.shape[1], x : x + video.shape[2]] = held
        x += video.shape[2] + gap
    return canvas


def sample(args: argparse.Namespace, console: Console) -> int:
    from videodiff.data.decoding import write_gif, write_image, write_video
    from videodiff.data.transforms import to_frames
    from videodiff.models.dit.module import DiTModule

    sizes = sizes_from(args)
    if args.strength is not None and not args.edit:
        raise ValueError("--strength is for --edit: give the video to edit")
    if args.edit:
        args.strength = check_strength(0.6 if args.strength is None else args.strength, "--strength")
    module = DiTModule.from_checkpoint(args.ckpt, map_location=args.device).to(args.device)
    for size in sizes:
        module.check_size(size)  # every size is checked before any work starts
    options = dict(
        steps=args.steps,
        sampler=args.sampler,
        eta=args.eta,
        guidance=args.guidance,
        seed=args.seed,
        max_tokens=args.max_tokens,
        use_ema=not args.no_ema,
        progress=console.is_terminal,
    )
    if args.edit:
        sources = edit_sources(args, sizes)
        videos = module.edit_videos(sources, args.prompt, strength=args.strength, **options)
    else:
        videos = module.sample_videos(args.prompt, sizes, **options)
    out = Path(args.out)
    arrays, records = [], []
    for i, (prompt, video) in enumerate(zip(args.prompt, videos, strict=True)):
        frames = to_frames(video)  # (T, H, W, 3)
        arrays.append(frames)
        name = f"{i:03d}-{slug(prompt)}"
        path = write_video(out / f"{name}.mp4", frames, fps=args.fps, lossless=True)
        write_gif(out / f"{name}.gif", frames, fps=args.fps)
        if frames.shape[0] == 1:
            write_image(out / f"{name}.png", frames[0])
        size = "x".join(map(str, sizes[i]))
        records.append({"file": path.name, "gif": f"{name}.gif", "prompt": prompt, "size": size})
        console.print(f"{path}  {size}  {prompt!r}", highlight=False, soft_wrap=True)
    settings = {k: getattr(args, k) for k in ("ckpt", "steps", "sampler", "eta", "guidance", "seed", "no_ema")}
    if args.edit:
        settings.update(edit=args.edit, strength=args.strength)
    with open(out / "samples.jsonl", "w") as f:  # what was asked for, beside what was made (for reports)
        for record in records:
            f.write(json.dumps({**record, **settings}) + "\n")
    grid = write_gif(out / "grid.gif", grid_frames(arrays), fps=args.fps)
    console.print(f"{grid}  all {len(videos)} side by side", highlight=False)
    return 0


def main(argv: list[str]) -> int:
    errors = (ValueError, OSError, SizingError, VideoReadError)
    return run_reporting_errors(sample, build_parser().parse_args(argv), errors, code=2)
