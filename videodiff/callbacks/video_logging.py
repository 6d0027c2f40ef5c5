"""Sending encoded videos to whichever loggers a run has (wandb, TensorBoard; files for the rest)."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger


def run_directory(trainer: Trainer) -> Path:
    """``trainer.log_dir`` without its broadcast: that is a collective, and the writers calling this run on rank
    zero only, so under DDP it waited forever for the other ranks. Rank zero's value is the broadcast one."""
    path = None
    if trainer.loggers:
        logger = trainer.loggers[0]
        path = logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir
    return Path(path or trainer.default_root_dir)


def log_videos(trainer: Trainer, key: str, paths: list[Path], gifs: list[bytes], shapes, captions: list[str]) -> None:
    """Send encoded videos to each logger: wandb gets the mp4 files, TensorBoard the GIFs; files stay on disk."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # From files: handing wandb raw arrays would need moviepy (which downgrades pillow).
            logger.log_video(key, [str(p) for p in paths], step=trainer.global_step, caption=captions)
        elif isinstance(logger, TensorBoardLogger):
            from tensorboard.compat.proto.summary_pb2 import Summary

            # TensorBoard's add_video also needs moviepy; it only wraps a GIF in an image summary, done here.
            for i, (gif, (_, h, w)) in enumerate(zip(gifs, shapes, strict=True)):
                image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif)
                summary = Summary(value=[Summary.Value(tag=f"{key}/{i}", image=image)])
                logger.experiment.file_writer.add_summary(summary, trainer.global_step)
