"""Performance options of the modules and the data module: they change speed, never results."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.helpers import make_dit_module
from videodiff.data import ClipSampling, PackedRows, VideoDataModule
from videodiff.data.datasets import VideoListBatch
from videodiff.data.sizing import LatentGrid

CAPTIONS = ["a red circle moving left on a black background", "a blue square still on a gray background"]


def batch() -> VideoListBatch:
    g = torch.Generator().manual_seed(3)
    clips = [torch.rand(3, 5, 16, 24, generator=g) * 2 - 1, torch.rand(3, 1, 32, 16, generator=g) * 2 - 1]
    return VideoListBatch(clips, CAPTIONS, torch.arange(2), torch.ones(2), max_tokens=64, rows=2)


def training_loss(module, data: VideoListBatch) -> torch.Tensor:
    torch.manual_seed(0)
    packed = module.pack_batch(data, train=False)
    generator = torch.Generator().manual_seed(0)
    return module._losses(module.backbone, packed, module.condition(data.captions), generator=generator)["loss"]


@pytest.mark.slow  # inductor compiles each block on first use: ~a minute of C++ builds on 2 cores
@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_compiled_blocks_give_the_eager_loss_and_gradients(autoencoder_ckpt):
    eager = make_dit_module(autoencoder_ckpt)
    with torch.no_grad():
        for p in eager.backbone.parameters():  # adaLN-Zero starts at zero: give the blocks something to do
            p.add_(torch.randn_like(p) * 0.05)
    compiled = copy.deepcopy(eager)
    compiled.hparams["compile_blocks"] = True
    compiled.configure_model()
    assert all(block._compiled_call_impl is not None for block in compiled.backbone.blocks)
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints do not depend on the flag
    data = batch()
    expected, got = training_loss(eager, data), training_loss(compiled, data)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    expected.backward()
    got.backward()
    for (name, a), b in zip(eager.backbone.named_parameters(), compiled.backbone.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_blocks_stay_eager_unless_asked(autoencoder_ckpt):
    module = make_dit_module(autoencoder_ckpt)
    module.configure_model()
    assert all(block._compiled_call_impl is None for block in module.backbone.blocks)


def test_the_optimiser_is_not_fused_on_cpu(autoencoder_ckpt):
    module = make_dit_module(autoencoder_ckpt)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.defaults["fused"] is False  # CPU keeps PyTorch's default (foreach) path


def datamodule(manifest, pin_memory: bool | None) -> VideoDataModule:
    return VideoDataModule(
        manifest=str(manifest),
        grid=LatentGrid(),
        sampling=ClipSampling(max_frames=5, token_budget=64),
        batching=PackedRows(128, 2),
        pin_memory=pin_memory,
    )


@pytest.mark.parametrize(("setting", "pinned"), [(None, False), (True, True), (False, False)])
def test_loaders_pin_memory_on_request_and_by_default_only_on_cuda(synthetic_set, setting, pinned):
    dm = datamodule(synthetic_set, setting)
    dm.setup("fit")
    assert dm.train_dataloader().pin_memory is pinned and dm.val_dataloader().pin_memory is pinned


@pytest.mark.gpu
def test_pinned_batches_arrive_page_locked(synthetic_set):
    dm = datamodule(synthetic_set, True)
    dm.setup("fit")
    first = next(iter(dm.train_dataloader()))
    assert all(v.is_pinned() for v in first.videos) and first.indices.is_pinned()
