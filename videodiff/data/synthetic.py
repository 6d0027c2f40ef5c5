"""The built-in dataset: procedural captioned scenes written as real H.264 mp4 files (and PNG stills).

Each clip has one or two objects (shape, colour, motion) on a coloured background, at its own size, length
and frame rate. Captions state every attribute in a fixed grammar (docs/data.md), which ``parse_caption``
inverts, so a generated video can be scored against its caption. Clip ``i`` depends only on
``(seed, i)``: a larger ``num`` extends a dataset without changing the clips it already had.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from videodiff.data.decoding import write_image, write_video
from videodiff.data.manifest import ManifestEntry, write_manifest

SHAPES = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "purple": (150, 60, 200),
    "orange": (250, 140, 20),
    "cyan": (40, 220, 230),
}
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "still", "growing", "shrinking")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (110, 110, 110),
    "navy": (20, 20, 90),
    "dark green": (10, 70, 20),
}
# Pairs too close to tell apart after H.264: never generated, so a caption never names an invisible object.
LOW_CONTRAST = {("blue", "navy"), ("green", "dark green")}
FPS_CHOICES = (8, 12, 24)
SIDE_RANGE = (32, 128)
FRAME_RANGE = (8, 48)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    motion: str


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    frames: int
    height: int
    width: int
    fps: int

    @property
    def caption(self) -> str:
        return caption_for(self.objects, self.background)


def caption_for(objects: tuple[SceneObject, ...] | list[SceneObject], background: str) -> str:
    """``a <colour> <shape> <motion> [and a <colour> <shape> <motion>] on a <background> background``."""
    parts = [f"a {o.color} {o.shape} {o.motion}" for o in objects]
    return f"{' and '.join(parts)} on a {background} background"


_OBJECT = rf"a ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) ({'|'.join(MOTIONS)})"
_CAPTION = re.compile(rf"^{_OBJECT}(?: and {_OBJECT})? on a ({'|'.join(BACKGROUNDS)}) background$")


def vocabulary() -> list[str]:
    """Every word a caption of the built-in grammar can use (for closed-vocabulary text encoders)."""
    phrases = ["a and on background", *SHAPES, *COLORS, *MOTIONS, *BACKGROUNDS]
    return list(dict.fromkeys(word for phrase in phrases for word in phrase.split()))


def parse_caption(caption: str) -> tuple[tuple[SceneObject, ...], str]:
    """Invert ``caption_for``: the objects and background a caption states. Raises ValueError otherwise."""
    match = _CAPTION.match(caption.strip())
    if match is None:
        raise ValueError(f"not a caption of the built-in grammar: {caption!r}")
    groups = match.groups()
    objects = [SceneObject(shape=groups[1], color=groups[0], motion=groups[2])]
    if groups[3] is not None:
        objects.append(SceneObject(shape=groups[4], color=groups[3], motion=groups[5]))
    return tuple(objects), groups[6]


def sample_scene(rng: np.random.Generator, image: bool = False) -> Scene:
    """Draw one scene's attributes and size."""
    background = str(rng.choice(list(BACKGROUNDS)))
    colors = [c for c in COLORS if (c, background) not in LOW_CONTRAST]
    count = int(rng.integers(1, 3))
    objects: list[SceneObject] = []
    while len(objects) < count:
        obj = SceneObject(
            shape=str(rng.choice(SHAPES)),
            color=str(rng.choice(colors)),
            motion="still" if image else str(rng.choice(MOTIONS)),
        )
        if all((obj.shape, obj.color) != (o.shape, o.color) for o in objects):
            objects.append(obj)
    # Even sides: H.264 in yuv420p needs them.
    height, width = (2 * int(rng.integers(SIDE_RANGE[0] // 2, SIDE_RANGE[1] // 2 + 1)) for _ in range(2))
    frames = 1 if image else int(rng.integers(FRAME_RANGE[0], FRAME_RANGE[1] + 1))
    return Scene(tuple(objects), background, frames, height, width, int(rng.choice(FPS_CHOICES)))


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "square":  # half-side 0.85 r: about the circle's area
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if shape == "triangle":  # upright equilateral triangle inscribed in the circle of radius r
        return (dy <= r / 2) & (np.sqrt(3) * dx - dy <= r) & (-np.sqrt(3) * dx - dy <= r)
    raise ValueError(f"unknown shape {shape!r}")


def _trajectory(
    obj: SceneObject, box: tuple[float, float, float, float], frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centre (y, x) and radius of an object inside its box (top, left, height, width)."""
    top, left, bh, bw = box
    r = float(rng.uniform(0.22, 0.3)) * min(bh, bw)
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    cy = np.full(frames, top + bh / 2)
    cx = np.full(frames, left + bw / 2)
    radius = np.full(frames, r)
    span_x, span_y = max(bw - 2 * r, 0.0) / 2, max(bh - 2 * r, 0.0) / 2
    direction = {"moving left": (0, -1), "moving right": (0, 1), "moving up": (-1, 0), "moving down": (1, 0)}
    if obj.motion in direction:
        sy, sx = direction[obj.motion]
        cy = cy + sy * span_y * (2 * t - 1)
        cx = cx + sx * span_x * (2 * t - 1)
    elif obj.motion == "growing":
        radius = r * (0.5 + t)
    elif obj.motion == "shrinking":
        radius = r * (1.5 - t)
    else:  # still: anywhere in its box
        cy = cy + float(rng.uniform(-span_y, span_y)) * 0.8
        cx = cx + float(rng.uniform(-span_x, span_x)) * 0.8
    return cy, cx, radius


def render_scene(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(T, H, W, C)`` frames of a scene. Two objects get the two halves of the longer side."""
    h, w = scene.height, scene.width
    if len(scene.objects) == 1:
        boxes = [(0.0, 0.0, float(h), float(w))]
    elif w >= h:
        boxes = [(0.0, 0.0, float(h), w / 2), (0.0, w / 2, float(h), w / 2)]
    else:
        boxes = [(0.0, 0.0, h / 2, float(w)), (h / 2, 0.0, h / 2, float(w))]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    video = np.empty((scene.frames, h, w, 3), np.uint8)
    video[:] = BACKGROUNDS[scene.background]
    for obj, box in zip(scene.objects, boxes, strict=True):
        cy, cx, radius = _trajectory(obj, box, scene.frames, rng)
        for i in range(scene.frames):
            video[i][_shape_mask(obj.shape, yy, xx, cy[i], cx[i], radius[i])] = COLORS[obj.color]
    return video


def generate(out: str | Path, num: int = 200, seed: int = 0, image_fraction: float = 0.1) -> Path:
    """Write ``num`` clips (a fraction of them PNG stills) and ``out/manifest.jsonl``; returns its path."""
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if not 0.0 <= image_fraction <= 1.0:
        raise ValueError(f"image_fraction must be in [0, 1], got {image_fraction}")
    out = Path(out)
    entries = []
    for index in range(num):
        rng = np.random.default_rng([seed, index])
        image = bool(rng.random() < image_fraction)
        scene = sample_scene(rng, image=image)
        frames = render_scene(scene, rng)
        if image:
            path = write_image(out / "clips" / f"{index:06d}.png", frames[0])
        else:
            path = write_video(out / "clips" / f"{index:06d}.mp4", frames, fps=scene.fps)
        attributes = {"background": scene.background, "objects": [asdict(o) for o in scene.objects]}
        entries.append(
            ManifestEntry(
                path=str(path.resolve()),
                caption=scene.caption,
                frames=scene.frames,
                fps=None if image else float(scene.fps),
                height=scene.height,
                width=scene.width,
                extra={"attributes": attributes},
            )
        )
    return write_manifest(entries, out / "manifest.jsonl")
