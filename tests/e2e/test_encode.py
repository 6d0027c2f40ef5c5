from pathlib import Path

import torch
from lightning.pytorch import Trainer

from videodiff.cli import main
from videodiff.data import ClipSampling, LatentGrid, ShapeBuckets, VideoDataModule
from videodiff.data.latents import LatentDataset
from videodiff.data.manifest import read_manifest
from videodiff.models.autoencoder.model import VideoAutoencoder
from videodiff.models.autoencoder.module import AutoencoderModule


def _trained_checkpoint(tmp_path, manifest) -> str:
    torch.manual_seed(0)
    ae = VideoAutoencoder(latent_channels=4, temporal_compression=2, spatial_compression=4, widths=[8, 8, 8], groups=4)
    module = AutoencoderModule(ae, write_reconstructions=False, warmup_steps=1)
    data = VideoDataModule(
        manifest=str(manifest),
        grid=LatentGrid(2, 4, (1, 2, 2)),
        sampling=ClipSampling(max_frames=5, token_budget=64),
        batching=ShapeBuckets(2),
        val_fraction=0.3,
    )
    trainer = Trainer(
        max_steps=2,
        limit_val_batches=2,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        val_check_interval=2,
    )
    trainer.fit(module, data)
    path = tmp_path / "ae.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def test_encode_writes_a_cache_that_decodes_like_the_autoencoder(tmp_path, synthetic_set, capsys):
    ckpt = _trained_checkpoint(tmp_path, synthetic_set)
    module = AutoencoderModule.from_checkpoint(ckpt)
    assert module.latent_scale.item() != 1.0  # estimated during validation, restored from the checkpoint
    out = tmp_path / "cache"
    assert (
        main(
            [
                "encode",
                "--ckpt",
                ckpt,
                "--manifest",
                str(synthetic_set),
                "--out",
                str(out),
                "--max-frames",
                "5",
                "--token-budget",
                "64",
                "--val-fraction",
                "0.25",
            ]
        )
        == 0
    )
    assert "encoded 24 clips" in capsys.readouterr().out
    entries = read_manifest(out / "manifest.jsonl")
    assert {e.extra["split"] for e in entries} == {"train", "val"}
    train, val = LatentDataset(out, "train"), LatentDataset(out, "val")
    assert len(train) + len(val) == 24 and len(val) == 6
    sample = train[0]
    entry = train.entries[0]
    assert tuple(sample.video.shape[1:]) == tuple(entry.extra["latent_shape"]) and sample.caption == entry.caption
    # Round trip: the cached latent decodes to what the module itself gives for the same clip.
    from videodiff.data.datasets import ClipPlanner, VideoDataset

    planner = ClipPlanner(LatentGrid(2, 4, (1, 2, 2)), ClipSampling(target_fps=8, max_frames=5, token_budget=64))
    source = [e for e in read_manifest(synthetic_set) if e.path == entry.extra["source"]][0]
    video = VideoDataset([source], planner)[0].video
    assert list(video.shape[1:]) == entry.extra["pixel_shape"]
    with torch.no_grad():
        torch.testing.assert_close(module.encode(video[None])[0], sample.video, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module.decode(sample.video[None]), module.decode(module.encode(video[None])))


def test_encode_reports_errors(tmp_path, synthetic_set, capsys):
    args = ["--manifest", str(synthetic_set), "--out", str(tmp_path / "o")]
    assert main(["encode", "--ckpt", str(tmp_path / "none.ckpt"), *args]) == 1
    assert "none.ckpt: checkpoint not found" in capsys.readouterr().err
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, tmp_path / "dit.ckpt")
    assert main(["encode", "--ckpt", str(tmp_path / "dit.ckpt"), *args]) == 1
    assert "dit.ckpt: not an AutoencoderModule checkpoint" in capsys.readouterr().err


def test_encode_skips_and_reports_unreadable_clips(tmp_path, synthetic_set, capsys):
    from videodiff.data.manifest import ManifestEntry, write_manifest

    ckpt = _trained_checkpoint(tmp_path, synthetic_set)
    entries = read_manifest(synthetic_set)[:4]
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    entries.append(ManifestEntry(str(tmp_path / "broken.mp4"), "broken", frames=9, fps=8.0, height=32, width=32))
    write_manifest(entries, tmp_path / "m.jsonl")
    assert (
        main(
            [
                "encode",
                "--ckpt",
                ckpt,
                "--manifest",
                str(tmp_path / "m.jsonl"),
                "--out",
                str(tmp_path / "c"),
                "--max-frames",
                "5",
                "--token-budget",
                "64",
                "--val-fraction",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "encoded 4 clips" in out and "skipped 1" in out and "broken.mp4: cannot open as video" in out
    assert len(LatentDataset(tmp_path / "c")) == 4


def test_a_checkpoint_written_by_the_cli_encodes(tmp_path, synthetic_set):
    """Regression: LightningCLI adds private keys (_class_path, _instantiator) to a checkpoint's hparams."""
    from videodiff.cli import VideoDiffCLI

    root = Path(__file__).resolve().parents[2]
    VideoDiffCLI(
        args=[
            "fit", "--config", str(root / "configs/autoencoder/tiny.yaml"),
            "--config", str(root / "configs/presets/debug.yaml"),
            "--data.init_args.synthetic=null", f"--data.init_args.manifest={synthetic_set}",
            "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.enable_checkpointing=true",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={tmp_path}", "--trainer.callbacks.filename=ae",
            "--trainer.callbacks.enable_version_counter=false",
        ]
    )  # fmt: skip
    assert "_class_path" in torch.load(tmp_path / "ae.ckpt", weights_only=True)["hyper_parameters"]
    assert AutoencoderModule.from_checkpoint(tmp_path / "ae.ckpt").latent_grid.spatial_compression == 2  # tiny.yaml
    args = [
        "encode",
        "--ckpt",
        str(tmp_path / "ae.ckpt"),
        "--manifest",
        str(synthetic_set),
        "--out",
        str(tmp_path / "c"),
    ]
    assert main([*args, "--max-frames", "5", "--token-budget", "64"]) == 0
