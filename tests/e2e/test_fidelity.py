import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import write_untrained_dit_checkpoint
from videodiff.cli import main
from videodiff.commands.fidelity import (
    EDITED,
    first_stage_readings,
    probe_captions,
    swap_attribute,
    training_captions,
    wilson_interval,
)
from videodiff.data.manifest import ManifestEntry, write_manifest
from videodiff.data.synthetic import LOW_CONTRAST, MOTIONS, parse_caption
from videodiff.metrics.caption_fidelity import verdicts_of

ROOT = Path(__file__).resolve().parents[2]


def test_probe_captions_are_distinct_one_object_captions_with_every_motion_equally_often():
    captions = probe_captions(84)
    assert len(set(captions)) == 84
    objects = [parse_caption(c)[0] for c in captions]
    assert all(len(o) == 1 for o in objects)
    motions = [o[0].motion for o in objects]
    assert {m: motions.count(m) for m in MOTIONS} == dict.fromkeys(MOTIONS, 12)
    with pytest.raises(ValueError, match="between 1 and 90"):
        probe_captions(91)


def test_training_captions_leave_out_the_validation_split(tmp_path):
    captions = ["a red circle still on a black background", "a blue square still on a gray background"]
    entries = [
        ManifestEntry(path=str(tmp_path / "a.pt"), caption=captions[0], extra={"split": "train"}),
        ManifestEntry(path=str(tmp_path / "b.pt"), caption=captions[1], extra={"split": "val"}),
        ManifestEntry(path=str(tmp_path / "c.pt"), caption=captions[0], extra={"split": "train"}),
    ]
    assert training_captions(str(write_manifest(entries, tmp_path / "manifest.jsonl"))) == captions[:1]


def test_wilson_interval_matches_its_closed_form_values():
    # 5/10: the textbook 95% Wilson interval; 0/n: its upper end is z^2 / (n + z^2).
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 1.96**2 / (10 + 1.96**2)), abs=1e-9)
    low, high = wilson_interval(14, 50)
    assert low < 14 / 50 < high and high - low < 0.26
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_first_stage_renders_each_caption_at_the_probe_size(autoencoder_ckpt):
    from tests.helpers import make_dit_module

    module = make_dit_module(autoencoder_ckpt)
    shapes = []
    module.encode = lambda videos: shapes.extend(v.shape for v in videos) or list(videos)
    module.decode = lambda latents: list(latents)  # a lossless first stage: the rendered scenes themselves
    captions = probe_captions(6)
    readings = first_stage_readings(module, captions, (9, 24, 32))
    assert shapes == [(3, 9, 24, 32)] * 6
    verdicts = verdicts_of(readings)
    assert {name: len(v) for name, v in verdicts.items()} == {"background": 6, "color": 6, "shape": 6, "motion": 6}
    assert all(all(v) for v in verdicts.values())  # the renderer's scenes pass the scorer
    assert [r["motion"][0][0] for r in readings] == [parse_caption(c)[0][0].motion for c in captions]


def test_fidelity_command_scores_a_checkpoint_and_writes_counts(tmp_path, tiny_autoencoder_ckpt, capsys):
    # Untrained: only that every prompt is sampled and scored matters here.
    config = f"{ROOT}/configs/dit/tiny_joint.yaml"
    ckpt = write_untrained_dit_checkpoint(tmp_path / "dit.ckpt", tiny_autoencoder_ckpt, config)
    out = tmp_path / "fidelity.json"
    args = ["fidelity", "--ckpt", str(ckpt), "--num", "3", "--steps", "2", "--size", "3x16x16"]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["prompts"] == 3 and result["size"] == "3x16x16"
    assert result["background"]["scored"] == 3 and result["first_stage"]["background"]["scored"] == 3
    assert result["shape"]["chance"] == pytest.approx(1 / 3) and result["motion"]["chance"] == pytest.approx(1 / 7)
    low, high = result["background"]["interval"]
    accuracy = result["background"]["accuracy"]
    assert accuracy == result["background"]["correct"] / 3 and low <= accuracy <= high
    # Every item scored is one count in the confusion table, under what the caption stated; the diagonal is
    # what was right. Likewise for the first stage's reconstructions.
    for figures in (result, result["first_stage"]):
        for name in ("background", "color", "shape", "motion"):
            rows = figures["confusion"][name]
            assert sum(sum(reads.values()) for reads in rows.values()) == figures[name]["scored"]
            assert sum(reads.get(stated, 0) for stated, reads in rows.items()) == figures[name]["correct"]
    console = capsys.readouterr().out
    assert "caption fidelity of" in console and "motion read as:" in console
    # A size the network cannot generate is refused before sampling, naming the rule.
    assert main([*args[:-2], "--size", "4x16x16"]) == 2
    assert "1 + k*2" in capsys.readouterr().err
    assert main([*args, "--training-prompts"]) == 2 and "--training-prompts needs --manifest" in capsys.readouterr().err


def test_swap_attribute_changes_that_attribute_alone_to_a_value_the_scene_can_show():
    for caption in probe_captions(84):
        (source,), background = parse_caption(caption)
        for attribute in EDITED:
            (edited,), edited_background = parse_caption(swap_attribute(caption, attribute))
            assert edited_background == background and getattr(edited, attribute) != getattr(source, attribute)
            assert replace(edited, **{attribute: getattr(source, attribute)}) == source
            assert (edited.color, background) not in LOW_CONTRAST


def test_fidelity_edit_counts_what_each_edit_shows(tmp_path, tiny_autoencoder_ckpt, capsys):
    config = f"{ROOT}/configs/dit/tiny_joint.yaml"
    ckpt = write_untrained_dit_checkpoint(tmp_path / "dit.ckpt", tiny_autoencoder_ckpt, config)
    out = tmp_path / "fidelity.json"
    args = ["fidelity", "--ckpt", str(ckpt), "--num", "3", "--steps", "4", "--size", "3x16x16", "--out", str(out)]
    assert main([*args, "--edit", "0.5"]) == 0
    edit = json.loads(out.read_text())["edit"]
    assert edit["strength"] == 0.5 and edit["color"]["scored"] == 3  # every edit's colour is read
    for attribute in EDITED:
        figures = edit[attribute]
        # The new value and the source's differ, so no reading counts as both.
        assert figures["follows"] + figures["keeps"] <= figures["scored"] <= 3
    assert "edits at strength 0.5" in capsys.readouterr().out
    assert main([*args, "--edit", "1.5"]) == 2 and "strength must be in (0, 1]" in capsys.readouterr().err
