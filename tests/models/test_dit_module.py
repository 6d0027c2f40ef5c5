import math

import pytest
import torch
from lightning.pytorch import Trainer

from tests.helpers import make_dit_module, save_module, write_autoencoder_checkpoint
from videodiff.data import ClipSampling, PackedRows, VideoDataModule
from videodiff.data.datasets import VideoListBatch
from videodiff.data.sizing import SizingError
from videodiff.diffusion import EulerSampler, GaussianDiffusion, RectifiedFlow, classifier_free_guidance
from videodiff.errors import ConfigError
from videodiff.models.dit.module import DiTModule
from videodiff.models.text import CaptionClasses
from videodiff.packing.pack import pack, unpack_videos
from videodiff.packing.patchify import token_grid

# The tests call steps directly, outside a Trainer, where self.log only warns.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")

CAPTIONS = [
    "a red circle moving left on a black background",
    "a blue square still on a gray background",
    "a green triangle growing on a navy background",
]


def make_module(autoencoder_ckpt, **kwargs) -> DiTModule:
    return make_dit_module(autoencoder_ckpt, **kwargs)


def randomise(module: DiTModule) -> DiTModule:
    """adaLN-Zero makes a fresh DiT output zeros: give every weight a value so outputs mean something."""
    with torch.no_grad():
        for p in module.backbone.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return module


def videos():
    g = torch.Generator().manual_seed(1)
    shapes = [(3, 5, 16, 24), (3, 1, 32, 16), (3, 9, 16, 16)]
    return [torch.rand(s, generator=g) * 2 - 1 for s in shapes]


def test_pixels_and_cached_latents_pack_to_the_same_batch(autoencoder_ckpt):
    module = make_module(autoencoder_ckpt)
    pixels = VideoListBatch(videos(), CAPTIONS, torch.arange(3), torch.ones(3), max_tokens=96, rows=2)
    latents = VideoListBatch(
        module.encode(pixels.videos), CAPTIONS, torch.arange(3), torch.ones(3), latent=True, max_tokens=96, rows=2
    )
    a, b = module.pack_batch(pixels, train=False), module.pack_batch(latents, train=False)
    assert (
        a.tokens.shape == (2, 96, 4 * 4) and torch.equal(a.tokens, b.tokens) and torch.equal(a.video_ids, b.video_ids)
    )
    # The frozen autoencoder's latents are its posterior mode times the checkpoint's latent scale.
    expected = module.autoencoder.encode(pixels.videos[0][None]).mode()[0] * 0.5
    torch.testing.assert_close(latents.videos[0], expected)
    with pytest.raises(ValueError, match="PackedRows"):
        module.pack_batch(VideoListBatch(videos(), CAPTIONS, torch.arange(3), torch.ones(3)), train=True)


def test_packed_loss_is_the_token_weighted_mean_of_per_video_losses(autoencoder_ckpt):
    """Per-video timesteps inside a packed row, loss only on real tokens: packing changes nothing."""
    module = randomise(make_module(autoencoder_ckpt)).eval()
    latents = module.encode(videos())
    t = torch.tensor([10, 500, 990])
    noise = [torch.randn(z.shape) for z in latents]
    condition = module.condition(CAPTIONS)

    def loss(indices, max_tokens):
        packed = pack([latents[i] for i in indices], module.patch_size, max_tokens)
        packed_noise = pack([noise[i] for i in indices], module.patch_size, max_tokens).tokens
        cond = {k: ([v[i] for i in indices] if isinstance(v, list) else v[indices]) for k, v in condition.items()}
        fn = module.model_fn(module.backbone, packed, cond)
        terms = module.diffusion.training_losses(
            fn, packed.tokens, packed.gather(t[indices]), noise=packed_noise, mask=packed.mask
        )
        return terms, int(packed.mask.sum())

    together, _ = loss([0, 1, 2], 160)
    alone = [loss([i], 80) for i in range(3)]
    for key in ("mse", "vb"):
        weighted = sum(terms[key] * n for terms, n in alone) / sum(n for _, n in alone)
        torch.testing.assert_close(together[key], weighted, atol=1e-5, rtol=1e-5)


def test_caption_dropout_gives_the_null_condition(autoencoder_ckpt):
    module = make_module(autoencoder_ckpt)
    condition = module.condition(CAPTIONS, drop=torch.tensor([True, False, True]))
    assert condition["captions"][0] is None and condition["captions"][2] is None
    assert condition["captions"][1].shape == (len(CAPTIONS[1].split()), 16)
    assert condition["labels"].tolist() == [[3], [1], [3]]  # (videos, label sets); 3 = the null class
    with pytest.raises(ValueError, match="caption_dropout"):
        make_module(autoencoder_ckpt, caption_dropout=1.0)


def test_guidance_extrapolates_every_channel_and_scale_one_is_the_conditional(autoencoder_ckpt):
    module = randomise(make_module(autoencoder_ckpt)).eval()
    packed = pack(module.encode(videos()), module.patch_size, 160)
    cond = module.model_fn(module.backbone, packed, module.condition(CAPTIONS))
    uncond = module.model_fn(module.backbone, packed, module.condition(CAPTIONS, drop=torch.ones(3, dtype=torch.bool)))
    x, t = torch.randn(packed.tokens.shape), packed.gather(torch.tensor([5, 400, 800]))
    c, u = cond(x, t), uncond(x, t)
    assert not torch.allclose(c, u)
    torch.testing.assert_close(classifier_free_guidance(cond, uncond, 1.0, module.diffusion)(x, t), c)
    guided = classifier_free_guidance(cond, uncond, 3.0, module.diffusion)(x, t)
    d = packed.tokens.shape[-1]
    torch.testing.assert_close(guided[..., :d], u[..., :d] + 3.0 * (c[..., :d] - u[..., :d]))
    torch.testing.assert_close(guided[..., d:], c[..., d:])  # variance from the conditional branch


def test_sample_videos_at_mixed_sizes_is_deterministic_and_independent_of_packing(autoencoder_ckpt):
    module = randomise(make_module(autoencoder_ckpt)).eval()
    sizes = [(5, 16, 32), (1, 32, 16), (3, 24, 24)]  # landscape clip, portrait image, square clip
    first = module.sample_videos(CAPTIONS, sizes, steps=3, guidance=2.0, seed=3)
    assert [tuple(v.shape) for v in first] == [(3, 5, 16, 32), (3, 1, 32, 16), (3, 3, 24, 24)]
    assert all(float(v.abs().max()) <= 1.0 for v in first)
    again = module.sample_videos(CAPTIONS, sizes, steps=3, guidance=2.0, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Noise is drawn per video on its own grid, so a video does not depend on what it is packed with.
    alone = module.sample_videos(CAPTIONS[:1], sizes[:1], steps=3, guidance=2.0, seed=3)
    torch.testing.assert_close(alone[0], first[0], atol=1e-5, rtol=1e-5)
    other = module.sample_videos(CAPTIONS, sizes, steps=3, guidance=2.0, seed=4)
    assert not torch.allclose(other[0], first[0])


def test_bad_sizes_say_what_to_change(autoencoder_ckpt):
    module = make_module(autoencoder_ckpt)
    with pytest.raises(SizingError, match="height, width multiples of 8, 8"):
        module.sample_videos(["a"], [(5, 20, 32)], steps=1)
    with pytest.raises(SizingError, match=r"frames = 1 \+ k\*2"):
        module.check_size((4, 16, 16))
    with pytest.raises(ValueError, match="more than a row"):
        module.sample_videos(["a"], [(9, 64, 64)], steps=1, max_tokens=32)


def test_ema_follows_the_weights_and_sampling_leaves_them_alone(autoencoder_ckpt):
    module = make_module(autoencoder_ckpt, ema_decay=0.5)
    batch = VideoListBatch(videos(), CAPTIONS, torch.arange(3), torch.ones(3), max_tokens=96, rows=2)
    optimizer = torch.optim.SGD(module.backbone.parameters(), lr=0.1)
    history = []
    for step in range(2):
        module.training_step(batch, step).backward()
        module.optimizer_step(0, step, optimizer)  # steps, then updates the EMA
        optimizer.zero_grad()
        history.append({k: v.detach().clone() for k, v in module.backbone.named_parameters()})
    ema = dict(module.ema.module.named_parameters())
    for name, value in history[1].items():
        # first update copies, the second averages with decay 0.5
        torch.testing.assert_close(ema[name], 0.5 * history[0][name] + 0.5 * value)
    assert any(not torch.equal(ema[n], v) for n, v in history[1].items())
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    with_ema = module.sample_videos(CAPTIONS[:1], [(3, 16, 16)], steps=2)
    raw = module.sample_videos(CAPTIONS[:1], [(3, 16, 16)], steps=2, use_ema=False)
    assert not torch.equal(with_ema[0], raw[0])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not module.autoencoder.training and not any(p.requires_grad for p in module.autoencoder.parameters())


def test_fit_checkpoint_round_trip_from_the_checkpoint_alone(tmp_path, synthetic_set, autoencoder_ckpt):
    module = make_module(autoencoder_ckpt, ema_decay=0.9, warmup_steps=1)
    data = VideoDataModule(
        manifest=str(synthetic_set),
        sampling=ClipSampling(max_frames=5, token_budget=64),
        batching=PackedRows(max_tokens=128, rows=2),
        val_fraction=0.2,
    )
    trainer = Trainer(
        max_steps=3, limit_val_batches=1, val_check_interval=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, data)
    assert data.grid == module.latent_grid  # the data module took the grid from the model
    assert "val/loss" in trainer.callback_metrics and torch.isfinite(trainer.callback_metrics["train/loss"])
    path = tmp_path / "dit.ckpt"
    trainer.save_checkpoint(path)
    loaded = DiTModule.from_checkpoint(path)
    module.eval()
    expected = module.sample_videos(CAPTIONS[:2], [(3, 16, 16), (1, 8, 24)], steps=2, seed=1)
    got = loaded.sample_videos(CAPTIONS[:2], [(3, 16, 16), (1, 8, 24)], steps=2, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    with pytest.raises(ValueError, match="an autoencoder checkpoint"):
        DiTModule.from_checkpoint(autoencoder_ckpt)
    with pytest.raises(ConfigError, match="model.init_args.autoencoder"):
        make_module(str(tmp_path / "missing.ckpt"))


def test_several_label_sets_condition_each_attribute_and_round_trip(tmp_path, autoencoder_ckpt):
    sets = [CaptionClasses(["red", "green", "blue"]), CaptionClasses(["circle", "square", "triangle"])]
    module = randomise(make_module(autoencoder_ckpt, labels=sets, ema_decay=None)).eval()  # samples: these weights
    condition = module.condition(CAPTIONS, drop=torch.tensor([False, True, False]))
    assert condition["labels"].tolist() == [[0, 0], [3, 3], [1, 2]]  # dropped: every set's null class
    assert module.hparams["classes"] == [s.classes for s in sets]
    path = tmp_path / "labels.ckpt"
    save_module(module, path)
    sizes = [(3, 16, 16)]
    expected = module.sample_videos(CAPTIONS[:1], sizes, steps=2, seed=1)
    loaded = DiTModule.from_checkpoint(path)
    assert torch.equal(loaded.sample_videos(CAPTIONS[:1], sizes, steps=2, seed=1)[0], expected[0])
    # The shape label changes the sample: it reaches the network.
    other = module.sample_videos(["a red square moving left on a black background"], sizes, steps=2, seed=1)
    assert not torch.equal(other[0], expected[0])


def test_checkpoint_with_one_flat_class_list_still_loads(tmp_path, autoencoder_ckpt):
    """Checkpoints written before several label sets held ``classes`` as one list of names."""
    module = randomise(make_module(autoencoder_ckpt, ema_decay=None)).eval()
    hparams = {**module.hparams, "classes": ["circle", "square", "triangle"]}
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, tmp_path / "old.ckpt")
    loaded = DiTModule.from_checkpoint(tmp_path / "old.ckpt")
    assert [s.classes for s in loaded.labels] == [["circle", "square", "triangle"]]
    sizes = [(1, 16, 16)]
    got = loaded.sample_videos(CAPTIONS[:1], sizes, steps=2, seed=1)[0]
    assert torch.equal(got, module.sample_videos(CAPTIONS[:1], sizes, steps=2, seed=1)[0])


def test_unconditional_model_needs_no_captions(tmp_path):
    ckpt = write_autoencoder_checkpoint(tmp_path / "ae.ckpt")
    module = make_module(ckpt, text_encoder=None, labels=None)
    assert module.hparams.caption_dropout == 0.0 and module.backbone.captions is None
    out = module.eval().sample_videos(["ignored"], [(1, 16, 16)], steps=1)
    assert out[0].shape == (3, 1, 16, 16)


def test_rectified_flow_samples_by_euler_and_round_trips(tmp_path, autoencoder_ckpt):
    flow = RectifiedFlow(timestep_sampling="uniform", shift=2.0)
    module = randomise(make_module(autoencoder_ckpt, diffusion=flow, ema_decay=None)).eval()
    assert module.backbone.config["learn_sigma"] is False  # a flow has no variance channels
    sizes = [(3, 16, 16), (1, 8, 24)]
    got = module.sample_videos(CAPTIONS[:2], sizes, steps=3, guidance=1.0, seed=2)
    # auto is Euler for a flow: the same as integrating the network's velocity by hand.
    generator = torch.Generator().manual_seed(2)
    noise = [torch.randn(4, *module.check_size(s), generator=generator) for s in sizes]
    packed = pack(noise, module.patch_size, max(math.prod(token_grid(z.shape, module.patch_size)) for z in noise))
    model_fn = module.model_fn(module.backbone, packed, module.condition(CAPTIONS[:2]))
    tokens = EulerSampler(steps=3).sample(model_fn, packed.tokens, flow, t_dims=2)
    expected = module.decode(unpack_videos(tokens, packed, module.patch_size))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="diffusion is RectifiedFlow; use sampler 'auto'"):
        module.sample_videos(CAPTIONS[:1], sizes[:1], steps=2, sampler="ddim")
    path = tmp_path / "flow.ckpt"
    save_module(module, path)
    loaded = DiTModule.from_checkpoint(path)
    assert isinstance(loaded.diffusion, RectifiedFlow) and loaded.diffusion.shift == 2.0
    again = loaded.sample_videos(CAPTIONS[:2], sizes, steps=3, guidance=1.0, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=True))


@pytest.mark.parametrize("process", ["gaussian", "flow"])
def test_overfits_one_clip(autoencoder_ckpt, process):
    """One clip, fixed caption: the denoising loss falls by at least 3x within 300 steps."""
    diffusion = RectifiedFlow() if process == "flow" else None
    module = make_module(autoencoder_ckpt, caption_dropout=0.0, ema_decay=None, diffusion=diffusion)
    clip = videos()[0]
    batch = VideoListBatch([clip], CAPTIONS[:1], torch.arange(1), torch.ones(1), max_tokens=48, rows=1)
    optimizer = torch.optim.AdamW(module.backbone.parameters(), lr=1e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(300):
        loss = module._losses(module.backbone, module.pack_batch(batch, train=True), module.condition(batch.captions))
        loss["mse"].backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss["mse"].detach()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first / 3, (first, last)


def test_edit_videos_is_deterministic_independent_of_packing_and_an_oracle_returns_the_reconstruction(autoencoder_ckpt):
    module = randomise(make_module(autoencoder_ckpt)).eval()
    generator = torch.Generator().manual_seed(0)
    videos = [torch.rand(3, *size, generator=generator) * 2 - 1 for size in [(5, 16, 32), (1, 32, 16), (3, 24, 24)]]
    first = module.edit_videos(videos, CAPTIONS, strength=0.5, steps=4, guidance=2.0, seed=3)
    assert [v.shape for v in first] == [v.shape for v in videos]
    again = module.edit_videos(videos, CAPTIONS, strength=0.5, steps=4, guidance=2.0, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    alone = module.edit_videos(videos[:1], CAPTIONS[:1], strength=0.5, steps=4, guidance=2.0, seed=3)
    torch.testing.assert_close(alone[0], first[0], atol=1e-5, rtol=1e-5)
    # The edit starts from the video: at the lowest noise level it is nearly the reconstruction, from pure noise not.
    reconstructions = module.decode(module.encode(videos))
    distance = lambda edited: sum(float((a - b).abs().mean()) for a, b in zip(edited, reconstructions, strict=True))
    light = module.edit_videos(videos, CAPTIONS, strength=0.02, steps=50, guidance=2.0, seed=3)
    full = module.edit_videos(videos, CAPTIONS, strength=1.0, steps=4, guidance=2.0, seed=3)
    assert distance(light) < distance(full) / 5
    # A network that predicts each video's own clean latent (x0-prediction) takes every edit back to it.
    oracle = make_module(autoencoder_ckpt, diffusion=GaussianDiffusion("cosine", 100, prediction="x0")).eval()
    latents = oracle.encode(videos)
    clean = pack(latents, oracle.patch_size, max(math.prod(token_grid(z.shape, oracle.patch_size)) for z in latents))
    oracle.model_fn = lambda network, packed, condition: lambda x, t: clean.tokens
    edited = oracle.edit_videos(videos, CAPTIONS, strength=0.7, steps=10)
    for video, reconstruction in zip(edited, oracle.decode(latents), strict=True):
        torch.testing.assert_close(video, reconstruction.clamp(-1, 1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 prompts but 3 videos"):
        module.edit_videos(videos, CAPTIONS[:2])
    with pytest.raises(SizingError, match="height, width multiples of 8, 8"):
        module.edit_videos([torch.zeros(3, 5, 20, 32)], CAPTIONS[:1])
