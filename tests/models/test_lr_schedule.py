import math

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from tests.helpers import make_dit_module
from videodiff.data import ClipSampling, PackedRows, VideoDataModule
from videodiff.models.lr_schedule import build_scheduler, lr_factor


def test_warmup_then_cosine_matches_the_closed_form():
    f = lambda step: lr_factor(step, warmup_steps=10, schedule="cosine", total_steps=110, min_ratio=0.1)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)  # past the planned end: the floor
    decay = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_constant_stays_at_the_base_rate_after_warmup():
    assert [lr_factor(s, 3, "constant", -1, 0.1) for s in (0, 2, 3, 10_000)] == pytest.approx([1 / 3, 1, 1, 1])


def test_cosine_needs_a_finite_run_and_a_valid_floor(autoencoder_ckpt):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="trainer.max_steps"):
        build_scheduler(optimizer, 1, "cosine", -1, 0.1)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        make_dit_module(autoencoder_ckpt, lr_schedule="cosine", min_lr_ratio=1.5)


class RecordLR(Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_dit_module_decays_over_trainer_max_steps(tmp_path, synthetic_set, autoencoder_ckpt):
    module = make_dit_module(
        autoencoder_ckpt, lr=1e-3, warmup_steps=1, lr_schedule="cosine", min_lr_ratio=0.25, ema_decay=None
    )
    data = VideoDataModule(
        manifest=str(synthetic_set),
        sampling=ClipSampling(max_frames=5, token_budget=64),
        batching=PackedRows(max_tokens=128, rows=2),
        val_fraction=0.2,
    )
    record = RecordLR()
    trainer = Trainer(
        max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, data)
    expected = [1e-3 * lr_factor(step, 1, "cosine", 4, 0.25) for step in range(4)]
    assert record.lrs == pytest.approx(expected)
    assert record.lrs[:2] == pytest.approx([1e-3, 1e-3]) and record.lrs[3] < record.lrs[2] < record.lrs[1]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.25e-3)  # after the last step: the floor
