import numpy as np
import pytest

from videodiff.data.decoding import read_frames_pyav
from videodiff.data.manifest import read_manifest
from videodiff.data.synthetic import parse_caption
from videodiff.metrics.caption_fidelity import caption_fidelity, score_video


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
    from videodiff.data.synthetic import BACKGROUNDS, COLORS

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
