"""Test-only modules and callbacks: small models for the CLI and the data module, recorders for DDP runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from torch import nn

from videodiff.data.datasets import VideoBatch


class TinyReconstruction(LightningModule):
    """A pointwise 3D convolution trained to reproduce its input: small, real and fast."""

    def __init__(self, lr: float = 1e-2):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Conv3d(3, 3, kernel_size=1)

    def _loss(self, batch: VideoBatch) -> torch.Tensor | None:
        if len(batch) == 0:  # every sample of the batch was unreadable
            return None
        return F.mse_loss(self.net(batch.video), batch.video)

    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor | None:
        loss = self._loss(batch)
        if loss is not None:
            self.log("train/loss", loss, batch_size=len(batch))
        return loss

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> None:
        loss = self._loss(batch)
        if loss is not None:
            self.log("val/loss", loss, batch_size=len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def write_autoencoder_checkpoint(path, latent_scale: float = 0.5, seed: int = 0, spatial: int = 4) -> str:
    """An untrained tiny causal VAE (2x temporal, ``spatial``x spatial, 4 latent channels) as a checkpoint."""
    from videodiff.models.autoencoder.model import VideoAutoencoder
    from videodiff.models.autoencoder.module import AutoencoderModule

    torch.manual_seed(seed)
    widths = [8] * (spatial.bit_length())  # one width per level: log2(spatial) + 1
    ae = VideoAutoencoder(
        latent_channels=4, temporal_compression=2, spatial_compression=spatial, widths=widths, groups=4
    )
    module = AutoencoderModule(ae, write_reconstructions=False)
    module.latent_scale.fill_(latent_scale)
    return save_module(module, path)


def save_module(module: LightningModule, path) -> str:
    """A module's weights and hyperparameters as a checkpoint the commands load (no trainer needed)."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return str(path)


def write_untrained_dit_checkpoint(path, autoencoder_ckpt: str, *configs: str) -> str:
    """The DiTModule that ``videodiff fit --config ...`` would train, untrained, as a checkpoint: for commands
    whose test needs every stage to run, not a network that has learned anything."""
    from videodiff.cli import VideoDiffCLI

    args = [a for config in configs for a in ("--config", config)]
    args += [f"--model.init_args.autoencoder={autoencoder_ckpt}", "--trainer.logger=false"]
    return save_module(VideoDiffCLI(args=args, run=False).model, path)


def make_dit_module(autoencoder_ckpt: str, **kwargs):
    """A tiny text- and label-conditioned DiTModule over the tiny autoencoder (seeded)."""
    import functools

    from videodiff.models.dit.model import DiT
    from videodiff.models.dit.module import DiTModule
    from videodiff.models.text import CaptionClasses, WordTextEncoder

    torch.manual_seed(0)
    backbone = functools.partial(DiT, patch_size=(1, 2, 2), size="tiny", hidden_size=32, depth=2, num_heads=2)
    options = dict(text_encoder=WordTextEncoder(dim=16), labels=CaptionClasses(["circle", "square", "triangle"]))
    return DiTModule(backbone, autoencoder_ckpt, **{**options, **kwargs})


class RecordBatches(Callback):
    """Appends, per rank, each training batch's sample indices to ``<out>/rank<r>.jsonl`` (DDP tests read them)."""

    def __init__(self, out: str):
        self.out = out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        record = {"epoch": trainer.current_epoch, "step": trainer.global_step, "indices": batch.indices.tolist()}
        with open(Path(self.out) / f"rank{trainer.global_rank}.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")
