"""A run killed mid-epoch and resumed from its checkpoint continues exactly as if it had never stopped."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from videodiff.cli import VideoDiffCLI, main

ROOT = Path(__file__).resolve().parents[2]
DEBUG = str(ROOT / "configs/presets/debug.yaml")


class Killed(Exception):
    pass


class Record(Callback):
    """Each training step's loss and the samples it trained on; raises ``Killed`` before step ``kill_at``."""

    def __init__(self, kill_at: int | None = None):
        self.kill_at, self.losses, self.samples = kill_at, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.kill_at:
            raise Killed

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.samples.append(tuple(batch.captions))


def _run(config: str, extra: list[str], root: Path, record: Record, steps: int, ckpt_path: str | None = None):
    args = ["--config", config, "--config", DEBUG, f"--trainer.default_root_dir={root}",
            f"--trainer.max_steps={steps}", "--trainer.limit_train_batches=1.0", "--trainer.deterministic=true",
            "--trainer.val_check_interval=3", "--trainer.check_val_every_n_epoch=null",
            "--trainer.enable_checkpointing=true", "--data.init_args.synthetic.num=16", *extra]  # fmt: skip
    cli = VideoDiffCLI(args=args, run=False)
    every_step = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    cli.trainer.callbacks.extend([record, every_step])
    try:
        cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=ckpt_path)
    except Killed:
        pass
    return cli


def _dit(autoencoder: str) -> tuple[str, list[str]]:
    return str(ROOT / "configs/dit/tiny_joint.yaml"), [
        f"--model.init_args.autoencoder={autoencoder}",
        "--model.init_args.dropping.rate=[0.0, 0.5]",  # random token dropping must resume too
        "--data.init_args.batching.init_args.max_tokens=160",
        "--data.init_args.batching.init_args.rows=2",  # enough batches an epoch for a kill in its middle
        "--data.init_args.sampling.token_budget=128",
    ]


def _autoencoder() -> tuple[str, list[str]]:
    return str(ROOT / "configs/autoencoder/tiny.yaml"), ["--data.init_args.batching.init_args.batch_size=4"]


@pytest.mark.parametrize("model, where", [("dit", "mid-epoch"), ("dit", "epoch-end"), ("autoencoder", "mid-epoch")])
def test_killed_and_resumed_matches_an_uninterrupted_run(tmp_path, tiny_autoencoder_ckpt, model, where):
    # The DiT is killed in the middle of epoch 0 or right at its end, the autoencoder (more batches per epoch:
    # one shape per batch) in the middle of epoch 1; every run goes on into the next epoch.
    config, extra = _dit(tiny_autoencoder_ckpt) if model == "dit" else _autoencoder()
    steps = 9 if model == "dit" else 18
    straight = Record()
    cli = _run(config, extra, tmp_path / "straight", straight, steps)
    per_epoch = cli.trainer.num_training_batches
    kill = {"dit": per_epoch // 2 + 1, "autoencoder": per_epoch + 1}[model] if where == "mid-epoch" else per_epoch
    assert cli.trainer.global_step == steps and steps - kill >= 2 and steps > per_epoch
    assert (kill % per_epoch != 0) == (where == "mid-epoch")
    # Lightning does not rerun, on resume, a validation that was due right after the checkpointed step; the
    # autoencoder's latent scale comes from validation, so its kill is placed off the validation steps.
    assert model == "dit" or kill % 3 != 0
    assert straight.samples[per_epoch:] != straight.samples[: steps - per_epoch]  # each epoch is planned anew

    first = Record(kill_at=kill)
    _run(config, extra, tmp_path / "killed", first, steps)
    assert len(first.losses) == kill
    resumed = Record()
    ckpt = tmp_path / "killed" / "ckpt" / f"step={kill}.ckpt"
    again = _run(config, extra + ["--seed_everything=123"], tmp_path / "killed", resumed, steps, str(ckpt))

    # Same samples in the same order, and the same losses, step for step (a different seed on the command
    # line does not matter: the run's seed is in the checkpoint).
    assert first.samples + resumed.samples == straight.samples
    assert first.losses + resumed.losses == straight.losses
    assert again.trainer.global_step == steps
    a, b = cli.model.state_dict(), again.model.state_dict()  # weights, EMA, optimiser-driven state
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    lr = lambda c: [g["lr"] for g in c.trainer.optimizers[0].param_groups]
    assert lr(cli) == lr(again)


def test_ckpt_path_last_resumes_from_the_newest_checkpoint_of_the_run(tmp_path, capfd, caplog):
    caplog.set_level("INFO")
    args = ["fit", "--config", str(ROOT / "configs/autoencoder/tiny.yaml"), "--config", DEBUG,
            f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.enable_checkpointing=true",
            "--trainer.val_check_interval=2", "--data.init_args.synthetic.num=8",
            "--trainer.limit_train_batches=1.0"]  # fmt: skip
    assert main([*args, "--trainer.max_steps=2", "--ckpt_path=last"]) == 0  # nothing to resume yet: starts fresh
    assert "Restored all states" not in caplog.text
    assert main([*args, "--trainer.max_steps=4", "--ckpt_path=last"]) == 0
    assert "Restored all states from the checkpoint at " + str(tmp_path / "run") in caplog.text
    capfd.readouterr()
    (tmp_path / "empty").mkdir()
    assert main([*args, f"--ckpt_path={tmp_path / 'empty'}"]) == 2
    assert "no .ckpt file under this folder" in capfd.readouterr().err
