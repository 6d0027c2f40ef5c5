"""Caption fidelity on the built-in dataset: does a video show what its caption (of the known grammar) says?

Each attribute is read back from the pixels with the renderer's own conventions (palette, layout: two
objects take the two halves of the longer side) and compared with the caption:

- ``background``: the palette background nearest to the median colour of the frame border.
- ``color``: the stated colour is the object colour covering most of the object's region, and a visible
  area of it (a frame of many colours, e.g. an untrained model's patchwork, does not pass by containing it).
- ``shape``: the fill ratio of the bounding box of the object's silhouette (the pixels nearer its colour than
  the background's): square ~1, circle ~pi/4, triangle ~1/2.
- ``motion``: the silhouette's centroid track (left/right/up/down), its area trend (growing/shrinking), or
  neither (still).

Shape and motion are scored only where the colour was found (and motion only for clips of several frames),
so a missing object counts once, as a colour miss. Accuracies per attribute are the demo's quality signal.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from videodiff.data.synthetic import BACKGROUNDS, COLORS, parse_caption

ATTRIBUTES = ("background", "color", "shape", "motion")
FILL_RATIO = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}
MIN_AREA = 0.004  # share of the object's region the colour must cover on average to count as present
MOVE = 0.12  # centroid displacement, as a share of the region's side, that counts as moving
GROW = 1.35  # last/first area ratio that counts as growing (and its inverse as shrinking)


def _nearest(colour: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    distances = [np.linalg.norm(colour - np.array(palette[n], dtype=np.float32)) for n in names]
    return names[int(np.argmin(distances))]


def _regions(count: int, height: int, width: int) -> list[tuple[slice, slice]]:
    if count == 1:
        return [(slice(0, height), slice(0, width))]
    if width >= height:
        return [(slice(0, height), slice(0, width // 2)), (slice(0, height), slice(width // 2, width))]
    return [(slice(0, height // 2), slice(0, width)), (slice(height // 2, height), slice(0, width))]


def _distance(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.linalg.norm(pixels - np.array(colour, dtype=np.float32), axis=-1)


def _colour_masks(frames: np.ndarray, background: str) -> np.ndarray:
    """(T, H, W) index of the nearest palette colour per pixel (object colours first, then the background)."""
    palette = np.array([*COLORS.values(), BACKGROUNDS[background]], dtype=np.float32)  # (K, 3)
    distances = np.linalg.norm(frames[..., None, :].astype(np.float32) - palette, axis=-1)  # (T, H, W, K)
    return distances.argmin(-1)


def _motion(mask: np.ndarray) -> str:
    """still / growing / shrinking / moving <direction> from a (T, h, w) object mask."""
    areas = mask.sum(axis=(1, 2)).astype(np.float64)
    visible = np.flatnonzero(areas > 0)
    first, last = visible[0], visible[-1]
    ratio = (areas[last] + 1) / (areas[first] + 1)
    yy, xx = np.mgrid[0 : mask.shape[1], 0 : mask.shape[2]]
    centre = lambda i: np.array([(yy * mask[i]).sum(), (xx * mask[i]).sum()]) / max(areas[i], 1)
    dy, dx = (centre(last) - centre(first)) / np.array(mask.shape[1:])
    if max(abs(dy), abs(dx)) >= MOVE:
        if abs(dx) >= abs(dy):
            return "moving right" if dx > 0 else "moving left"
        return "moving down" if dy > 0 else "moving up"
    if ratio >= GROW:
        return "growing"
    if ratio <= 1 / GROW:
        return "shrinking"
    return "still"


def _shape(mask: np.ndarray) -> str:
    ratios = []
    for frame in mask:
        ys, xs = np.nonzero(frame)
        if len(ys) >= 12:
            ratios.append(len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    ratio = float(np.median(ratios)) if ratios else 0.0
    return min(FILL_RATIO, key=lambda s: abs(FILL_RATIO[s] - ratio))


NONE = "none"  # read where no object colour covers enough of the region to count as drawn


def read_video(frames_thwc: np.ndarray, caption: str) -> dict[str, list[tuple[str, str]]]:
    """Per attribute, ``(stated, read)`` per stated item: what the caption says and what the pixels show.

    ``color`` reads the object colour covering most of the object's region (``NONE`` if too little of it is
    drawn). Shape and motion are read only where that is the stated colour (and motion only for clips of
    several frames), so a missing object counts once, as a colour miss.
    """
    frames = np.asarray(frames_thwc)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    objects, background = parse_caption(caption)
    t, h, w, _ = frames.shape
    border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1).reshape(-1, 3)
    readings: dict[str, list[tuple[str, str]]] = {name: [] for name in ATTRIBUTES}
    readings["background"].append((background, _nearest(np.median(border, axis=0), BACKGROUNDS)))
    nearest = _colour_masks(frames, background)
    names = list(COLORS)
    for obj, (rows, cols) in zip(objects, _regions(len(objects), h, w), strict=True):
        region = nearest[:, rows, cols]
        coverage = np.bincount(region.ravel(), minlength=len(names) + 1)[: len(names)]  # object colours only
        dominant = int(coverage.argmax())
        read = names[dominant] if coverage[dominant] >= MIN_AREA * region.size else NONE
        readings["color"].append((obj.color, read))
        if read != obj.color:
            continue
        # Shape and motion from the object's silhouette: pixels nearer its colour than the background's. The
        # palette mask above splits a blurred edge or a texture inside an object among third colours, and
        # so read a third of the autoencoder's plainly square squares as circles (docs/dit.md, "Session 15").
        pixels = frames[:, rows, cols].astype(np.float32)
        mask = _distance(pixels, COLORS[obj.color]) < _distance(pixels, BACKGROUNDS[background])  # (T, h, w)
        readings["shape"].append((obj.shape, _shape(mask)))
        if t > 1:
            readings["motion"].append((obj.motion, _motion(mask)))
    return readings


def verdicts_of(readings: Iterable[dict[str, list[tuple[str, str]]]]) -> dict[str, list[bool]]:
    """Per attribute, one right/wrong per item read (``read_video``'s pairs, pooled over videos)."""
    readings = list(readings)
    return {name: [stated == read for r in readings for stated, read in r[name]] for name in ATTRIBUTES}


def score_video(frames_thwc: np.ndarray, caption: str) -> dict[str, list[bool]]:
    """Per attribute, one verdict per item ``read_video`` read: does the video show what the caption states?"""
    return verdicts_of([read_video(frames_thwc, caption)])


def confusion(readings: Iterable[dict[str, list[tuple[str, str]]]]) -> dict[str, dict[str, dict[str, int]]]:
    """Per attribute, per stated value, how often each value was read (most often first): how a model fails."""
    counts: dict[str, dict[str, dict[str, int]]] = {name: {} for name in ATTRIBUTES}
    for reading in readings:
        for name, pairs in reading.items():
            for stated, read in pairs:
                row = counts[name].setdefault(stated, {})
                row[read] = row.get(read, 0) + 1
    return {
        name: {
            stated: dict(sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))) for stated, row in sorted(rows.items())
        }
        for name, rows in counts.items()
    }


def caption_fidelity(pairs: Iterable[tuple[np.ndarray, str]]) -> dict[str, float]:
    """Accuracy per attribute over ``(frames (T, H, W, 3) uint8, caption)`` pairs (NaN where nothing was scored)."""
    totals = verdicts_of(read_video(frames, caption) for frames, caption in pairs)
    return {name: float(np.mean(v)) if v else float("nan") for name, v in totals.items()}
