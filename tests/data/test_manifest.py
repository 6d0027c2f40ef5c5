import json

import pytest

from videodiff.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest


def test_jsonl_round_trip_keeps_fields_and_relative_paths(tmp_path):
    entries = [
        ManifestEntry(str(tmp_path / "a" / "x.mp4"), "a cat", frames=9, fps=24.0, height=32, width=48),
        ManifestEntry(str(tmp_path / "y.png"), "", extra={"attributes": {"k": [1, 2]}}),
    ]
    path = write_manifest(entries, tmp_path / "m.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["path"] == "a/x.mp4"  # relative to the manifest's folder
    assert read_manifest(path) == entries


def test_csv_round_trip(tmp_path):
    entries = [ManifestEntry(str(tmp_path / "x.mp4"), 'a, quoted "caption"', frames=3, fps=8.0, height=4, width=6)]
    path = write_manifest(entries, tmp_path / "m.csv")
    assert read_manifest(path) == entries


def test_csv_without_optional_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,caption\nv.mp4,hello\n")
    (entry,) = read_manifest(tmp_path / "m.csv")
    assert entry.path == str(tmp_path / "v.mp4") and entry.caption == "hello" and entry.frames is None


def test_images_are_flagged_and_need_no_fps(tmp_path):
    image = ManifestEntry("/x/a.PNG", "c", frames=1, height=3, width=3)
    assert image.is_image and image.has_metadata
    video = ManifestEntry("/x/a.mp4", "c", frames=1, height=3, width=3)
    assert not video.is_image and not video.has_metadata


def test_empty_manifest_reads_as_no_entries(tmp_path):
    (tmp_path / "m.jsonl").write_text("\n")
    assert read_manifest(tmp_path / "m.jsonl") == []


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"path": "a.mp4", "caption": "x"', "invalid JSON"),
        ('{"caption": "x"}', "missing required field 'path'"),
        ('{"path": "a.mp4"}', "missing required field 'caption'"),
        ('{"path": "", "caption": "x"}', "field 'path' must be a non-empty string"),
        ('{"path": "a.mp4", "caption": 3}', "field 'caption' must be a string"),
        ('{"path": "a.mp4", "caption": "x", "frames": "many"}', "field 'frames' must be a positive integer"),
        ('{"path": "a.mp4", "caption": "x", "frames": 0}', "field 'frames' must be a positive integer"),
        ('{"path": "a.mp4", "caption": "x", "fps": -2}', "field 'fps' must be a positive finite number"),
        ('{"path": "a.mp4", "caption": "x", "fps": "inf"}', "field 'fps' must be a positive finite number"),
        ('["a.mp4", "x"]', "expected an object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "ok.mp4", "caption": "fine"}\n\n' + line + "\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert f"{path}:3:" in str(info.value) and message in str(info.value)


def test_csv_bad_header_and_bad_row(tmp_path):
    (tmp_path / "a.csv").write_text("file,caption\nv.mp4,x\n")
    with pytest.raises(ManifestError, match=r"a.csv:1: header lacks required column\(s\) \['path'\]"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,caption,frames\nv.mp4,x,3\nw.mp4,y,-1\n")
    with pytest.raises(ManifestError, match=r"b.csv:3: field 'frames'"):
        read_manifest(tmp_path / "b.csv")


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
