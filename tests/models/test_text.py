import pytest
import torch

from videodiff.data.synthetic import sample_scene, vocabulary
from videodiff.models.text import (
    CaptionCache,
    CaptionClasses,
    HFTextEncoder,
    MiniLMTextEncoder,
    WordTextEncoder,
    build_text_encoder,
)


def test_word_encoder_covers_the_synthetic_grammar_and_flags_unknown_words():
    import numpy as np

    encoder = WordTextEncoder(dim=16, layers=1)
    rng = np.random.default_rng(0)
    captions = [sample_scene(rng).caption for _ in range(20)]
    states = encoder(captions)
    assert [s.shape for s in states] == [(len(c.split()), 16) for c in captions]
    assert encoder.unknown_words == set() and set(vocabulary()) >= {"circle", "navy", "shrinking"}
    encoder(["a zebra moving left"])
    assert encoder.unknown_words == {"zebra"}
    # Padding never leaks into a caption's states: alone or batched with a longer one, the same states.
    alone = encoder([captions[0]])[0]
    batched = encoder([captions[0], captions[0] + " and a red square still"])[0]
    torch.testing.assert_close(alone, batched)
    with pytest.raises(ValueError, match="vocabulary"):
        WordTextEncoder(vocabulary=[])


def test_minilm_loads_offline_from_its_wheel_and_rebuilds_from_config():
    encoder = MiniLMTextEncoder()
    states = encoder(["a red circle moving left", "hi"])
    assert encoder.dim == 384 and states[0].shape[1] == 384 and states[0].shape[0] > states[1].shape[0]
    assert list(encoder.parameters()) == [] and encoder.state_dict() == {}  # frozen weights stay out of checkpoints
    rebuilt = build_text_encoder(encoder.config)
    torch.testing.assert_close(rebuilt(["hi"])[0], states[1])


def test_hf_encoder_names_a_missing_local_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not be loaded \\(offline"):
        HFTextEncoder(str(tmp_path / "no-such-model"))


def test_caption_cache_runs_the_encoder_once_per_unique_caption(tmp_path):
    calls = []

    class Counting(WordTextEncoder):
        frozen = True

        def forward(self, captions, device="cpu"):
            calls.append(list(captions))
            return super().forward(captions, device)

    encoder = Counting(dim=8)
    cache = CaptionCache(encoder, tmp_path / "captions")
    a, b = "a red circle still on a black background", "a blue square still on a gray background"
    first = cache([a, b, a])
    second = cache([b, a])
    assert calls == [[a, b]] and cache.encoded == 2
    torch.testing.assert_close(first[2], second[1])
    fresh = CaptionCache(encoder, tmp_path / "captions")  # a new process: read back from disk
    torch.testing.assert_close(fresh([a])[0], first[0])
    assert calls == [[a, b]] and len(list((tmp_path / "captions").glob("*.pt"))) == 2
    with pytest.raises(ValueError, match="trainable"):
        CaptionCache(WordTextEncoder(dim=8))


def test_caption_classes_take_the_first_named_class():
    classes = CaptionClasses(["circle", "square", "triangle"])
    scene = "a red square moving up and a blue circle still on a gray background"
    assert classes([scene, "a green triangle growing on a navy background"]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="names none of the classes"):
        classes(["a red hexagon"])
    # Dataset captions: a caption naming no class trains as unconditional (the null label), with a warning.
    with pytest.warns(UserWarning, match="'a red hexagon' names none of the classes; trained as unconditional"):
        assert classes(["a red hexagon", scene], unknown_as_null=True).tolist() == [3, 1]


def test_caption_classes_match_phrases_on_whole_words():
    motions = CaptionClasses(["moving left", "moving right", "still", "growing", "Moving  Up"])
    assert motions.classes[-1] == "moving up"
    captions = [
        "a red circle moving right and a blue square moving left on a black background",
        "a white square still on a navy background",
        "A red circle Moving up, on a black background",
        "a red circle growing and a blue square still on a gray background",
    ]
    assert motions(captions).tolist() == [1, 2, 4, 3]
    with pytest.raises(ValueError, match="names none of the classes"):
        motions(["a red circle moving sideways", "the stillness of a circle"])  # no class as a whole phrase
    with pytest.raises(ValueError, match="distinct"):
        CaptionClasses(["still", "Still"])


@pytest.mark.parametrize("make", [lambda: WordTextEncoder(dim=16, layers=1, max_length=8), MiniLMTextEncoder])
def test_empty_and_overlong_captions(make, recwarn):
    encoder = make()
    long = " ".join(["red circle"] * 60)
    with pytest.warns(UserWarning, match=r"a caption of \d+ (words|tokens) was truncated to the encoder's limit"):
        states = encoder(["", long])
    assert states[0].shape[0] >= 1 and states[1].shape[0] == encoder.max_length
    encoder(["", long])  # warned once per encoder, not per batch
    assert sum("truncated" in str(w.message) for w in recwarn) == 0
    if isinstance(encoder, WordTextEncoder):
        assert encoder.unknown_words == set()  # an empty caption is not an unknown word
