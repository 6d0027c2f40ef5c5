import torch
from lightning.pytorch import Trainer

from videodiff.data import ClipSampling, LatentGrid, ShapeBuckets, VideoDataModule
from videodiff.models.autoencoder.losses import PatchDiscriminator3D, hinge_discriminator_loss
from videodiff.models.autoencoder.model import VideoAutoencoder
from videodiff.models.autoencoder.module import AutoencoderModule


def _data(manifest):
    return VideoDataModule(
        manifest=str(manifest),
        grid=LatentGrid(2, 4, (1, 2, 2)),
        sampling=ClipSampling(max_frames=5, token_budget=48),
        batching=ShapeBuckets(2),
        val_fraction=0.25,
    )


def _module(discriminator=None, start=4):
    torch.manual_seed(0)
    ae = VideoAutoencoder(latent_channels=4, temporal_compression=2, spatial_compression=4, widths=[8, 8, 8], groups=4)
    return AutoencoderModule(
        ae, discriminator=discriminator, discriminator_start=start, warmup_steps=1, write_reconstructions=False
    )


def _fit(module, data, steps, root) -> Trainer:
    trainer = Trainer(
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=root,
    )
    trainer.fit(module, data)
    return trainer


def test_adversarial_training_switches_on_at_its_step_and_checkpoints(tmp_path, synthetic_set):
    disc = PatchDiscriminator3D(channels=8, layers=2)
    module = _module(disc, start=4)
    before = [p.detach().clone() for p in disc.parameters()]
    _fit(module, _data(synthetic_set), 4, tmp_path)  # 2 batches x 2 optimiser steps: still before the start
    assert all(torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))
    trainer = _fit(module, _data(synthetic_set), 8, tmp_path)
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    restored = AutoencoderModule.from_checkpoint(tmp_path / "gan.ckpt")
    assert isinstance(restored.discriminator, PatchDiscriminator3D)
    for a, b in zip(restored.state_dict().values(), module.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())


def test_reconstruction_improves_with_training(tmp_path, synthetic_set):
    module = _module()
    data = _data(synthetic_set)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        before = module._losses(batch.video, sample=False)[0]["rec"].item()
    _fit(module, data, 30, tmp_path)
    with torch.no_grad():
        after = module._losses(batch.video, sample=False)[0]["rec"].item()
    assert after < 0.9 * before


def test_hinge_loss_closed_form():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5; fake: relu(1 - 2) = 0, relu(1 + 0) = 1
    assert hinge_discriminator_loss(real, fake).item() == 0.5 * (0.25 + 0.5)
