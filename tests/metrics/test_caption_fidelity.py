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
