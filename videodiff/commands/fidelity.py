"""``videodiff fidelity``: does a DiT trained on the built-in set follow its captions? Scored on many prompts.

``videodiff fidelity --ckpt runs/demo/dit-joint.ckpt --out fidelity.json`` samples ``--num`` (default 84)
one-object captions of the built-in grammar (every colour, shape and background in turn, each motion
equally often; seeded) at 9x40x40 and writes, per attribute, how many videos ``metrics.caption_fidelity``
judged right out of how many it scored, the accuracy with its 95% Wilson interval, and what a uniform guess
scores. Shape and motion are judged only where the colour was found, so read them beside ``color``.

Why not the demo's six prompts: a motion judged on two of them has an interval wider than the gap between
chance and perfect. On 24 prompts (what earlier sessions scored) shape and motion figures moved by 0.2 between
identical recipes; on 84 the interval is about +-0.12.

``--manifest TRAIN_MANIFEST`` splits the figures into prompts that are training captions and novel ones;
``--training-prompts`` prompts with the manifest's own one-object training captions instead. A network that
follows these but not novel prompts has memorised its clips rather than learned to compose the attributes.

``first_stage`` scores the checkpoint's own frozen autoencoder on the same captions (each scene rendered at the
probe's size, encoded and decoded): no DiT on that autoencoder can score above it.

``--edit STRENGTH`` asks where a network takes each attribute from. The rendered probe scenes are edited
(SDEdit: noised to where the last STRENGTH of the sampler's steps begin, then denoised) under their caption
with one attribute changed (colour, shape or motion, in turn), and each edit is read: does it show the new
value (``follows``) or the source's (``keeps``)? A network that keeps the source's shape at a strength where
it follows a new colour draws its shapes from its input, not from its caption (docs/dit.md, "Session 19").
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.data.manifest import ManifestError, read_manifest
from videodiff.data.sizing import SizingError, parse_size
from videodiff.data.synthetic import (
    BACKGROUNDS,
    COLORS,
    LOW_CONTRAST,
    MOTIONS,
    SHAPES,
    Scene,
    SceneObject,
    caption_for,
    parse_caption,
    render_scene,
)
from videodiff.data.transforms import thwc_to_cthw, to_frames, to_unit_range
from videodiff.diffusion.config import SAMPLERS
from videodiff.diffusion.samplers import check_strength
from videodiff.metrics.caption_fidelity import ATTRIBUTES, confusion, read_video, verdicts_of

# What naming an attribute at random scores: a background or a shape or a motion uniformly. A colour is
# "found" or not, which has no guessing rate.
CHANCE = {"background": 1 / len(BACKGROUNDS), "color": None, "shape": 1 / len(SHAPES), "motion": 1 / len(MOTIONS)}


def probe_captions(num: int, seed: int = 0) -> list[str]:
    """``num`` distinct one-object captions that cover colours, shapes and backgrounds evenly, motions cycling."""
    combos = [(c, s, b) for c, s, b in itertools.product(COLORS, SHAPES, BACKGROUNDS) if (c, b) not in LOW_CONTRAST]
    if not 1 <= num <= len(combos):
        raise ValueError(f"--num must be between 1 and {len(combos)} (the distinct one-object captions), got {num}")
    np.random.default_rng(seed).shuffle(combos)
    return [
        caption_for([SceneObject(shape, colour, MOTIONS[i % len(MOTIONS)])], background)
        for i, (colour, shape, background) in enumerate(combos[:num])
    ]


def training_captions(manifest: str) -> list[str]:
    """The distinct captions of ``manifest``'s training entries (entries marked ``split: val`` excluded)."""
    entries = read_manifest(manifest)
    return list(dict.fromkeys(e.caption for e in entries if e.extra.get("split", "train") != "val"))


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% at the default ``z``)."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(verdicts: dict[str, list[bool]]) -> dict[str, dict]:
    """Per attribute: correct, scored, accuracy (None where nothing was scored), 95% interval, chance."""
    out = {}
    for name in ATTRIBUTES:
        values = verdicts[name]
        correct, scored = int(sum(values)), len(values)
        out[name] = {
            "correct": correct,
            "scored": scored,
            "accuracy": correct / scored if scored else None,
            "interval": [round(v, 3) for v in wilson_interval(correct, scored)],
            "chance": CHANCE[name],
        }
    return out


def rendered_scenes(captions: list[str], size: tuple[int, int, int]) -> list[torch.Tensor]:
    """Each caption's scene rendered at ``size``, ``(3, T, H, W)`` in [-1, 1] (scene ``i`` seeded by ``i``)."""
    videos = []
    for i, caption in enumerate(captions):
        objects, background = parse_caption(caption)
        frames = render_scene(Scene(objects, background, *size, fps=8), np.random.default_rng(i))  # (T, H, W, C)
        videos.append(to_unit_range(thwc_to_cthw(torch.from_numpy(frames))))
    return videos


@torch.no_grad()
def first_stage_readings(module, captions: list[str], size: tuple[int, int, int]) -> list[dict]:
    """``read_video`` of the module's autoencoder reconstructions of the captions' rendered scenes."""
    readings = []
    for video, caption in zip(rendered_scenes(captions, size), captions, strict=True):
        [reconstruction] = module.decode(module.encode([video]))
        readings.append(read_video(to_frames(reconstruction), caption))
    return readings


EDITED = ("color", "shape", "motion")


def swap_attribute(caption: str, attribute: str) -> str:
    """The one-object ``caption`` with ``attribute`` (color, shape or motion) changed to the next value of its
    kind; a colour skips those too close to the background to see."""
    (obj,), background = parse_caption(caption)
    if attribute == "color":
        values = [c for c in COLORS if (c, background) not in LOW_CONTRAST]
    else:
        values = list({"shape": SHAPES, "motion": MOTIONS}[attribute])
    new = values[(values.index(getattr(obj, attribute)) + 1) % len(values)]
    return caption_for([replace(obj, **{attribute: new})], background)


def edit_figures(module, captions: list[str], args: argparse.Namespace) -> dict:
    """Per attribute of ``EDITED``: how often an edit of the rendered scene under the caption with that
    attribute changed shows the new value (``follows``) and the source's (``keeps``), of the ``scored``."""
    scenes = rendered_scenes(captions, args.size)
    out: dict = {"strength": args.edit}
    for attribute in EDITED:
        prompts = [swap_attribute(c, attribute) for c in captions]
        videos = module.edit_videos(
            scenes, prompts, args.edit, steps=args.steps, guidance=args.guidance, seed=args.seed, sampler=args.sampler
        )
        follows = keeps = scored = 0
        for video, prompt, caption in zip(videos, prompts, captions, strict=True):
            for stated, read in read_video(to_frames(video), prompt)[attribute]:
                source = getattr(parse_caption(caption)[0][0], attribute)
                scored, follows, keeps = scored + 1, follows + (read == stated), keeps + (read == source)
        out[attribute] = {"follows": follows, "keeps": keeps, "scored": scored}
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videodiff fidelity",
        description="Caption fidelity of a DiT trained on the built-in set, over many one-object prompts.",
    )
    parser.add_argument("--ckpt", required=True, help="a DiTModule checkpoint trained on the built-in set")
    parser.add_argument("--out", help="write the figures to this JSON file (they are printed either way)")
    parser.add_argument("--num", type=int, default=84, help="prompts (84: each motion 12 times; at most 90)")
    parser.add_argument("--size", type=parse_size, default=(9, 40, 40), help="generated size FxHxW (default 9x40x40)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", choices=SAMPLERS, default="auto", help="auto: DDIM, or Euler for a flow")
    parser.add_argument("--manifest", help="training manifest: also score training captions and novel ones apart")
    parser.add_argument("--training-prompts", action="store_true", help="prompt with its one-object captions")
    parser.add_argument("--save", help="write the samples side by side to this PNG (middle frame of each)")
    parser.add_argument(
        "--edit",
        type=float,
        metavar="STRENGTH",
        help="also edit the rendered scenes at this SDEdit strength in (0, 1] with one attribute of the caption "
        "changed, and count how often the edit shows the new value and how often the source's",
    )
    return parser


def fidelity(args: argparse.Namespace, console: Console) -> int:
    from videodiff.models.dit.module import DiTModule

    if args.training_prompts and not args.manifest:
        raise ValueError("--training-prompts needs --manifest")
    if args.edit is not None:
        check_strength(args.edit, "--edit strength")
    trained = training_captions(args.manifest) if args.manifest else []
    if args.training_prompts:
        captions = [c for c in trained if len(parse_caption(c)[0]) == 1][: args.num]
        if not captions:
            raise ValueError(f"{args.manifest}: no one-object training captions of the built-in grammar")
    else:
        captions = probe_captions(args.num, args.seed)
    module = DiTModule.from_checkpoint(args.ckpt)
    start = time.perf_counter()
    videos = module.sample_videos(
        captions, [args.size], steps=args.steps, guidance=args.guidance, seed=args.seed, sampler=args.sampler
    )
    seconds = time.perf_counter() - start
    seen = set(trained)
    readings = [read_video(to_frames(video), caption) for video, caption in zip(videos, captions, strict=True)]
    groups = {"all": readings}
    if args.manifest:
        groups["seen"] = [r for r, c in zip(readings, captions, strict=True) if c in seen]
        groups["novel"] = [r for r, c in zip(readings, captions, strict=True) if c not in seen]
    first_stage = first_stage_readings(module, captions, args.size)
    result = {
        "ckpt": str(args.ckpt),
        "prompts": len(captions),
        "size": "x".join(map(str, args.size)),
        "steps": args.steps,
        "guidance": args.guidance,
        "sampler": args.sampler,
        "seed": args.seed,
        "seconds": round(seconds, 1),
        **summarise(verdicts_of(readings)),
        **{group: summarise(verdicts_of(rs)) for group, rs in groups.items() if group != "all"},
        "confusion": confusion(readings),
        "first_stage": {**summarise(verdicts_of(first_stage)), "confusion": confusion(first_stage)},
    }
    if args.edit is not None:
        result["edit"] = edit_figures(module, captions, args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.save:
        from PIL import Image

        frames = [to_frames(v)[v.shape[1] // 2] for v in videos]  # (H, W, 3) each
        Image.fromarray(np.concatenate(frames, axis=1)).save(args.save)
    console.print(
        f"caption fidelity of {args.ckpt} on {len(captions)} prompts at {result['size']} ({seconds:.0f} s):",
        highlight=False,
    )
    for name in ATTRIBUTES:
        console.print(f"  {describe(result[name], name)}   first stage {describe(result['first_stage'][name])}")
    for name in ("shape", "motion"):
        console.print(f"  {name} read as: {describe_confusion(result['confusion'][name])}", highlight=False)
    if args.edit is not None:
        console.print(f"  edits at strength {args.edit}, one attribute of the caption changed:", highlight=False)
        for name in EDITED:
            figures = result["edit"][name]
            console.print(
                f"    {name}: shows the new one {figures['follows']}/{figures['scored']}, "
                f"the source's {figures['keeps']}/{figures['scored']}",
                highlight=False,
            )
    return 0


def describe_confusion(rows: dict[str, dict[str, int]]) -> str:
    """``circle: circle 23, triangle 3; square: circle 24, triangle 3``: per stated value, what was read."""
    if not rows:
        return "-"
    return "; ".join(
        f"{stated}: " + ", ".join(f"{read} {n}" for read, n in reads.items()) for stated, reads in rows.items()
    )


def describe(figures: dict, name: str = "", chance: bool = True) -> str:
    """``shape 0.28 (14/50, 95% 0.17-0.42; chance 0.33)``; without ``chance`` (a table with its own row for it)
    the part after ``;`` is left out."""
    if figures["accuracy"] is None:
        return f"{name} - (none scored)".strip()
    low, high = figures["interval"]
    guess = f"; chance {figures['chance']:.2f}" if chance and figures["chance"] is not None else ""
    text = f"{figures['accuracy']:.2f} ({figures['correct']}/{figures['scored']}, 95% {low:.2f}-{high:.2f}{guess})"
    return f"{name} {text}".strip()


def main(argv: list[str]) -> int:
    return run_reporting_errors(
        fidelity, build_parser().parse_args(argv), (ManifestError, SizingError, ValueError, OSError), code=2
    )
