import json
import shutil
import sys

from lightning.pytorch.loggers import CSVLogger

from videodiff.cli import main
from videodiff.commands import stage
from videodiff.commands.fidelity import summarise
from videodiff.data.decoding import read_frames_pyav, write_gif, write_video
from videodiff.data.manifest import read_manifest, write_manifest


def test_stage_runner_records_durations_and_fails_loudly(tmp_path, capsys):
    log = tmp_path / "timings.jsonl"
    assert stage.main(["--log", str(log), "--name", "hello", "--", sys.executable, "-c", "print('hi')"]) == 0
    assert stage.main(["--log", str(log), "--name", "broken", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    out = capsys.readouterr().out
    assert "==> hello: done in" in out and "==> broken: FAILED (exit 3)" in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["stage"] for r in records] == ["hello"] and records[0]["seconds"] >= 0  # failures are not recorded


def test_report_scores_samples_and_lists_stages(tmp_path, synthetic_set, tiny_autoencoder_ckpt, capsys):
    demo = tmp_path / "demo"
    entries = read_manifest(synthetic_set)
    write_manifest(entries, demo / "data" / "manifest.clean.jsonl")
    shutil.copy(tiny_autoencoder_ckpt, demo / "autoencoder.ckpt")
    (demo / "timings.jsonl").write_text(
        json.dumps({"stage": "dit-joint", "seconds": 12.5, "command": "videodiff fit"}) + "\n"
    )
    # "Samples" that are ground-truth clips under their own captions, and one under a wrong caption.
    samples = demo / "samples-joint"
    records = []
    clips = [e for e in entries if e.frames and e.frames > 1][:3]
    for i, entry in enumerate(clips):
        frames = read_frames_pyav(entry.path)
        write_video(samples / f"{i}.mp4", frames, fps=8, lossless=True)
        write_gif(samples / f"{i}.gif", frames, fps=8)
        caption = (
            entry.caption
            if i < 2
            else "a red circle still on a " + ("gray" if "black" in entry.caption else "black") + " background"
        )
        records.append(
            {"file": f"{i}.mp4", "gif": f"{i}.gif", "prompt": caption, "size": "x".join(map(str, frames.shape[:3]))}
        )
    (samples / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copytree(samples, demo / "samples-factorised")
    write_training_logs(demo)
    # `videodiff fidelity`'s figures for the joint backbone (the factorised one has none: its row is absent).
    probe = {"prompts": 84, "size": "9x40x40", "seed": 0, "steps": 50, "guidance": 4.0}
    verdicts = {"background": [True] * 84, "color": [True] * 50 + [False] * 34, "shape": [True] * 14 + [False] * 36}
    probe |= summarise({**verdicts, "motion": [True] * 8 + [False] * 42})
    probe["first_stage"] = summarise({a: [True] * 80 for a in ("background", "color", "shape", "motion")})
    probe["confusion"] = {"shape": {"square": {"circle": 24, "square": 3}, "circle": {"circle": 22, "none": 1}}}
    (demo / "fidelity-joint.json").write_text(json.dumps(probe))
    assert main(["report", "--demo-dir", str(demo), "--eval-clips", "3"]) == 0
    report = (demo / "report" / "report.md").read_text()
    assert "| dit-joint | 12 | `videodiff fit` |" in report and "## Samples: joint" in report
    assert f"| ![](samples-joint-0.gif) | {clips[0].caption} |" in report
    data = json.loads((demo / "report" / "report.json").read_text())
    assert data["samples"]["joint"]["fidelity"]["background"] == 2 / 3  # the mislabelled one fails
    assert "On 84 one-object prompts at 9x40x40 (`videodiff fidelity`" in report
    cells = "1.00 (84/84, 95% 0.96-1.00) | 0.60 (50/84, 95% 0.49-0.69) | 0.28 (14/50, 95% 0.17-0.42)"
    assert f"| samples: joint | {cells} |" in report
    assert "| a uniform guess | 0.25 | - | 0.33 | 0.14 |" in report and report.count("| samples: factorised |") == 1
    assert data["fidelity"]["joint"]["motion"]["correct"] == 8
    # The confusion counts: a row per captioned shape, the columns in the rows' order (correct reads on the
    # diagonal), then what was read but never stated; no motion table without counts.
    table = "| shape stated | square | circle | none |\n|---|---|---|---|\n"
    table += "| square | 3 | 24 | 0 |\n| circle | 0 | 22 | 1 |"
    assert table in report
    assert "joint: each captioned shape" in report and "each captioned motion" not in report
    assert [r["held_out"] for r in data["samples"]["joint"]["rows"]][:2] == [False, False]
    html = (demo / "report" / "report.html").read_text()
    assert "<img src='samples-joint-0.gif'>" in html and "<table>" in html
    assert (demo / "report" / "samples-joint-0.gif").is_file() and 0 < data["autoencoder"]["clips"] <= 3
    assert data["autoencoder"]["psnr"] > 0 and "## Autoencoder" in report
    assert main(["report", "--demo-dir", str(tmp_path / "nothing")]) == 2
    # Training: throughput medians (first 5 records left out) and the curves, from the CSV logs.
    runs = {r["run"]: r for r in data["training"]["runs"]}
    assert runs["dit-joint"]["throughput"] == "1,017 tokens/s" and runs["dit-joint"]["seconds"] == 12.5
    assert runs["autoencoder"]["throughput"] == "2,017 pixels/s" and runs["dit-factorised"]["steps"] == 30
    assert runs["dit-factorised"]["val_loss"] == 0.25 and runs["dit-joint"]["seconds"] == 12.5
    for png in ("curves-autoencoder.png", "curves-dit.png"):
        assert (demo / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"![]({png})" in report
    # Joint and factorised side by side: one row per prompt, a column per backbone.
    assert "## Backbones side by side: joint vs factorised" in report
    assert (
        f"| {clips[0].caption} | {records[0]['size']} | ![](samples-joint-0.gif) | ![](samples-factorised-0.gif) |"
        in report
    )


def write_training_logs(demo):
    """Metrics as Lightning's CSVLogger writes them, for the autoencoder and two DiT runs."""
    for run, unit, base in (
        ("autoencoder", "pixels", 2000),
        ("dit-joint", "tokens", 1000),
        ("dit-factorised", "tokens", 500),
    ):
        logger = CSVLogger(save_dir=demo / run, name="csv")
        for step in range(30):
            logger.log_metrics({"train/loss": 1 / (step + 1), f"train/{unit}_per_s": base + step}, step=step)
        logger.log_metrics({"val/loss": 0.25, "val/psnr": 20.0, "val/ssim": 0.5}, step=29)
        logger.log_metrics({"samples/fidelity_color": 0.5, "samples/fidelity_shape": 1.0}, step=29)
        logger.save()


def test_a_stage_run_again_is_reported_by_its_latest_run_only(tmp_path):
    from videodiff.commands.report import read_timings

    log = tmp_path / "timings.jsonl"
    records = [
        {"stage": "autoencoder", "seconds": 700.0, "command": "fit ae"},
        {"stage": "dit-joint", "seconds": 2112.3, "command": "fit dit"},
        {"stage": "samples-joint", "seconds": 21.0, "command": "sample"},
        {"stage": "dit-joint", "seconds": 813.3, "command": "fit dit again"},  # its checkpoint was removed
        {"stage": "samples-joint", "seconds": 13.0, "command": "sample again"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    got = read_timings(log)
    assert [(r["stage"], r["seconds"]) for r in got] == [
        ("autoencoder", 700.0),
        ("dit-joint", 813.3),
        ("samples-joint", 13.0),
    ]
    assert read_timings(tmp_path / "missing.jsonl") == []
