"""AutoencoderModule: trains the causal video VAE on the shared VideoDataModule (same-shape batches)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from videodiff.data.datasets import VideoBatch
from videodiff.data.sizing import LatentGrid
from videodiff.errors import ConfigError
from videodiff.models.autoencoder.losses import (
    PatchDiscriminator3D,
    generator_adversarial_loss,
    hinge_discriminator_loss,
)
from videodiff.models.autoencoder.model import VideoAutoencoder
from videodiff.models.checkpoints import load_strict, read_checkpoint
from videodiff.models.fault_tolerance import FaultTolerantSteps, NonFinitePolicy
from videodiff.models.lr_schedule import build_scheduler
from videodiff.models.throughput import StepThroughput


def reconstruction_quality(video: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and SSIM over all frames of ``(B, C, T, H, W)`` videos in [-1, 1] (frames taken in [0, 1])."""
    frames = lambda v: ((v.clamp(-1, 1) + 1) / 2).transpose(1, 2).flatten(0, 1)  # (B T, C, H, W) in [0, 1]
    real, fake = frames(video), frames(recon)
    side = min(real.shape[-2:])
    kernel = min(11, side - (1 - side % 2))  # SSIM's Gaussian window must fit the frame (odd size)
    return {
        "psnr": peak_signal_noise_ratio(fake, real, data_range=1.0),
        "ssim": structural_similarity_index_measure(fake, real, data_range=1.0, kernel_size=kernel),
    }


class AutoencoderModule(FaultTolerantSteps, StepThroughput, LightningModule):
    """Reconstruction (L1 or L2) + KL training of a ``VideoAutoencoder``.

    The loss is ``mean |x - x̂|`` (or squared) + ``kl_weight`` x KL per latent element, so the weight means
    the same at any clip size. Validation logs ``val/psnr`` and ``val/ssim`` (frames in [0, 1]) of the
    posterior mode, and estimates the latent scale (1 / std of the latents) that the DiT divides by, kept in
    the checkpoint as the buffer ``latent_scale``. Reconstructions of the first validation batch are written
    side by side (input | output) as mp4 into ``<log dir>/reconstructions/``.

    Args:
        autoencoder: the network.
        reconstruction: ``l1`` or ``l2``.
        kl_weight: weight of the KL term per latent element.
        lr, betas, weight_decay: AdamW.
        warmup_steps: linear learning-rate warm-up.
        write_reconstructions: write the side-by-side videos each validation epoch.
        discriminator: an optional 3-D PatchGAN; with one, optimisation is manual (two optimisers) and
            gradients are clipped here (``gradient_clip``), not by the Trainer.
        discriminator_start: the step from which the adversarial terms are on.
        adversarial_weight: weight of the generator's adversarial loss.
        gradient_clip: gradient-norm clipping of both optimisers in the adversarial (manual) mode.
        on_nonfinite: a step whose loss is NaN/inf is skipped and counted (``skip``), or ends the run
            (``stop``); see ``FaultTolerantSteps``.

    In the adversarial mode Lightning counts both optimisers' steps, so ``trainer.max_steps`` and
    ``discriminator_start`` are in optimiser steps: two per batch.
    """

    throughput_unit = "pixels"

    def __init__(
        self,
        autoencoder: VideoAutoencoder,
        reconstruction: Literal["l1", "l2"] = "l1",
        kl_weight: float = 1e-4,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        write_reconstructions: bool = True,
        discriminator: PatchDiscriminator3D | None = None,
        discriminator_start: int = 2000,
        adversarial_weight: float = 0.1,
        gradient_clip: float | None = 1.0,
        on_nonfinite: NonFinitePolicy = "skip",
    ):
        super().__init__()
        self.check_nonfinite_policy(on_nonfinite)
        self.on_nonfinite = on_nonfinite
        if reconstruction not in ("l1", "l2"):
            raise ValueError(f"reconstruction must be 'l1' or 'l2', got {reconstruction!r}")
        self.save_hyperparameters(ignore=["autoencoder", "discriminator"])
        # The checkpoint rebuilds the networks from these, without the run's config file.
        self.hparams["autoencoder_config"] = autoencoder.config
        self.hparams["discriminator_config"] = discriminator.config if discriminator is not None else None
        self.autoencoder, self.discriminator = autoencoder, discriminator
        self.automatic_optimization = discriminator is None
        self.register_buffer("latent_scale", torch.tensor(1.0))
        self._latent_moments: list[torch.Tensor] = []

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AutoencoderModule:
        """Rebuild the module from a checkpoint alone (strict: every key must match)."""
        hparams, state_dict = read_checkpoint(path, map_location)
        if "backbone_config" in hparams:
            raise ConfigError(
                f"{path}: a DiT checkpoint, not an autoencoder checkpoint; give the autoencoder's checkpoint "
                "(model.init_args.autoencoder)"
            )
        if "autoencoder_config" not in hparams:
            raise ConfigError(f"{path}: not an AutoencoderModule checkpoint (no 'autoencoder_config' hyperparameter)")
        network = VideoAutoencoder(**hparams.pop("autoencoder_config"))
        disc_config = hparams.pop("discriminator_config", None)
        discriminator = PatchDiscriminator3D(**disc_config) if disc_config else None
        module = cls(network, discriminator=discriminator, **hparams)
        load_strict(module, state_dict, path)
        return module.eval()

    @property
    def latent_grid(self) -> LatentGrid:
        """How this autoencoder maps pixels to latents (the data module's grid, with 1x1x1 patches)."""
        ae = self.autoencoder
        return LatentGrid(ae.temporal_compression, ae.spatial_compression, (1, 1, 1), causal=True)

    def _losses(self, video: torch.Tensor, sample: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        recon, posterior = self.autoencoder(video, sample=sample)
        error = recon - video
        rec = error.abs().mean() if self.hparams.reconstruction == "l1" else error.pow(2).mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        return {"rec": rec, "kl": kl, "loss": rec + self.hparams.kl_weight * kl}, recon, posterior.mode()

    def training_step(self, batch: VideoBatch, batch_idx: int) -> torch.Tensor | None:
        if len(batch) == 0:  # every sample of the batch was unreadable (counted by the data module)
            return self.guard_loss(None)
        if self.discriminator is not None:
            return self._adversarial_step(batch)
        losses, _, _ = self._losses(batch.video, sample=True)
        self.step_work = batch.video[:, 0].numel()  # pixels (frames x height x width) of the batch
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(batch), prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(batch))
        return self.guard_loss(losses["loss"])

    def _adversarial_step(self, batch: VideoBatch) -> torch.Tensor | None:
        """Manual optimisation: the autoencoder step, then (once on) the discriminator step."""
        ae_opt, disc_opt = self.optimizers()
        schedulers = self.lr_schedulers()
        adversarial = self.global_step >= self.hparams.discriminator_start
        losses, recon, _ = self._losses(batch.video, sample=True)
        if adversarial:
            losses["g_adv"] = generator_adversarial_loss(self.discriminator(recon))
            losses["loss"] = losses["loss"] + self.hparams.adversarial_weight * losses["g_adv"]
        if self.guard_loss(losses["loss"]) is None:
            return None  # neither optimiser steps, so the two step counts stay equal
        ae_opt.zero_grad()
        self.manual_backward(losses["loss"])
        self.clip_gradients(ae_opt, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        ae_opt.step()
        disc_loss = torch.zeros((), device=batch.video.device)
        if adversarial:
            disc_loss = hinge_discriminator_loss(self.discriminator(batch.video), self.discriminator(recon.detach()))
            disc_opt.zero_grad()
            self.manual_backward(disc_loss)
            self.clip_gradients(disc_opt, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        disc_opt.step()  # a zero-gradient step before the start keeps both optimisers' step counts equal
        for scheduler in schedulers:
            scheduler.step()
        losses["d_loss"] = disc_loss
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(batch), prog_bar=True)
        return losses["loss"]

    def validation_step(self, batch: VideoBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        losses, recon, latents = self._losses(batch.video, sample=False)
        quality = reconstruction_quality(batch.video, recon)
        metrics = {
            "val/rec": losses["rec"],
            "val/kl": losses["kl"],
            "val/loss": losses["loss"],
            "val/psnr": quality["psnr"],
            "val/ssim": quality["ssim"],
        }
        self.log_dict(metrics, batch_size=len(batch), sync_dist=True)
        self._latent_moments.append(torch.stack([latents.sum(), latents.pow(2).sum(), torch.tensor(latents.numel())]))
        writes = self.hparams.write_reconstructions and not self.trainer.sanity_checking and self.trainer.is_global_zero
        if batch_idx == 0 and writes:
            self._write_reconstructions(batch.video, recon)

    def on_validation_epoch_end(self) -> None:
        if not self._latent_moments or self.trainer.sanity_checking:
            self._latent_moments.clear()
            return
        # Summed over ranks, so every rank (and the checkpoint) holds the scale of the whole validation set.
        moments = torch.stack(self._latent_moments).sum(0).double()
        total, squares, count = self.trainer.strategy.reduce(moments, reduce_op="sum")
        self._latent_moments.clear()
        std = torch.sqrt(squares / count - (total / count) ** 2).float()
        self.latent_scale.fill_(float(1.0 / std.clamp_min(1e-6)))
        self.log("val/latent_std", std, sync_dist=True)

    def _write_reconstructions(self, video: torch.Tensor, recon: torch.Tensor) -> None:
        from videodiff.callbacks.video_logging import log_videos, run_directory
        from videodiff.data.decoding import write_gif, write_video
        from videodiff.data.transforms import to_frames

        root = run_directory(self.trainer) / "reconstructions"
        pair = torch.cat([video, recon.clamp(-1, 1)], dim=-1)  # (B, C, T, H, 2W): input | output
        paths, gifs, shapes = [], [], []
        for i, clip in enumerate(pair[:4]):
            frames = to_frames(clip)
            paths.append(write_video(root / f"step{self.global_step:07d}-{i}.mp4", frames, fps=8, lossless=True))
            gifs.append(write_gif(root / f"step{self.global_step:07d}-{i}.gif", frames, fps=8).read_bytes())
            shapes.append(frames.shape[:3])
        log_videos(self.trainer, "reconstructions", paths, gifs, shapes, ["input | reconstruction"] * len(paths))

    def configure_optimizers(self):
        networks = [self.autoencoder] + ([self.discriminator] if self.discriminator is not None else [])
        optimizers, schedulers = [], []
        for network in networks:
            optimizer = torch.optim.AdamW(
                network.parameters(),
                lr=self.hparams.lr,
                betas=self.hparams.betas,
                weight_decay=self.hparams.weight_decay,
            )
            optimizers.append(optimizer)
            schedulers.append(build_scheduler(optimizer, self.hparams.warmup_steps, "constant", -1, 1.0))
        return optimizers, schedulers

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic, scaled latents (posterior mode x ``latent_scale``): what the DiT trains on."""
        return self.autoencoder.encode(video).mode() * self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(latents / self.latent_scale)
