import numpy as np
import pytest

from videodiff.data.decoding import read_frames_pyav
from videodiff.data.manifest import read_manifest
from videodiff.data.synthetic import BACKGROUNDS, COLORS, parse_caption
from videodiff.metrics.caption_fidelity import NONE, caption_fidelity, confusion, read_video, score_video


@pytest.fixture(scope="module")
def clips(synthetic_set):
    return [(read_frames_pyav(e.path), e.caption) for e in read_manifest(synthetic_set)]


def test_ground_truth_clips_score_near_perfectly(clips):
    scores = caption_fidelity(clips)
    assert all(scores[name] >= 0.9 for name in ("background", "color", "shape", "motion")), scores


def test_mismatched_captions_score_low(clips):
    rng = np.random.default_rng(0)
    wrong = []
    for frames, caption in clips:
        objects, background = parse_caption(caption)
        other = [c for _, c in clips if parse_caption(c)[1] != background and c != caption]
        wrong.append((frames, other[int(rng.integers(len(other)))]))
    scores = caption_fidelity(wrong)
    assert scores["background"] == 0.0 and scores["color"] < 0.5, scores


def test_scores_a_drawn_clip_and_rejects_bad_input():
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    for i in range(5):  # a red square moving right on black
        frames[i, 12:20, 2 + 5 * i : 10 + 5 * i] = (230, 40, 40)
    verdicts = score_video(frames, "a red square moving right on a black background")
    assert verdicts == {"background": [True], "color": [True], "shape": [True], "motion": [True]}
    assert score_video(frames, "a red circle moving left on a gray background")["motion"] == [False]
    with pytest.raises(ValueError, match="not a caption of the built-in grammar"):
        score_video(frames, "a cat")
    with pytest.raises(ValueError, match="expected"):
        score_video(frames[0], "a red square still on a black background")


def test_a_patchwork_of_colours_does_not_pass_for_the_stated_one():
    """An untrained model's output (blocks of many colours) contains every colour somewhere; it must not count."""
    rng = np.random.default_rng(0)
    palette = np.array(list(COLORS.values()), dtype=np.uint8)
    blocks = rng.integers(0, len(palette), size=(5, 5, 6))
    frames = palette[blocks].repeat(8, axis=1).repeat(8, axis=2)  # (5, 40, 48, 3) patchwork
    frames[:, :8, :, :] = BACKGROUNDS["black"]  # a plausible border
    verdicts = [score_video(frames, f"a {c} circle still on a black background")["color"][0] for c in COLORS]
    assert sum(verdicts) <= 1  # at most the one colour that happens to dominate
    # The same colour as a single clear object passes.
    frames = np.zeros((5, 40, 48, 3), dtype=np.uint8)
    frames[:, 10:22, 10:22] = COLORS["cyan"]
    assert score_video(frames, "a cyan square still on a black background")["color"] == [True]


def test_read_video_names_what_was_drawn_and_confusion_counts_it():
    """A red square moving right, captioned wrongly in several ways: each reading names what the pixels show."""
    frames = np.zeros((5, 32, 32, 3), np.uint8)
    for i in range(5):
        frames[i, 12:20, 2 + 5 * i : 10 + 5 * i] = COLORS["red"]
    reading = read_video(frames, "a red circle moving left on a gray background")
    assert reading == {
        "background": [("gray", "black")],
        "color": [("red", "red")],
        "shape": [("circle", "square")],
        "motion": [("moving left", "moving right")],
    }
    # A colour not drawn: read as the one drawn, and shape and motion are not read at all.
    assert read_video(frames, "a cyan square still on a black background") == {
        "background": [("black", "black")],
        "color": [("cyan", "red")],
        "shape": [],
        "motion": [],
    }
    assert read_video(np.zeros_like(frames), "a red square still on a black background")["color"] == [("red", NONE)]
    assert score_video(frames, "a red circle moving left on a gray background") == {
        "background": [False],
        "color": [True],
        "shape": [False],
        "motion": [False],
    }
    counts = confusion([reading, reading, read_video(frames, "a red square moving right on a black background")])
    assert counts["shape"] == {"circle": {"square": 2}, "square": {"square": 1}}
    assert counts["motion"] == {"moving left": {"moving right": 2}, "moving right": {"moving right": 1}}
    assert counts["background"] == {"black": {"black": 1}, "gray": {"black": 2}}


def test_two_objects_are_read_in_their_own_halves():
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, 8:24, 8:24] = COLORS["yellow"]  # left half: a still yellow square
    frames[:, 8:24, 40:56] = COLORS["blue"]  # right half: a still blue square
    reading = read_video(frames, "a yellow square still and a green circle still on a black background")
    assert reading["color"] == [("yellow", "yellow"), ("green", "blue")]
    assert reading["shape"] == [("square", "square")] and reading["motion"] == [("still", "still")]


def test_shape_is_read_from_the_silhouette_not_the_exact_palette_colour():
    """A square textured with stripes nearer another palette colour (as the demo's autoencoder draws them) is
    still a square: every pixel of it is nearer its own colour than the background's."""
    frames = np.empty((3, 40, 40, 3), np.uint8)
    frames[:] = BACKGROUNDS["navy"]
    frames[:, 12:28, 12:28] = COLORS["orange"]
    frames[:, 12:28, 12:28:3] = (235, 70, 35)  # every third column nearer red than orange
    reading = read_video(frames, "a orange square still on a navy background")
    assert reading["color"] == [("orange", "orange")] and reading["shape"] == [("square", "square")]
    assert reading["motion"] == [("still", "still")]
