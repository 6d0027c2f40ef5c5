"""Autoencoder throughput: encode and decode frames per second of the tiny config's network.
Called by bench/run.py; returns {figure name: record}."""

from __future__ import annotations

import statistics
import time

import torch

from videodiff.models.autoencoder.model import VideoAutoencoder


def throughput_figures(repeats: int, device: str = "cpu", frames: int = 17, size: int = 64) -> dict:
    """Frames/s through the tiny network (widths 16-32-32, 4x spatial, 2x temporal) at one clip size."""
    torch.manual_seed(0)
    model = VideoAutoencoder(4, 2, 4, widths=[16, 32, 32], blocks=1, groups=8).to(device).eval()
    video = torch.randn(2, 3, frames, size, size, device=device)
    with torch.no_grad():
        latents = model.encode(video).mode()

    def rate(fn) -> dict:
        def once() -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                fn()
            if device == "cuda":
                torch.cuda.synchronize()
            return video.shape[0] * frames / (time.perf_counter() - start)

        once()
        values = [once() for _ in range(repeats)]
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": repeats}

    config = {
        "network": "configs/autoencoder/tiny.yaml (random weights)",
        "clip": f"2 x {frames}x{size}x{size}",
        "device": device,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
    }
    return {
        "ae_encode_frames_per_s": {**rate(lambda: model.encode(video).mode()), "unit": "frames/s", "config": config},
        "ae_decode_frames_per_s": {**rate(lambda: model.decode(latents)), "unit": "frames/s", "config": config},
    }


def quality_figures(steps: int = 1500, root: str = "runs/bench-ae") -> dict:
    """Train the tiny config for ``steps`` on the built-in dataset (CSV logger) and report the held-out
    reconstruction PSNR / SSIM of the last validation and the wall-clock minutes it took."""
    import csv
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shutil.rmtree(root, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "videodiff.cli",
        "fit",
        "--config",
        "configs/autoencoder/tiny.yaml",
        "--config",
        "configs/presets/csv.yaml",
        f"--trainer.max_steps={steps}",
        f"--trainer.val_check_interval={min(500, steps)}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    minutes = (time.perf_counter() - start) / 60
    (metrics,) = Path(root).rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("val/psnr")]
    last = rows[-1]
    config = {
        "command": " ".join(command[2:]),
        "steps": steps,
        "minutes": round(minutes, 2),
        "validation": "held-out 10% of the built-in set (posterior mode)",
        "threads": torch.get_num_threads(),
    }
    return {
        "ae_val_psnr_db": {"median": float(last["val/psnr"]), "unit": "dB", "config": config},
        "ae_val_ssim": {"median": float(last["val/ssim"]), "unit": "", "config": config},
        "ae_train_minutes": {"median": minutes, "unit": "min", "config": config},
    }
