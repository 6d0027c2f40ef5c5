import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from tests.helpers import TinyReconstruction, make_dit_module
from tests.metrics.test_fvd import MeanPool
from videodiff.callbacks import FVDCallback, SampleVideos
from videodiff.data import ClipSampling, PackedRows, VideoDataModule

PROMPTS = ["a red circle moving left on a black background", "a blue square still on a gray background"]


def data(manifest) -> VideoDataModule:
    return VideoDataModule(
        manifest=str(manifest),
        sampling=ClipSampling(max_frames=5, token_budget=64),
        batching=PackedRows(max_tokens=128, rows=2),
        val_fraction=0.2,
    )


def fit(tmp_path, manifest, module, callbacks, logger, **trainer_args) -> Trainer:
    trainer = Trainer(
        max_steps=2, logger=logger, callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, default_root_dir=tmp_path, limit_val_batches=1, val_check_interval=2,
        log_every_n_steps=1, **trainer_args,
    )  # fmt: skip
    trainer.fit(module, data(manifest))
    return trainer


def test_sample_videos_writes_files_and_logs_to_wandb(tmp_path, synthetic_set, autoencoder_ckpt):
    callback = SampleVideos(PROMPTS, ["5x16x32", "1x32x16"], every_n_steps=1, steps=2, score_captions=True)
    logger = WandbLogger(project="test", save_dir=str(tmp_path), offline=True)
    trainer = fit(tmp_path, synthetic_set, make_dit_module(autoencoder_ckpt), [callback], logger)
    logger.experiment.finish()
    folders = sorted(p.name for p in Path(trainer.log_dir or tmp_path).glob("**/samples/step*"))
    assert folders == ["step0000001", "step0000002"]
    media = list(tmp_path.glob("wandb/offline-run-*/files/media/videos/samples_*.mp4"))
    assert len(media) == 4  # two prompts at two steps


def test_sample_videos_tensorboard_and_csv(tmp_path, synthetic_set, autoencoder_ckpt):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    callback = SampleVideos(PROMPTS, ["5x16x16"], every_n_steps=2, steps=2, score_captions=True)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    fit(tmp_path, synthetic_set, make_dit_module(autoencoder_ckpt), [callback], logger)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["samples/0", "samples/1"]
    assert {"samples/fidelity_background", "samples/fidelity_color"} <= set(events.Tags()["scalars"])
    gif = events.Images("samples/0")[0]
    assert gif.encoded_image_string[:6] == b"GIF89a" and (gif.height, gif.width) == (16, 16)


def test_sample_videos_refuses_a_module_that_cannot_sample(tmp_path):
    callback = SampleVideos(PROMPTS[:1], ["1x16x16"])
    with pytest.raises(TypeError, match="needs a module with sample_videos"):
        callback.setup(Trainer(logger=False), TinyReconstruction(), "fit")
    with pytest.raises(ValueError, match="not a caption of the built-in grammar"):
        SampleVideos(["a cat"], ["1x16x16"], score_captions=True)


def test_fvd_callback_logs_the_protocol_and_caches_real_features(tmp_path, synthetic_set, autoencoder_ckpt):
    callback = FVDCallback(
        num_videos=4, frames=3, stride=1, resolution=16, steps=2, feature_network=MeanPool(), feature_dim=9,
        cache_dir=str(tmp_path / "fvd"),
    )  # fmt: skip
    logger = CSVLogger(str(tmp_path), name="csv")
    fit(tmp_path, synthetic_set, make_dit_module(autoencoder_ckpt), [callback], logger, max_epochs=None)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        every = list(csv.DictReader(f))
    rows = [r for r in every if r.get("val/fvd")]
    assert any(r.get("train/lr") for r in every) and any(float(r.get("train/tokens_per_s") or 0) > 0 for r in every)
    assert len(rows) == 1 and float(rows[0]["val/fvd4_3f_16px"]) == float(rows[0]["val/fvd"]) > 0
    cached = list((tmp_path / "fvd").glob("real-*.pt"))
    assert len(cached) == 1 and torch.load(cached[0]).shape == (4, 9)
    with pytest.raises(ValueError, match="needs 16"):  # the default protocol wants 16 frames; say so
        FVDCallback(feature_network=MeanPool(), feature_dim=9).protocol.prepare(torch.zeros(1, 3, 5, 8, 8))
