"""DiTModule: text-to-video latent diffusion on packed rows, with a frozen autoencoder and an EMA network."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from videodiff.data.datasets import VideoListBatch
from videodiff.data.sizing import LatentGrid, SizingError
from videodiff.diffusion.config import SamplerName, build_process, make_sampler, process_config
from videodiff.diffusion.flow import RectifiedFlow
from videodiff.diffusion.gaussian import GaussianDiffusion
from videodiff.diffusion.samplers import classifier_free_guidance
from videodiff.errors import ConfigError
from videodiff.models.autoencoder.model import VideoAutoencoder
from videodiff.models.autoencoder.module import AutoencoderModule
from videodiff.models.checkpoints import load_strict, read_checkpoint
from videodiff.models.dit.model import DiT
from videodiff.models.fault_tolerance import FaultTolerantSteps, NonFinitePolicy
from videodiff.models.lr_schedule import LRSchedule, build_scheduler, check_schedule
from videodiff.models.text import CaptionCache, CaptionClasses, TextEncoder, build_text_encoder
from videodiff.models.throughput import StepThroughput
from videodiff.packing.pack import PackedBatch, TokenDropping, pack, unpack_videos
from videodiff.packing.patchify import token_grid

# (in_channels, text_dim, num_classes, learn_sigma) -> DiT: the module supplies what the rest of the system
# decides, the config states the backbone's own choices (size, attention layout, patch, positions...).
BackboneFactory = Callable[[int, int | None, list[int] | None, bool], DiT]
Size = tuple[int, int, int]  # (frames, height, width) in pixels


def label_sets(classes: list[str] | list[list[str]]) -> list[list[str]]:
    """A checkpoint's label classes as a list of sets (checkpoints before several sets held one flat list)."""
    return [classes] if all(isinstance(c, str) for c in classes) else classes


class DiTModule(FaultTolerantSteps, StepThroughput, LightningModule):
    """Trains a DiT on packed latent tokens: per-video timesteps, loss on real kept tokens, caption dropout.

    Batches are ``VideoListBatch`` es from ``PackedRows``: pixels (encoded here by the frozen autoencoder) or
    cached latents; both are packed by ``packing.pack.pack`` into the rows the sampler formed the batch for.

    Args:
        backbone: the DiT, without its first four arguments (see ``BackboneFactory``).
        autoencoder: an ``AutoencoderModule`` checkpoint path (or a network, with ``latent_scale``). Its
            weights are frozen and stored in this module's checkpoints, so sampling needs one file.
        text_encoder: caption conditioning; frozen encoders are cached per caption and kept out of
            checkpoints, trainable ones (``WordTextEncoder``) train with the DiT.
        labels: class-label conditioning from captions (adaLN), instead of or beside text; a list of label
            sets (e.g. colour, shape, motion) conditions on each, their embeddings summed.
        diffusion: the Gaussian diffusion (default: DiT's linear schedule, epsilon, learned variance), or a
            ``RectifiedFlow`` (flow matching, sampled by Euler steps).
        caption_dropout: share of videos trained with the null condition (classifier-free guidance).
        dropping: NaViT token dropping during training.
        lr, betas, weight_decay, warmup_steps: AdamW with linear warm-up.
        lr_schedule: after warm-up, ``constant`` or ``cosine`` decay to ``min_lr_ratio`` x lr at the run's last
            step (``trainer.max_steps``); see ``models/lr_schedule.py``.
        ema_decay: decay of the EMA network used for validation and sampling (None: no EMA).
        caption_cache: a folder for frozen-encoder outputs on disk (memory only when None).
        latent_scale: with a network as ``autoencoder``, the scale its latents are multiplied by.
        on_nonfinite: a step whose loss is NaN/inf is skipped and counted (``skip``), or ends the run
            (``stop``); see ``FaultTolerantSteps``.
        compile_blocks: ``torch.compile`` each transformer block of the trained network (not the EMA copy,
            which only samples); shapes are marked dynamic because packed rows and groups vary per batch.
    """

    throughput_unit = "tokens"

    def __init__(
        self,
        backbone: BackboneFactory,
        autoencoder: str | VideoAutoencoder,
        text_encoder: TextEncoder | None = None,
        labels: CaptionClasses | list[CaptionClasses] | None = None,
        diffusion: GaussianDiffusion | RectifiedFlow | None = None,
        caption_dropout: float = 0.1,
        dropping: TokenDropping | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        lr_schedule: LRSchedule = "constant",
        min_lr_ratio: float = 0.1,
        ema_decay: float | None = 0.9999,
        caption_cache: str | None = None,
        latent_scale: float = 1.0,
        on_nonfinite: NonFinitePolicy = "skip",
        compile_blocks: bool = False,
    ):
        super().__init__()
        self.check_nonfinite_policy(on_nonfinite)
        self.on_nonfinite = on_nonfinite
        check_schedule(lr_schedule, min_lr_ratio)
        if not 0.0 <= caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {caption_dropout}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        if text_encoder is None and labels is None and caption_dropout > 0:
            caption_dropout = 0.0  # unconditional: there is nothing to drop
        if isinstance(autoencoder, str | Path):
            if not Path(autoencoder).exists():  # a checkpoint file, or a run folder (its newest checkpoint)
                raise ConfigError(
                    f"model.init_args.autoencoder: {autoencoder} not found; train an autoencoder first "
                    "(videodiff fit --config configs/autoencoder/tiny.yaml) and give its checkpoint"
                )
            loaded = AutoencoderModule.from_checkpoint(autoencoder)
            autoencoder, latent_scale = loaded.autoencoder, float(loaded.latent_scale)
        self.save_hyperparameters(ignore=["backbone", "autoencoder", "text_encoder", "labels", "diffusion", "dropping"])
        self.diffusion = diffusion or GaussianDiffusion(variance="learned_range")
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale)))
        if isinstance(labels, CaptionClasses):
            labels = [labels]
        self.text_encoder, self.labels, self.dropping = text_encoder, labels or None, dropping
        self.captions = (
            CaptionCache(text_encoder, caption_cache) if text_encoder is not None and text_encoder.frozen else None
        )
        self.backbone = backbone(
            autoencoder.latent_channels,
            text_encoder.dim if text_encoder is not None else None,
            [s.num_classes for s in self.labels] if self.labels else None,
            self.diffusion.learned_variance,
        )
        self.ema = None
        if ema_decay is not None:
            self.ema = AveragedModel(self.backbone, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=False)
            self.ema.requires_grad_(False)
        # A checkpoint rebuilds everything from these alone (see ``from_checkpoint``).
        self.hparams["backbone_config"] = self.backbone.config
        self.hparams["autoencoder_config"] = autoencoder.config
        self.hparams["text_encoder_config"] = text_encoder.config if text_encoder is not None else None
        self.hparams["classes"] = [s.classes for s in self.labels] if self.labels else None
        self.hparams["diffusion_config"] = process_config(self.diffusion)
        self.hparams["dropping_config"] = asdict(dropping) if dropping is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DiTModule:
        """Rebuild the module from its checkpoint alone (strict: every key must match)."""
        hparams, state_dict = read_checkpoint(path, map_location)
        if "backbone_config" not in hparams:
            kind = "an autoencoder" if "autoencoder_config" in hparams else "not a DiTModule"
            raise ConfigError(f"{path}: {kind} checkpoint (no 'backbone_config' hyperparameter); give a DiT checkpoint")
        supplied = ("in_channels", "text_dim", "num_classes", "learn_sigma")
        backbone = functools.partial(
            DiT, **{k: v for k, v in hparams.pop("backbone_config").items() if k not in supplied}
        )
        text_config, classes = hparams.pop("text_encoder_config"), hparams.pop("classes")
        dropping = hparams.pop("dropping_config")
        module = cls(
            backbone=backbone,
            autoencoder=VideoAutoencoder(**hparams.pop("autoencoder_config")),
            text_encoder=build_text_encoder(text_config) if text_config else None,
            labels=[CaptionClasses(c) for c in label_sets(classes)] if classes else None,
            diffusion=build_process(hparams.pop("diffusion_config")),
            dropping=TokenDropping(**dropping) if dropping else None,
            **hparams,
        )
        load_strict(module, state_dict, path)
        return module.eval()

    # Sizes ------------------------------------------------------------------------------------------------
    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.backbone.patch_size)

    @property
    def latent_grid(self) -> LatentGrid:
        """Pixels -> tokens: the autoencoder's strides and the DiT's patch (the data module takes this)."""
        ae = self.autoencoder
        return LatentGrid(ae.temporal_compression, ae.spatial_compression, self.patch_size, causal=True)

    def train(self, mode: bool = True) -> DiTModule:
        super().train(mode)
        self.autoencoder.eval()  # frozen: never in training mode
        return self

    # Latents ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, videos: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Pixel videos ``(3, T, H, W)`` of any sizes -> scaled latents, one batched call per distinct size."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, video in enumerate(videos):
            by_shape.setdefault(tuple(video.shape), []).append(i)
        latents: list[torch.Tensor | None] = [None] * len(videos)
        for indices in by_shape.values():
            mode = self.autoencoder.encode(torch.stack([videos[i] for i in indices])).mode()
            for i, latent in zip(indices, mode * self.latent_scale, strict=True):
                latents[i] = latent
        return latents

    @torch.no_grad()
    def decode(self, latents: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Scaled latents -> pixel videos in [-1, 1]."""
        return [self.autoencoder.decode(z[None] / self.latent_scale)[0].clamp(-1, 1) for z in latents]

    def pack_batch(self, batch: VideoListBatch, train: bool) -> PackedBatch:
        if batch.max_tokens is None:
            raise ValueError(
                "DiTModule trains on packed rows: set data.init_args.batching to videodiff.data.PackedRows"
            )
        latents = batch.videos if batch.latent else self.encode(batch.videos)
        dropping = self.dropping if train else None
        return pack(latents, self.patch_size, batch.max_tokens, num_rows=batch.rows, dropping=dropping)

    # Conditioning -----------------------------------------------------------------------------------------
    def condition(self, captions: Sequence[str], drop: torch.Tensor | None = None, data: bool = False) -> dict:
        """Per-video conditioning for the backbone; ``drop`` (N,) bool marks videos given the null condition.

        ``data``: the captions come from the dataset (a caption naming no class becomes the null label with a
        warning), not from a user's prompt (where it is an error)."""
        n = len(captions)
        drop = torch.zeros(n, dtype=torch.bool) if drop is None else drop.cpu()
        kwargs: dict = {}
        if self.text_encoder is not None:
            kept = [c for c, d in zip(captions, drop.tolist(), strict=True) if not d]
            encode = self.captions if self.captions is not None else self.text_encoder
            states = iter(encode(kept, device=self.device) if kept else [])
            kwargs["captions"] = [None if d else next(states) for d in drop.tolist()]
        if self.labels is not None:
            labels = [s(captions, unknown_as_null=data).masked_fill(drop, s.num_classes) for s in self.labels]  # null
            kwargs["labels"] = torch.stack(labels, dim=1).to(self.device)  # (N, sets)
        return kwargs

    def model_fn(self, network: DiT, packed: PackedBatch, condition: dict) -> Callable:
        """The diffusion's view of the network: (x_t tokens, per-token timesteps) -> per-token output."""

        def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            per_video = t[packed.rows, packed.offsets]  # every token of a video shares its timestep
            return network(x, per_video, packed, **condition)

        return call

    # Training ---------------------------------------------------------------------------------------------
    def _losses(self, network: DiT, packed: PackedBatch, condition: dict, generator=None) -> dict[str, torch.Tensor]:
        n = packed.num_videos
        t = self.diffusion.sample_timesteps((n,), device="cpu", generator=generator).to(self.device)
        noise = None
        if generator is not None:
            noise = torch.randn(packed.tokens.shape, generator=generator).to(self.device, packed.tokens.dtype)
        t_tokens = packed.gather(t)  # (R, L)
        return self.diffusion.training_losses(
            self.model_fn(network, packed, condition), packed.tokens, t_tokens, noise=noise, mask=packed.mask
        )

    def training_step(self, batch: VideoListBatch, batch_idx: int) -> torch.Tensor | None:
        if len(batch) == 0:  # every sample of the batch was unreadable (counted by the data module)
            return self.guard_loss(None)
        packed = self.pack_batch(batch, train=True)
        drop = torch.rand(len(batch)) < self.hparams.caption_dropout
        losses = self._losses(self.backbone, packed, self.condition(batch.captions, drop, data=True))
        self.step_work = int(packed.mask.sum())  # real tokens only: padding and dropped tokens are not throughput
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=len(batch), prog_bar=True)
        self.log("train/padding", packed.padding_fraction(), batch_size=len(batch))
        if self._trainer is not None:
            self.log("train/lr", self._trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(batch))
        return self.guard_loss(losses["loss"])

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here and not in on_train_batch_end: Lightning runs the callbacks' on_train_batch_end (ModelCheckpoint's
        # save) before the module's, so a checkpoint written there would lack this step's EMA update and a
        # resumed run would drift from an uninterrupted one.
        if self.ema is not None and not self.step_skipped:
            self.ema.update_parameters(self.backbone)

    @property
    def eval_network(self) -> DiT:
        """The network validation and sampling use: the EMA one when there is one."""
        return self.ema.module if self.ema is not None else self.backbone

    def validation_step(self, batch: VideoListBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        packed = self.pack_batch(batch, train=False)
        # The same timesteps and noise every validation, so the curve compares like with like.
        generator = torch.Generator().manual_seed(batch_idx)
        condition = self.condition(batch.captions, data=True)
        losses = self._losses(self.eval_network, packed, condition, generator=generator)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(batch), sync_dist=True)

    def configure_model(self) -> None:
        # Here rather than in __init__: only training compiles (from_checkpoint and sampling stay eager), and
        # Module.compile keeps the state-dict keys, so checkpoints do not depend on the flag.
        if self.hparams.get("compile_blocks") and not getattr(self, "_blocks_compiled", False):
            for block in self.backbone.blocks:
                block.compile(dynamic=True)
            self._blocks_compiled = True

    def configure_optimizers(self):
        parameters = list(self.backbone.parameters())
        if self.text_encoder is not None and not self.text_encoder.frozen:
            parameters += list(self.text_encoder.parameters())
        optimizer = torch.optim.AdamW(
            parameters,
            lr=self.hparams.lr,
            betas=self.hparams.betas,
            weight_decay=self.hparams.weight_decay,
            fused=self.device.type == "cuda",  # one kernel for all parameters instead of several per tensor
        )
        return {"optimizer": optimizer, "lr_scheduler": self._lr_scheduler(optimizer)}

    def _lr_scheduler(self, optimizer: torch.optim.Optimizer) -> dict:
        total = self._trainer.estimated_stepping_batches if self._trainer is not None else float("inf")
        hp, steps = self.hparams, int(total) if math.isfinite(total) else -1
        return build_scheduler(optimizer, hp.warmup_steps, hp.lr_schedule, steps, hp.min_lr_ratio)

    # Sampling ---------------------------------------------------------------------------------------------
    def check_size(self, size: Size) -> tuple[int, int, int]:
        """The latent ``(T', H', W')`` of a pixel size, or a one-line error saying what to change."""
        frames, height, width = size
        grid = self.latent_grid
        try:
            grid.tokens(frames, height, width)
        except SizingError as e:
            sh, sw = grid.spatial_stride
            ft, pt = grid.temporal_compression, self.patch_size[0]
            valid = f"1 + k*{ft}" if pt == 1 else "1 or " + ", ".join(map(str, grid.valid_frame_counts())) + ", ..."
            raise SizingError(
                f"cannot generate {frames}x{height}x{width} (frames x height x width): {e}. Use frames = {valid} "
                f"and height, width multiples of {sh}, {sw}"
            ) from None
        fs = grid.spatial_compression
        return grid.latent_frames(frames), height // fs, width // fs

    @torch.no_grad()
    def sample_videos(
        self,
        prompts: Sequence[str],
        sizes: Sequence[Size],
        steps: int = 50,
        sampler: SamplerName = "auto",
        eta: float = 0.0,
        guidance: float = 4.0,
        seed: int = 0,
        max_tokens: int | None = None,
        use_ema: bool = True,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        """Generate one video per prompt, each at its own ``(frames, height, width)``, in one packed call.

        Each video's noise is drawn on its own latent grid from ``seed`` (so a video does not depend on what
        it was packed with, for deterministic samplers). Returns pixel videos ``(3, T, H, W)`` in [-1, 1].

        Args:
            prompts: captions (ignored by an unconditional model).
            sizes: pixel sizes, one per prompt (or one for all).
            steps, sampler, eta: the sampler (DDIM's ``eta``; DDPM respaced to ``steps``); ``auto`` is DDIM for a
                Gaussian diffusion and Euler for a rectified flow.
            guidance: classifier-free guidance scale (1.0: the conditional prediction alone).
            seed: seeds the noise.
            max_tokens: row length; None fits the longest video.
            use_ema: sample with the EMA network when there is one.
        """
        if len(sizes) == 1 and len(prompts) > 1:
            sizes = list(sizes) * len(prompts)
        if len(sizes) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(sizes)} sizes")
        noise = self._noise([self.check_size(s) for s in sizes], seed)
        lengths = [math.prod(token_grid(z.shape, self.patch_size)) for z in noise]
        packed = pack(noise, self.patch_size, max_tokens or max(lengths))
        model_fn = self._guided(packed, prompts, guidance, use_ema)
        device_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        tokens = make_sampler(sampler, self.diffusion, steps, eta).sample(
            model_fn, packed.tokens, self.diffusion, device_generator, progress=progress, t_dims=2
        )
        return self.decode(unpack_videos(tokens, packed, self.patch_size))

    @torch.no_grad()
    def edit_videos(
        self,
        videos: Sequence[torch.Tensor],
        prompts: Sequence[str],
        strength: float = 0.6,
        steps: int = 50,
        sampler: SamplerName = "auto",
        eta: float = 0.0,
        guidance: float = 4.0,
        seed: int = 0,
        max_tokens: int | None = None,
        use_ema: bool = True,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        """Video-to-video editing (SDEdit): each video is encoded, noised to where the last ``strength`` of the
        sampler's steps begin, and taken back to data under its prompt, in one packed call.

        A small ``strength`` keeps the video's layout and changes detail; 1 redraws it from (nearly) pure noise.
        ``videos`` are pixels ``(3, T, H, W)`` in [-1, 1] at sizes the model can generate (``check_size``);
        the other arguments are ``sample_videos``'s. Returns pixel videos like it.
        """
        if len(videos) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(videos)} videos")
        for video in videos:
            self.check_size(tuple(video.shape[1:]))
        latents = self.encode([v.to(self.device) for v in videos])
        noise = self._noise([tuple(z.shape[1:]) for z in latents], seed)
        length = max_tokens or max(math.prod(token_grid(z.shape, self.patch_size)) for z in latents)
        packed, clean = pack(noise, self.patch_size, length), pack(latents, self.patch_size, length)
        model_fn = self._guided(packed, prompts, guidance, use_ema)
        device_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        tokens = make_sampler(sampler, self.diffusion, steps, eta).edit(
            model_fn, clean.tokens, packed.tokens, self.diffusion, strength, device_generator, progress, t_dims=2
        )
        return self.decode(unpack_videos(tokens, packed, self.patch_size))

    def _noise(self, grids: Sequence[tuple[int, int, int]], seed: int) -> list[torch.Tensor]:
        """Noise on each latent grid, drawn in turn from ``seed``: a video's noise does not depend on what it is
        packed with."""
        generator = torch.Generator().manual_seed(seed)
        channels = self.autoencoder.latent_channels
        return [torch.randn(channels, *grid, generator=generator).to(self.device) for grid in grids]

    def _guided(self, packed: PackedBatch, prompts: Sequence[str], guidance: float, use_ema: bool) -> Callable:
        """The model function on ``packed``'s layout, classifier-free guided at ``guidance`` when conditional."""
        network = self.eval_network if use_ema else self.backbone
        cond_fn = self.model_fn(network, packed, self.condition(prompts))
        if (self.text_encoder is None and self.labels is None) or guidance == 1.0:
            return cond_fn
        null = self.condition(prompts, drop=torch.ones(len(prompts), dtype=torch.bool))
        return classifier_free_guidance(cond_fn, self.model_fn(network, packed, null), guidance, self.diffusion)
