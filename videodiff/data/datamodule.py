"""VideoDataModule: the one LightningDataModule the autoencoder and the DiT both train from."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader

from videodiff.data import decoding, synthetic
from videodiff.data.batching import Batching, ShapeBuckets
from videodiff.data.datasets import ClipPlanner, ClipSampling, VideoDataset
from videodiff.data.latents import LatentDataset, LatentPlanner, read_latent_cache
from videodiff.data.manifest import ManifestEntry, read_manifest
from videodiff.data.sizing import LatentGrid
from videodiff.errors import ConfigError

log = logging.getLogger(__name__)


def default_cache_dir() -> str:
    return os.environ.get("VIDEODIFF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "videodiff"))


@dataclass(frozen=True)
class SyntheticData:
    """The built-in dataset, generated on first use into ``cache_dir`` (deterministic by ``seed``).

    Args:
        num: number of clips.
        seed: generation seed.
        image_fraction: share of still images (PNG) among the clips.
        cache_dir: where generated sets live; defaults to $VIDEODIFF_CACHE or ~/.cache/videodiff.
    """

    num: int = 200
    seed: int = 0
    image_fraction: float = 0.1
    cache_dir: str | None = None

    @property
    def folder(self) -> Path:
        root = Path(self.cache_dir or default_cache_dir()).expanduser()
        return root / f"synthetic-n{self.num}-s{self.seed}-i{self.image_fraction:g}"

    def ensure(self) -> Path:
        """Generate the set unless a complete copy exists; returns its manifest path."""
        manifest = self.folder / "manifest.jsonl"
        if manifest.is_file():
            return manifest
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        # Generate beside the target and rename, so a crash or a concurrent run never leaves half a set.
        staging = Path(tempfile.mkdtemp(prefix=self.folder.name + ".", dir=self.folder.parent))
        try:
            synthetic.generate(staging, num=self.num, seed=self.seed, image_fraction=self.image_fraction)
            try:
                staging.rename(self.folder)
            except OSError:  # another process finished first
                if not manifest.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest


class VideoDataModule(LightningDataModule):
    """Videos and images from a manifest (or the built-in synthetic set) decoded at native size, or cached latents.

    Every sample is sized by ``sampling`` under the token budget of ``grid``; ``batching`` decides how
    samples become batches (same-shape buckets for the autoencoder, packed rows for the DiT). Unreadable
    files are found when the manifest is scanned at setup, or while loading; either way they are skipped,
    counted in ``skipped`` and warned about once each.

    The grid is normally *not* stated here: at setup the data module takes it from the model being trained
    (``model.latent_grid``: the autoencoder's strides, and the DiT's patch size), so it is stated once. The
    autoencoder's strides live in its checkpoint, not in any config, which is why this is a runtime link and
    not a ``link_arguments`` between config keys. A grid given here must agree with the model's.

    Args:
        manifest: a ``.jsonl``/``.csv`` manifest; exclusive with ``synthetic`` and ``latents``.
        synthetic: use the built-in dataset (generated on first use).
        latents: a latent cache written by ``videodiff encode`` (its own train/val split; DiT only).
        val_manifest: a separate validation manifest; otherwise ``val_fraction`` of ``manifest`` is held out.
        val_fraction: share of samples held out for validation (split by ``seed``).
        grid: pixel-to-token mapping; None takes the model's. A model whose patch is (1, 1, 1) (the
            autoencoder) leaves the patch given here, so its clips can be sized for a later DiT.
        sampling: clip length, frame rate and size rules.
        batching: batching strategy (default ``ShapeBuckets()``: same-shape batches, never padded).
        num_workers: DataLoader worker processes.
        decode_threads: decoder threads per worker.
        pin_memory: page-locked batches, so host-to-GPU copies overlap the step; None pins when the trainer
            runs on CUDA (pinning buys nothing on CPU).
        seed: seed of the split, the shuffling and the random clip sizes.
    """

    def __init__(
        self,
        manifest: str | None = None,
        synthetic: SyntheticData | None = None,
        latents: str | None = None,
        val_manifest: str | None = None,
        val_fraction: float = 0.1,
        grid: LatentGrid | None = None,
        sampling: ClipSampling = ClipSampling(),
        batching: Batching | None = None,
        num_workers: int = 0,
        decode_threads: int = 1,
        seed: int = 0,
        pin_memory: bool | None = None,
    ):
        super().__init__()
        if sum(source is not None for source in (manifest, synthetic, latents)) != 1:
            raise ValueError("VideoDataModule: give exactly one of 'manifest', 'synthetic' and 'latents'")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"VideoDataModule: val_fraction must be in [0, 1), got {val_fraction}")
        self.manifest, self.synthetic, self.latents, self.val_manifest = manifest, synthetic, latents, val_manifest
        self.val_fraction, self.grid, self.sampling = val_fraction, grid, sampling
        self.batching = batching or ShapeBuckets()
        self.num_workers, self.decode_threads, self.seed = num_workers, decode_threads, seed
        self.pin_memory = pin_memory
        self.skipped: dict[str, str] = {}
        self.train_entries: list[ManifestEntry] = []
        self.val_entries: list[ManifestEntry] = []
        # (epoch, training batches of it delivered to the model): the training loader's checkpoint state.
        self.position: tuple[int, int] = (0, 0)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            self.synthetic.ensure()

    def manifest_path(self) -> Path:
        return self.synthetic.ensure() if self.synthetic is not None else Path(self.manifest)

    def setup(self, stage: str | None = None) -> None:
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.link_grid(getattr(model, "latent_grid", None))
        max_tokens = getattr(self.batching, "max_tokens", None)
        if self.latents is None and max_tokens is not None and self.sampling.token_budget > max_tokens:
            raise ConfigError(
                f"data.init_args.sampling.token_budget={self.sampling.token_budget} is more than a packed row holds "
                f"(data.init_args.batching.init_args.max_tokens={max_tokens}); make token_budget <= max_tokens"
            )
        if self.train_entries or self.val_entries:
            return
        if self.latents is not None:
            self.train_entries = read_latent_cache(self.latents, "train")
            self.val_entries = read_latent_cache(self.latents, "val")
            if not self.train_entries:
                raise ValueError(f"{self.latents}: the latent cache has no 'train' entries")
            return
        entries = self._readable(read_manifest(self.manifest_path()))
        if self.val_manifest is not None:
            self.train_entries, self.val_entries = entries, self._readable(read_manifest(self.val_manifest))
        else:
            order = np.random.default_rng(self.seed).permutation(len(entries))
            n_val = int(round(self.val_fraction * len(entries)))
            if self.val_fraction > 0 and len(entries) > 1:
                n_val = min(max(n_val, 1), len(entries) - 1)
            val = set(order[:n_val].tolist())
            self.train_entries = [e for i, e in enumerate(entries) if i not in val]
            self.val_entries = [e for i, e in enumerate(entries) if i in val]
        if not self.train_entries:
            raise ValueError(f"{self.manifest_path()}: no readable training samples")

    def link_grid(self, model_grid: LatentGrid | None) -> None:
        """Take the grid from the model (see the class docstring); a grid stated here must agree with it."""
        if model_grid is None:
            return
        if self.grid is None:
            self.grid = model_grid
            return
        ours, theirs = self.grid, model_grid
        strides = lambda g: (g.temporal_compression, g.spatial_compression, g.causal)
        patch_given = tuple(theirs.patch_size) != (1, 1, 1)
        if strides(ours) != strides(theirs) or (patch_given and tuple(ours.patch_size) != tuple(theirs.patch_size)):
            raise ConfigError(
                f"data.init_args.grid {ours} disagrees with the model's {theirs}; remove 'grid' from the data "
                "config (the model states it)"
            )
        if patch_given:
            self.grid = theirs

    def _readable(self, entries: list[ManifestEntry]) -> list[ManifestEntry]:
        """Probe entries whose metadata is missing; drop and record the unreadable ones."""
        kept = []
        for entry in entries:
            if entry.has_metadata:
                kept.append(entry)
                continue
            try:
                info = decoding.probe(entry.path)
            except decoding.VideoReadError as e:
                self.record_skipped(e.path, e.reason)
                continue
            kept.append(replace(entry, frames=info.frames, fps=info.fps, height=info.height, width=info.width))
        return kept

    def record_skipped(self, path: str, reason: str) -> None:
        if path not in self.skipped:
            # Every rank warns for itself: under DDP each loads a different shard, so a rank-zero-only warning
            # would hide the files the other ranks skipped.
            rank = self.trainer.global_rank if self.trainer is not None and self.trainer.world_size > 1 else None
            where = f"[rank {rank}] " if rank is not None else ""
            warnings.warn(f"{where}skipping unreadable sample {path}: {reason}", stacklevel=2)
        self.skipped[path] = reason

    def planner(self) -> ClipPlanner | LatentPlanner:
        if self.grid is None:
            raise ConfigError(
                "data.init_args.grid is not set and no model gives one: train through `videodiff fit` with a "
                "model, or state the grid (temporal_compression, spatial_compression, patch_size)"
            )
        if self.latents is not None:
            return LatentPlanner(self.grid.patch_size)
        return ClipPlanner(self.grid, self.sampling)

    def dataset(self, entries: list[ManifestEntry]) -> VideoDataset | LatentDataset:
        if self.latents is not None:
            return LatentDataset(entries)
        return VideoDataset(entries, self.planner(), num_threads=self.decode_threads)

    def _loader(self, entries: list[ManifestEntry], train: bool, resumable: bool = False) -> DataLoader:
        trainer = self.trainer
        sampler = self.batching.sampler(
            entries,
            self.planner(),
            train=train,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        loader_class = partial(ResumableLoader, self) if resumable else DataLoader
        return loader_class(
            self.dataset(entries),
            batch_sampler=sampler,
            collate_fn=self.batching.latent_collate_fn() if self.latents is not None else self.batching.collate_fn,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._pins(),
        )

    def _pins(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.train_entries, train=True, resumable=True)
        if self.trainer is not None:
            # Each pass plans the trainer's current epoch (after a restore, the checkpoint's epoch).
            loader.batch_sampler.epoch_source = lambda: self.trainer.current_epoch
            self.position = (self.trainer.current_epoch, 0)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_entries, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_entries, train=False)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Runs in the main process, so skips found inside worker processes are counted here; every batch
        # type (same-shape, video list, packed latents) reports its skipped samples as ``skipped``.
        for path, reason in getattr(batch, "skipped", ()):
            self.record_skipped(path, reason)
        trainer = self.trainer
        if trainer is not None and trainer.training:
            # Counted when the batch reaches the model, not when the loader yields it: Lightning and the
            # loader's workers fetch ahead, and a batch fetched but never trained on must be seen again.
            epoch = trainer.current_epoch
            done = self.position[1] + 1 if self.position[0] == epoch else 1
            self.position = (epoch, done)
        return batch


class ResumableLoader(DataLoader):
    """The training DataLoader. Lightning keeps its ``state_dict`` in checkpoints and hands it back on resume
    before the first batch is drawn, so a run killed mid-epoch continues that epoch where it stopped.

    The position is counted by the data module as batches reach the model (``on_before_batch_transfer``), not
    as this loader yields them: workers and Lightning fetch ahead, and a batch fetched but never trained on
    must come again after a resume.
    """

    def __init__(self, datamodule: VideoDataModule, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.datamodule = datamodule

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.datamodule.position
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        epoch, done = int(state_dict["epoch"]), int(state_dict["batches_done"])
        self.datamodule.position = (epoch, done)  # a second checkpoint in this epoch counts on from here
        self.batch_sampler.resume_at(epoch, done)
