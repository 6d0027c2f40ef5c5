"""SampleVideos: generate fixed prompts at several sizes during training and send them to every logger."""

from __future__ import annotations

import logging

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from videodiff.callbacks.video_logging import log_videos, run_directory
from videodiff.data.sizing import parse_size
from videodiff.diffusion.config import SamplerName
from videodiff.errors import ConfigError

log = logging.getLogger(__name__)


class SampleVideos(Callback):
    """Every ``every_n_steps`` (and at the end of training), sample ``prompts`` at ``sizes`` with EMA weights.

    Writes ``<run dir>/samples/step<N>/<i>.mp4`` and ``.gif``, logs them to wandb (video) and TensorBoard
    (GIF), and with ``score_captions`` logs the caption fidelity of the samples (built-in grammar only).

    Args:
        prompts: captions to sample.
        sizes: ``FRAMESxHEIGHTxWIDTH`` per prompt, or one for all (landscape, portrait, square, image...).
        every_n_steps: sampling period in optimiser steps.
        steps, sampler, guidance, seed: passed to the module's ``sample_videos``.
        fps: frame rate of the written files.
        score_captions: log ``samples/fidelity_<attribute>`` (needs captions of the built-in grammar).
    """

    def __init__(
        self,
        prompts: list[str],
        sizes: list[str],
        every_n_steps: int = 1000,
        steps: int = 50,
        sampler: SamplerName = "auto",
        guidance: float = 4.0,
        seed: int = 0,
        fps: float = 8.0,
        score_captions: bool = False,
    ):
        if not prompts:
            raise ValueError("SampleVideos: give at least one prompt")
        self.sizes = [parse_size(s) for s in sizes]
        if len(self.sizes) not in (1, len(prompts)):
            raise ValueError(f"SampleVideos: {len(sizes)} sizes for {len(prompts)} prompts; give one, or one each")
        self.sizes = self.sizes * (len(prompts) if len(self.sizes) == 1 else 1)
        self.prompts, self.every_n_steps, self.steps, self.sampler = prompts, every_n_steps, steps, sampler
        self.guidance, self.seed, self.fps, self.score_captions = guidance, seed, fps, score_captions
        self.last_step = -1
        if score_captions:
            from videodiff.data.synthetic import parse_caption

            for prompt in prompts:
                parse_caption(prompt)  # fail at start, not after an hour of training

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample_videos", None)):
            raise TypeError(f"SampleVideos needs a module with sample_videos(); {type(pl_module).__name__} has none")
        # Checked now, not at the first sampling step: a bad size must not cost a training run.
        check = getattr(pl_module, "check_size", None)
        for size in self.sizes if callable(check) else ():
            try:
                check(size)
            except ValueError as e:
                raise ConfigError(f"SampleVideos sizes (trainer.callbacks): {e}") from None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.sample(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step != self.last_step:
            self.sample(trainer, pl_module)

    @rank_zero_only
    def sample(self, trainer: Trainer, pl_module: LightningModule) -> list[np.ndarray]:
        from videodiff.data.decoding import write_gif, write_video
        from videodiff.data.transforms import to_frames

        self.last_step = trainer.global_step
        was_training = pl_module.training
        pl_module.eval()
        try:
            videos = pl_module.sample_videos(
                self.prompts, self.sizes, steps=self.steps, sampler=self.sampler, guidance=self.guidance, seed=self.seed
            )
        finally:
            pl_module.train(was_training)
        folder = run_directory(trainer) / "samples" / f"step{trainer.global_step:07d}"
        frames = [to_frames(v) for v in videos]
        paths, gifs = [], []
        for i, clip in enumerate(frames):
            paths.append(write_video(folder / f"{i:03d}.mp4", clip, fps=self.fps, lossless=True))
            gifs.append(write_gif(folder / f"{i:03d}.gif", clip, fps=self.fps).read_bytes())
        log_videos(trainer, "samples", paths, gifs, [c.shape[:3] for c in frames], self.prompts)
        if self.score_captions:
            from videodiff.metrics.caption_fidelity import caption_fidelity

            scores = caption_fidelity(zip(frames, self.prompts, strict=True))
            metrics = {f"samples/fidelity_{k}": v for k, v in scores.items() if not np.isnan(v)}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        log.info("wrote %d samples to %s", len(frames), folder)
        return frames
