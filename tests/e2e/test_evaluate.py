import json
import math
from pathlib import Path

from tests.helpers import write_untrained_dit_checkpoint
from videodiff.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_generates_with_held_out_captions_and_scores_them(
    tmp_path, monkeypatch, tiny_autoencoder_ckpt, capsys
):
    data = tmp_path / "mm"
    assert main(["data", "moving-mnist", "--num", "20", "--frames", "17", "--out", str(data)]) == 0
    monkeypatch.setenv("VIDEODIFF_MOVING_MNIST", str(data))
    # Untrained: what is scored does not matter here, only that it is scored.
    configs = [f"{ROOT}/configs/dit/tiny_joint.yaml", f"{ROOT}/configs/dit/moving_mnist_tiny.yaml"]
    ckpt = write_untrained_dit_checkpoint(tmp_path / "dit.ckpt", tiny_autoencoder_ckpt, *configs)
    out = tmp_path / "eval"
    args = ["evaluate", "--ckpt", str(ckpt), "--real", str(data / "val.jsonl"), "--out", str(out)]
    assert main([*args, "--num", "2", "--steps", "2", "--batch", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fvd"]["protocol"] == "fvd2_16f" and math.isfinite(metrics["fvd"]["value"])
    assert metrics["fvd"]["real"] == 2 and metrics["fvd"]["generated"] == 2
    assert metrics["autoencoder"]["clips"] == 2 and metrics["autoencoder"]["psnr"] > 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["000000.mp4", "000001.mp4"]
    assert "fvd2_16f = " in capsys.readouterr().out
    # Too few frames for the protocol is refused before any work.
    assert main([*args, "--size", "9x64x64"]) == 2 and "the FVD protocol compares 16" in capsys.readouterr().err
