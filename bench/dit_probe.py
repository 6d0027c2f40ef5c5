"""Does a trained DiT follow its captions? Caption fidelity over a fixed grid of one-object prompts.

``python bench/dit_probe.py --ckpt runs/demo/dit-joint.ckpt [--num 24] [--steps 50] [--guidance 4]`` samples
``num`` one-object captions (every colour, shape and background in turn, motions cycling; seeded) at 9x40x40
and prints the per-attribute accuracy of ``videodiff.metrics.caption_fidelity`` with the counts behind
it. The demo's report scores six prompts; this probe scores more, so recipes can be compared with less
noise. Shape and motion are only judged where the colour was found, so read them beside ``color``.

``--manifest TRAIN_MANIFEST`` (the latent cache's or the video manifest) also splits the figures into prompts
that are training captions and novel ones; with ``--training-prompts`` the prompts are the manifest's own
one-object training captions. A network that follows these but not novel prompts has memorised its clips
rather than learned to compose the attributes.

Beside the samples, ``first_stage`` scores the checkpoint's own frozen autoencoder on the same captions: each
scene rendered at the probe's size, encoded and decoded. No DiT on that autoencoder can score above it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

from videodiff.data.manifest import read_manifest
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
from videodiff.metrics.caption_fidelity import ATTRIBUTES, score_video
from videodiff.models.dit.module import DiTModule


def probe_captions(num: int, seed: int = 0) -> list[str]:
    """``num`` distinct one-object captions that cover colours, shapes and backgrounds evenly."""
    rng = np.random.default_rng(seed)
    combos = [(c, s, b) for c, s, b in itertools.product(COLORS, SHAPES, BACKGROUNDS) if (c, b) not in LOW_CONTRAST]
    rng.shuffle(combos)
    return [
        caption_for([SceneObject(shape, colour, MOTIONS[i % len(MOTIONS)])], background)
        for i, (colour, shape, background) in enumerate(combos[:num])
    ]


def training_captions(manifest: str) -> list[str]:
    """The distinct captions of ``manifest``'s training entries (entries marked ``split: val`` excluded)."""
    entries = read_manifest(manifest)
    return list(dict.fromkeys(e.caption for e in entries if e.extra.get("split", "train") != "val"))


@torch.no_grad()
def first_stage_verdicts(module: DiTModule, captions: list[str], size: tuple[int, int, int]) -> dict[str, list[bool]]:
    """Caption fidelity of the module's autoencoder reconstructions of the captions' rendered scenes."""
    verdicts: dict[str, list[bool]] = {name: [] for name in ATTRIBUTES}
    for i, caption in enumerate(captions):
        objects, background = parse_caption(caption)
        frames = render_scene(Scene(objects, background, *size, fps=8), np.random.default_rng(i))  # (T, H, W, C)
        video = to_unit_range(thwc_to_cthw(torch.from_numpy(frames)))  # (C, T, H, W)
        [reconstruction] = module.decode(module.encode([video]))
        for name, values in score_video(to_frames(reconstruction), caption).items():
            verdicts[name] += values
    return verdicts


def accuracies(verdicts: dict[str, list[bool]]) -> dict[str, dict]:
    return {name: {"accuracy": float(np.mean(v)) if v else None, "scored": len(v)} for name, v in verdicts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--num", type=int, default=24)
    parser.add_argument("--size", default="9x40x40")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", choices=SAMPLERS, default="auto", help="auto: DDIM, or Euler for a flow")
    parser.add_argument("--manifest", help="training manifest: also score training captions and novel ones apart")
    parser.add_argument("--training-prompts", action="store_true", help="prompt with its one-object captions")
    parser.add_argument("--save", help="write the samples side by side to this PNG (middle frame of each)")
    args = parser.parse_args()
    if args.training_prompts and not args.manifest:
        parser.error("--training-prompts needs --manifest")
    trained = training_captions(args.manifest) if args.manifest else []
    seen = set(trained)
    if args.training_prompts:
        captions = [c for c in trained if len(parse_caption(c)[0]) == 1][: args.num]
    else:
        captions = probe_captions(args.num, args.seed)
    module = DiTModule.from_checkpoint(args.ckpt)
    size = tuple(int(v) for v in args.size.split("x"))
    start = time.perf_counter()
    videos = module.sample_videos(
        captions, [size], steps=args.steps, guidance=args.guidance, seed=args.seed, sampler=args.sampler
    )
    groups = ["all", "seen", "novel"] if args.manifest else ["all"]
    verdicts = {group: {name: [] for name in ATTRIBUTES} for group in groups}
    for video, caption in zip(videos, captions, strict=True):
        group = "seen" if caption in seen else "novel"
        for name, values in score_video(to_frames(video), caption).items():
            verdicts["all"][name] += values
            if args.manifest:
                verdicts[group][name] += values
    result: dict = accuracies(verdicts["all"])
    for group in groups[1:]:
        result[group] = accuracies(verdicts[group])
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["first_stage"] = accuracies(first_stage_verdicts(module, captions, size))
    if args.save:
        from PIL import Image

        frames = [to_frames(v)[v.shape[1] // 2] for v in videos]  # (H, W, 3) each
        Image.fromarray(np.concatenate(frames, axis=1)).save(args.save)
    print(
        json.dumps(
            {"ckpt": args.ckpt, "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, **result}
        )
    )


if __name__ == "__main__":
    main()
