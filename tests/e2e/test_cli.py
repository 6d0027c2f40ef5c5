import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from videodiff.cli import VideoDiffCLI, main
from videodiff.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
MODEL = "--model=tests.helpers.TinyReconstruction"
DATA = str(ROOT / "configs/data/synthetic.yaml")


def videodiff(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    exe = Path(sys.executable).parent / "videodiff"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "data", "encode", "sample", "fvd", "report"):
        assert f"  {command} " in out
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0 and "--trainer.max_steps" in capsys.readouterr().out


def test_synth_then_scan_finds_everything_readable(tmp_path):
    result = videodiff("data", "synth", "--out", str(tmp_path / "set"), "--num", "12", "--seed", "4")
    assert result.returncode == 0, result.stderr
    manifest = tmp_path / "set" / "manifest.jsonl"
    result = videodiff("data", "scan", str(manifest), "--out", str(tmp_path / "clean.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "12 entries: 12 readable, 0 unreadable" in result.stdout
    written, scanned = read_manifest(manifest), read_manifest(tmp_path / "clean.jsonl")
    assert [(e.path, e.frames, e.fps, e.height, e.width, e.caption) for e in scanned] == [
        (e.path, e.frames, e.fps, e.height, e.width, e.caption) for e in written
    ]


def test_scan_reports_unreadable_files_and_fills_metadata(tmp_path, clip_manifest):
    manifest, _ = clip_manifest
    lines = manifest.read_text().splitlines()
    stripped = [json.dumps({"path": json.loads(line)["path"], "caption": "c"}) for line in lines]
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 300)
    stripped += [json.dumps({"path": "broken.mp4", "caption": "b"}), json.dumps({"path": "gone.mp4", "caption": "g"})]
    (tmp_path / "m.jsonl").write_text("\n".join(stripped) + "\n")
    result = videodiff("data", "scan", str(tmp_path / "m.jsonl"))
    assert result.returncode == 0, result.stderr
    assert f"{len(lines) + 2} entries: {len(lines)} readable, 2 unreadable" in result.stdout
    assert "broken.mp4: cannot open as video" in result.stdout and "gone.mp4: file not found" in result.stdout
    assert read_manifest(tmp_path / "m.clean.jsonl") == [
        e.__class__(**{**e.__dict__, "caption": "c"}) for e in read_manifest(manifest)
    ]


def test_scan_exit_codes(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"path": "a.mp4"}\n')
    result = videodiff("data", "scan", str(tmp_path / "bad.jsonl"))
    assert result.returncode == 1 and "bad.jsonl:1: missing required field 'caption'" in result.stderr
    assert videodiff("data", "scan").returncode == 2
    assert videodiff("data", "scan", str(tmp_path / "none.jsonl")).returncode == 1


NEEDS_CUDA = {"fsdp.yaml"}


def _print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as info:
        VideoDiffCLI(args=["fit", *args, "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _compose(config: Path, autoencoder: str) -> list[str]:
    args = ["--config", str(config)]
    base = re.search(r"^# base: (\S+)", config.read_text(), flags=re.MULTILINE)  # an overlay names its base
    if base:
        args = ["--config", str(ROOT / base.group(1)), *args]
    content = yaml.safe_load((ROOT / base.group(1) if base else config).read_text())
    if "data" not in content:
        args = ["--config", DATA, *args]
    if "model" not in content:
        args.append(MODEL)
    elif content["model"]["class_path"].endswith("DiTModule"):
        args.append(f"--model.init_args.autoencoder={autoencoder}")
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_parses_instantiates_and_round_trips(tmp_path, capsys, config, monkeypatch, tiny_autoencoder_ckpt):
    monkeypatch.setenv("VIDEODIFF_MANIFEST", str(tmp_path / "m.jsonl"))
    args = _compose(config, tiny_autoencoder_ckpt)
    printed = _print_config(capsys, *args)
    (tmp_path / "printed.yaml").write_text(yaml.safe_dump(printed))
    assert _print_config(capsys, "--config", str(tmp_path / "printed.yaml")) == printed
    if config.name in NEEDS_CUDA:
        return  # Lightning refuses the strategy without CUDA; test_distributed instantiates it alone
    cli = VideoDiffCLI(args=args, run=False)  # run=False: no subcommand, classes instantiated
    assert cli.datamodule is not None and cli.model is not None and cli.trainer is not None


def test_command_line_override_reaches_interpolated_keys(capsys, tmp_path):
    printed = _print_config(capsys, "--config", DATA, MODEL, "--data.init_args.seed=7")
    assert printed["data"]["init_args"]["synthetic"]["seed"] == 7
    root = str(tmp_path / "elsewhere")
    printed = _print_config(
        capsys,
        "--config",
        DATA,
        "--config",
        str(ROOT / "configs/presets/csv.yaml"),
        MODEL,
        f"--trainer.default_root_dir={root}",
    )
    assert printed["trainer"]["logger"]["init_args"]["save_dir"] == root
    # Later config files win, and their values also flow through the interpolation.
    (tmp_path / "o.yaml").write_text("data:\n  init_args:\n    seed: 11\n")
    printed = _print_config(capsys, "--config", DATA, "--config", str(tmp_path / "o.yaml"), MODEL)
    assert printed["data"]["init_args"]["synthetic"]["seed"] == 11


def test_fit_runs_and_saves_its_resolved_config(tmp_path):
    run_dir = tmp_path / "run"
    main(
        [
            "fit",
            "--config",
            DATA,
            "--config",
            str(ROOT / "configs/presets/debug.yaml"),
            "--config",
            str(ROOT / "configs/presets/csv.yaml"),
            MODEL,
            "--data.init_args.synthetic.num=12",
            "--data.init_args.seed=3",
            f"--trainer.default_root_dir={run_dir}",
            "--trainer.enable_checkpointing=true",
        ]
    )
    (saved,) = run_dir.rglob("config.yaml")
    config = yaml.safe_load(saved.read_text())
    assert config["data"]["init_args"]["synthetic"]["seed"] == 3  # resolved, not "${..seed}"
    (metrics,) = run_dir.rglob("metrics.csv")
    assert "train/loss" in metrics.read_text().splitlines()[0]
    (hparams,) = run_dir.rglob("hparams.yaml")  # the resolved config also went to the logger
    assert yaml.safe_load(hparams.read_text())["config"]["data"]["init_args"]["synthetic"]["seed"] == 3
    (checkpoint,) = run_dir.rglob("*.ckpt")  # and into the checkpoint itself
    in_checkpoint = yaml.safe_load(torch.load(checkpoint, weights_only=False)["videodiff_config"])
    assert in_checkpoint == config


def test_default_logger_is_offline_wandb(tmp_path):
    main(
        [
            "fit",
            "--config",
            DATA,
            "--config",
            str(ROOT / "configs/presets/debug.yaml"),
            MODEL,
            "--trainer.logger=null",
            "--config",
            str(ROOT / "configs/presets/wandb.yaml"),
            "--data.init_args.synthetic.num=8",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_data_inspect_summarises_a_config(capsys):
    assert (
        main(
            [
                "data",
                "inspect",
                "--config",
                DATA,
                "--data.init_args.synthetic.num=10",
                "--data.init_args.val_fraction=0.2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train 8 samples, val 2, skipped 0" in out and "samples/s" in out


def test_autoencoder_fast_dev_run_from_its_config(tmp_path):
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/autoencoder/tiny.yaml"),
            "--trainer.fast_dev_run=2",
            "--trainer.logger=false",
            "--data.init_args.synthetic.num=10",
            "--data.init_args.val_fraction=0.3",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    videos = list(tmp_path.rglob("reconstructions/*.mp4"))
    assert videos  # side-by-side input | output clips were written


def test_data_index_builds_a_manifest_from_a_folder_with_sidecar_captions(tmp_path, write_clip, capsys):
    first, _ = write_clip()
    second, _ = write_clip(seed=1)
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    first.rename(folder / "a.mp4")
    second.rename(folder / "sub" / "b.mp4")
    (folder / "a.txt").write_text("a dog running on a beach\n")
    out = tmp_path / "mine.jsonl"
    assert main(["data", "index", str(folder), "--out", str(out)]) == 0
    assert "2 files, 1 without a caption" in capsys.readouterr().out
    entries = read_manifest(out)
    assert [Path(e.path).name for e in entries] == ["a.mp4", "b.mp4"]
    assert [e.caption for e in entries] == ["a dog running on a beach", ""]
    assert main(["data", "scan", str(out)]) == 0 and "2 readable, 0 unreadable" in capsys.readouterr().out
    assert main(["data", "index", str(tmp_path / "absent"), "--out", str(out)]) == 1
    assert "absent: not a directory" in capsys.readouterr().err
