"""Bad steps and bad disks: a non-finite loss is skipped or stops the run; the last good checkpoint survives."""

import errno
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from videodiff.cli import VideoDiffCLI
from videodiff.models import checkpoints
from videodiff.models.checkpoints import CheckpointWriteError, SafeCheckpointIO
from videodiff.models.fault_tolerance import step_seed

ROOT = Path(__file__).resolve().parents[2]


class Poison(Callback):
    """Turns the input of the step at ``global_step == at`` into NaN."""

    def __init__(self, at: int):
        self.at, self.losses = at, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.at:
            batch.video.fill_(math.nan)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]) if outputs else None)  # a skipped step has no outputs


def _fit(root: Path, policy: str, max_steps: int, poison_at: int):
    config, debug = str(ROOT / "configs/autoencoder/tiny.yaml"), str(ROOT / "configs/presets/debug.yaml")
    args = ["--config", config, "--config", debug,
            f"--trainer.default_root_dir={root}", f"--trainer.max_steps={max_steps}",
            "--trainer.limit_train_batches=1.0", "--trainer.enable_checkpointing=true",
            "--data.init_args.synthetic.num=12", f"--model.init_args.on_nonfinite={policy}"]  # fmt: skip
    cli = VideoDiffCLI(args=args, run=False)
    poison = Poison(poison_at)
    every_step = ModelCheckpoint(dirpath=root / "ckpt", save_last=True, every_n_train_steps=1)
    cli.trainer.callbacks.extend([poison, every_step])
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, poison


def test_a_nonfinite_loss_is_skipped_and_counted(tmp_path, recwarn):
    cli, poison = _fit(tmp_path, "skip", max_steps=5, poison_at=2)
    assert cli.model.nonfinite_steps == 1 and cli.trainer.global_step == 5
    assert poison.losses[2] is None and all(math.isfinite(x) for i, x in enumerate(poison.losses) if i != 2)
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    assert cli.trainer.callback_metrics["train/nonfinite_steps"] == 1
    assert any("non-finite training loss at global step 2: step skipped" in str(w.message) for w in recwarn)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["videodiff_run"]["nonfinite_steps"] == 1  # a resumed run keeps counting


def test_stop_policy_ends_the_run_with_good_weights_in_the_last_checkpoint(tmp_path):
    cli, _ = _fit(tmp_path, "stop", max_steps=20, poison_at=3)
    assert cli.trainer.global_step <= 4 and cli.model.nonfinite_steps == 1
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert checkpoints.nonfinite_tensors(saved["state_dict"]) == []


def test_bad_policy_is_rejected_before_training():
    from videodiff.models.autoencoder.model import VideoAutoencoder
    from videodiff.models.autoencoder.module import AutoencoderModule

    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        network = VideoAutoencoder(spatial_compression=2, temporal_compression=2, widths=[8, 8], groups=4)
        AutoencoderModule(network, on_nonfinite="ignore")


def test_step_seeds_differ_by_rank_step_and_batch_and_repeat_exactly():
    seeds = {step_seed(7, rank, step, batch) for rank in range(2) for step in range(3) for batch in range(3)}
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(7, 1, 2, 0) == step_seed(7, 1, 2, 0) != step_seed(8, 1, 2, 0)


def _checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((3,), value), "steps": torch.tensor(5)}, "global_step": 7}


def test_nonfinite_weights_never_overwrite_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    good = path.read_bytes()
    with pytest.raises(CheckpointWriteError, match=r"non-finite weights \(w\) at global step 7; the last good"):
        SafeCheckpointIO().save_checkpoint(_checkpoint(math.nan), path)
    assert path.read_bytes() == good


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    good = path.read_bytes()

    def full_disk(obj, file):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as error:
        SafeCheckpointIO().save_checkpoint(_checkpoint(2.0), path)
    message = str(error.value)
    assert str(path) in message and "No space left on device" in message and "previous checkpoint" in message
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_an_unwritable_directory_is_one_clear_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", refuse)  # what an unwritable folder does (even as root)
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint .*: Permission denied; nothing was"):
        SafeCheckpointIO().save_checkpoint(_checkpoint(1.0), tmp_path / "runs" / "x.ckpt")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.undo()
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint"):
        SafeCheckpointIO().save_checkpoint(_checkpoint(1.0), not_a_folder / "x.ckpt")
