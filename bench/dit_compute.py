"""DiT compute benchmarks: sampling time per video (DDPM over all T steps vs DDIM 50) and MFU of a training
step (model FLOPs on real tokens over the machine's peak matmul FLOP/s, measured in the same run)."""

from __future__ import annotations

import statistics
import time

import torch

from videodiff.diffusion import GaussianDiffusion
from videodiff.diffusion.samplers import DDIMSampler, DDPMSampler, classifier_free_guidance
from videodiff.models.dit.model import DiT
from videodiff.models.flops import dit_training_flops, peak_matmul_flops
from videodiff.packing.pack import PackedBatch, pack


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def sampling_figures(repeats: int, device: str = "cpu", videos: int = 4) -> dict:
    """Seconds per video to sample the demo's tiny DiT (captions, guidance 4) at 9x40x40 pixels, latents only."""
    torch.manual_seed(0)
    # The demo's DiT (configs/dit/tiny_joint.yaml) over the tiny VAE's latents (2x space and time, 4 channels).
    network = (
        DiT(in_channels=4, text_dim=64, patch_size=(1, 4, 4), hidden_size=64, depth=4, num_heads=4).to(device).eval()
    )
    diffusion = GaussianDiffusion(schedule="cosine", num_timesteps=1000, prediction="v", variance="learned_range")
    latent = (4, 5, 20, 20)  # 9x40x40 pixels
    noise = [torch.randn(*latent) for _ in range(videos)]
    packed = pack(noise, (1, 4, 4), max_tokens=5 * 5 * 5).to(device)
    captions = [torch.randn(10, 64, device=device) for _ in range(videos)]

    def model_fn(condition):
        def call(x, t):
            return network(x, t[packed.rows, packed.offsets], packed, captions=condition)

        return call

    guided = classifier_free_guidance(model_fn(captions), model_fn([None] * videos), 4.0, diffusion)
    config = {
        "model": "tiny demo DiT (64 x 4, 4 heads, 1x4x4 patches, cross-attention), random weights",
        "size": "9x40x40 pixels = 4x5x20x20 latents, 125 tokens",
        "videos_per_call": videos,
        "guidance": 4.0,
        "decode": "not included (the autoencoder's decode is ae_decode_frames_per_s)",
        "device": device,
        "threads": torch.get_num_threads(),
    }
    figures = {}
    for name, sampler, runs in (("ddpm_1000", DDPMSampler(), 1), ("ddim_50", DDIMSampler(steps=50), repeats)):
        seconds = []
        for _ in range(runs):
            _sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                sampler.sample(guided, packed.tokens, diffusion, t_dims=2)
            _sync(device)
            seconds.append((time.perf_counter() - start) / videos)
        figures[f"sampling_s_per_video/{name}"] = {
            "median": statistics.median(seconds),
            "min": min(seconds),
            "max": max(seconds),
            "repeats": runs,
            "unit": "s/video",
            "config": config,
        }
        print(f"sampling_s_per_video/{name}: {statistics.median(seconds):.3f} s", flush=True)
    ratio = figures["sampling_s_per_video/ddpm_1000"]["median"] / figures["sampling_s_per_video/ddim_50"]["median"]
    figures["sampling_s_per_video/ratio_ddpm_over_ddim"] = {"median": ratio, "unit": "x", "config": config}
    return figures


def mfu_figures(
    shapes,
    size: str,
    repeats: int,
    device: str = "cpu",
    steps: int = 2,
    rows: int = 2,
    dtype: torch.dtype = torch.float32,
    max_tokens: int = 1024,
) -> dict:
    """Model FLOP utilisation of packed DiT training steps on the dataset mix, batched as the data module does."""
    from packing import LATENT_CHANNELS, PATCH, steady_batches, tokens_of  # bench/packing.py: the same mix

    g = torch.Generator().manual_seed(0)
    videos = [torch.randn(LATENT_CHANNELS, *s, generator=g) for s in shapes]
    model = DiT(in_channels=LATENT_CHANNELS, patch_size=PATCH, size=size, num_classes=1000).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    # The data module's batches (PackedRows(max_tokens, rows)), steady state only.
    groups = steady_batches([tokens_of(tuple(v.shape[1:])) for v in videos], max_tokens, rows)[:steps]
    batches: list[PackedBatch] = [pack([videos[i] for i in group], PATCH, max_tokens).to(device) for group in groups]
    flops = sum(dit_training_flops(model, b) for b in batches)
    real = sum(int(b.mask.sum()) for b in batches)

    def run() -> float:
        _sync(device)
        start = time.perf_counter()
        for b in batches:
            t = torch.randint(0, 1000, (b.num_videos,), device=device)
            labels = torch.randint(0, 1000, (b.num_videos,), device=device)
            with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
                out = model(b.tokens, t, b, labels=labels)
                loss = (out[..., : b.tokens.shape[-1]].float() - b.tokens.float()).pow(2).mean()
            loss.backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
        _sync(device)
        return flops / (time.perf_counter() - start)

    run()  # warm-up
    achieved = sorted(run() for _ in range(repeats))
    peak = peak_matmul_flops(device, dtype if device == "cuda" else torch.float32)
    config = {
        "size": size,
        "steps": len(batches),
        "batching": f"PackedRows({max_tokens}, {rows}) batches of the mix",
        "padding_fraction": round(1 - real / sum(b.mask.numel() for b in batches), 4),
        "real_tokens": real,
        "model_flops": flops,
        "flops": "matmuls on real tokens (closed form, videodiff.models.flops), backward = 2 x forward",
        "peak_matmul_flops": peak,
        "peak": f"best of square {dtype} matmuls measured in this run",
        "device": device,
        "dtype": str(dtype),
        "threads": torch.get_num_threads(),
    }
    return {
        f"dit_mfu/{size}": {
            "median": statistics.median(achieved) / peak,
            "min": achieved[0] / peak,
            "max": achieved[-1] / peak,
            "repeats": repeats,
            "unit": "fraction",
            "config": config,
        },
        f"dit_model_flops_per_s/{size}": {
            "median": statistics.median(achieved),
            "min": achieved[0],
            "max": achieved[-1],
            "repeats": repeats,
            "unit": "FLOP/s",
            "config": config,
        },
    }
